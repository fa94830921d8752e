/* fuzz_csv.c — kdx_read_csv on arbitrary bytes. The input's first byte picks
   the options, the rest is the file (plain or gzip):
     bits 0-1  delimiter  , ; TAB |
     bit  2    no header row
     bits 3-4  label column: the last, the first, none, the one named "label"
     bit  5    classes numbered in order of appearance (else sorted)
     bit  6    the classes given: "0" "1" "2" "a" "b"
     bit  7    skip one line first
   so a seed that starts with a 0 byte reads its file with the defaults. */
#include "fuzz_common.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    fuzz_setup("csv");
    return 0;
}

static kdx_csv_opts options(uint8_t b)
{
    static const char *const given[] = {"0", "1", "2", "a", "b"};
    static const char delims[] = {',', ';', '\t', '|'};
    kdx_csv_opts o = kdx_csv_opts_default();
    o.delimiter = delims[b & 3];
    o.header = !(b & 4);
    switch ((b >> 3) & 3) {
    case 0: o.label_column = -1; break;
    case 1: o.label_column = 0; break;
    case 2: o.label_column = KDX_CSV_NO_LABEL; break;
    case 3: o.label_name = "label"; break;
    }
    o.order = b & 32 ? KDX_CSV_FIRST : KDX_CSV_SORTED;
    if (b & 64) o.classes = given, o.nclasses = 5;
    o.skip = b & 128 ? 1 : 0;
    return o;
}

static void check_parsed(const kdx_csv *c, const kdx_csv_opts *o)
{
    const kdx_tensor *x = kdx_csv_features(c), *y = kdx_csv_labels(c);
    fuzz_check_tensor("read_csv features", x);
    if (kdx_tensor_ndim(x) != 2 || kdx_tensor_dtype(x) != KDX_DTYPE_F64)
        fuzz_die("read_csv: features are not a float64 matrix");
    int64_t rows = kdx_tensor_size(x, 0), nfeat = kdx_tensor_size(x, 1);
    for (int j = -1; j <= nfeat; j++) {
        const char *name = kdx_csv_feature_name(c, j);
        if (name) (void)strlen(name);
        if (name && (j < 0 || j == nfeat)) fuzz_die("read_csv: feature_name(%d) answered out of range", j);
    }
    int k = kdx_csv_class_count(c);
    for (int i = -1; i <= k; i++) {
        const char *name = kdx_csv_class_name(c, i);
        if ((i < 0 || i == k) != !name) fuzz_die("read_csv: class_name(%d) of %d classes", i, k);
        if (name) (void)strlen(name);
    }
    if (kdx_csv_label_name(c)) (void)strlen(kdx_csv_label_name(c));
    if (!y) {
        if (o->label_name || o->label_column != KDX_CSV_NO_LABEL) fuzz_die("read_csv: a label column and no labels");
        return;
    }
    fuzz_check_tensor("read_csv labels", y);
    if (kdx_tensor_ndim(y) != 1 || kdx_tensor_dtype(y) != KDX_DTYPE_I64 || kdx_tensor_size(y, 0) != rows)
        fuzz_die("read_csv: labels are not int64 [rows]");
    const int64_t *lab = kdx_tensor_data(y);
    for (int64_t i = 0; i < rows; i++)
        if (lab[i] < 0 || lab[i] >= k) fuzz_die("read_csv: label %lld of row %lld, with %d classes", (long long)lab[i],
                                                (long long)i, k);
}

static void pass(const uint8_t *data, size_t size, int injected)
{
    (void)injected;
    kdx_csv_opts o = options(data[0]);
    const char *path = fuzz_write_file(data + 1, size - 1);
    kdx_csv *c = NULL;
    kdx_status s = kdx_read_csv(path, &o, &c);
    if (s != KDX_OK) {
        if (c) fuzz_die("read_csv failed and wrote a result");
        fuzz_check_error("read_csv", s);
        return;
    }
    if (!c) fuzz_die("read_csv returned OK and NULL");
    fuzz_note_ok("read_csv");
    check_parsed(c, &o);
    kdx_csv_free(c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size >= 1) fuzz_run(data, size, pass, "read_csv");
    return 0;
}
