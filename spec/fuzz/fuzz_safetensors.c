/* fuzz_safetensors.c — kdx_load_safetensors on arbitrary bytes, then every
   accessor of what it loaded. */
#include "fuzz_common.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    fuzz_setup("safetensors");
    return 0;
}

static void check_loaded(const kdx_safetensors *st)
{
    int n = kdx_safetensors_count(st);
    if (n < 0) fuzz_die("load_safetensors: count %d", n);
    const char *prev = NULL;
    for (int i = 0; i < n; i++) {
        const char *name = kdx_safetensors_name(st, i);
        const char *dt = kdx_safetensors_file_dtype(st, i);
        if (!name || !dt) fuzz_die("load_safetensors: tensor %d has no name or dtype", i);
        /* Names are documented as sorted bytewise, which also makes them unique. */
        if (prev && strcmp(prev, name) >= 0) fuzz_die("load_safetensors: names %d and %d are not in order", i - 1, i);
        prev = name;
        if (kdx_safetensors_find(st, name) != i) fuzz_die("load_safetensors: find(name(%d)) is not %d", i, i);
        fuzz_check_tensor("load_safetensors", kdx_safetensors_tensor(st, i));
    }
    if (kdx_safetensors_name(st, -1) || kdx_safetensors_name(st, n) || kdx_safetensors_tensor(st, n) ||
        kdx_safetensors_file_dtype(st, n))
        fuzz_die("load_safetensors: an accessor answered out of range");
    int m = kdx_safetensors_meta_count(st);
    if (m < 0) fuzz_die("load_safetensors: meta count %d", m);
    for (int i = 0; i < m; i++) {
        const char *k = kdx_safetensors_meta_key(st, i), *v = kdx_safetensors_meta_value(st, i);
        if (!k || !v) fuzz_die("load_safetensors: metadata entry %d has no key or value", i);
        (void)strlen(k), (void)strlen(v);
    }
    if (kdx_safetensors_meta_key(st, m) || kdx_safetensors_meta_value(st, -1))
        fuzz_die("load_safetensors: a metadata accessor answered out of range");
    (void)kdx_safetensors_find(st, "");
}

static void pass(const uint8_t *data, size_t size, int injected)
{
    (void)injected;
    const char *path = fuzz_write_file(data, size);
    kdx_safetensors *st = NULL;
    kdx_status s = kdx_load_safetensors(path, &st);
    if (s != KDX_OK) {
        if (st) fuzz_die("load_safetensors failed and wrote a result");
        fuzz_check_error("load_safetensors", s);
        return;
    }
    if (!st) fuzz_die("load_safetensors returned OK and NULL");
    fuzz_note_ok("load_safetensors");
    check_loaded(st);
    kdx_safetensors_free(st);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_run(data, size, pass, "load_safetensors");
    return 0;
}
