/* fuzz_idx.c — kdx_read_idx on arbitrary bytes (plain or gzip IDX), both as
   stored and with as_float. */
#include "fuzz_common.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    fuzz_setup("idx");
    return 0;
}

static void pass(const uint8_t *data, size_t size, int injected)
{
    (void)injected;
    const char *path = fuzz_write_file(data, size);
    for (int as_float = 0; as_float <= 1; as_float++) {
        kdx_tensor *t = NULL;
        kdx_status s = kdx_read_idx(path, as_float, &t);
        if (s != KDX_OK) {
            if (t) fuzz_die("read_idx failed and wrote a tensor");
            fuzz_check_error("read_idx", s);
            continue;
        }
        fuzz_note_ok("read_idx");
        fuzz_check_tensor("read_idx", t);
        if (kdx_tensor_ndim(t) < 1) fuzz_die("read_idx returned %d dims", kdx_tensor_ndim(t));
        if (as_float && kdx_tensor_dtype(t) != KDX_DTYPE_F32)
            fuzz_die("read_idx with as_float gave %s", kdx_dtype_name(kdx_tensor_dtype(t)));
        kdx_tensor_release(t);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_run(data, size, pass, "read_idx");
    return 0;
}
