/* fuzz_image.c — kdx_decode_image on arbitrary bytes in memory, and
   kdx_read_image on the same bytes as a file, which must agree with it.
   Linked with stb_image_fuzz.c: stb instrumented, its blocks pre-filled. */
#include "fuzz_common.h"

/* The byte stb_image_fuzz.c fills stb's new blocks with. */
extern unsigned char fuzz_stbi_fill;

/* KDX_FUZZ_UNWRITTEN=ignore in the environment turns the comparison of the
   two decodes off, for as long as a known decoder bug of that kind is accepted. */
static int ignore_unwritten;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    const char *u = getenv("KDX_FUZZ_UNWRITTEN");
    ignore_unwritten = u && strcmp(u, "ignore") == 0;
    fuzz_setup("image");
    return 0;
}

/* A decoded image: float32 [C,H,W], C in 1..4, values in [0,1]. */
static void check_image(const kdx_tensor *t)
{
    fuzz_check_tensor("decode_image", t);
    if (kdx_tensor_ndim(t) != 3 || kdx_tensor_dtype(t) != KDX_DTYPE_F32) fuzz_die("decode_image: not float32 [C,H,W]");
    int64_t c = kdx_tensor_size(t, 0);
    if (c < 1 || c > 4 || kdx_tensor_size(t, 1) < 1 || kdx_tensor_size(t, 2) < 1)
        fuzz_die("decode_image: shape [%lld,%lld,%lld]", (long long)c, (long long)kdx_tensor_size(t, 1),
                 (long long)kdx_tensor_size(t, 2));
    const float *p = kdx_tensor_data(t);
    for (int64_t i = 0, n = kdx_tensor_numel(t); i < n; i++)
        if (!(p[i] >= 0.0f && p[i] <= 1.0f)) fuzz_die("decode_image: pixel %lld is %g", (long long)i, (double)p[i]);
}

static int same(const kdx_tensor *a, const kdx_tensor *b)
{
    if (kdx_tensor_numel(a) != kdx_tensor_numel(b)) return 0;
    for (int d = 0; d < 3; d++)
        if (kdx_tensor_size(a, d) != kdx_tensor_size(b, d)) return 0;
    return memcmp(kdx_tensor_data(a), kdx_tensor_data(b), (size_t)kdx_tensor_numel(a) * sizeof(float)) == 0;
}

/* Decodes the bytes from memory and from a file, with stb's memory filled
   with 0x00 for one and 0xFF for the other. In the first pass the two must
   agree exactly, status and pixels: a difference means the result depends on
   something other than the bytes, memory the decoder never wrote. */
static void pass(const uint8_t *data, size_t size, int injected)
{
    kdx_tensor *a = NULL, *b = NULL;
    fuzz_stbi_fill = 0x00;
    kdx_status sa = kdx_decode_image(data, size, "fuzz input", &a);
    if (sa != KDX_OK) {
        if (a) fuzz_die("decode_image failed and wrote a tensor");
        fuzz_check_error("decode_image", sa);
    } else {
        fuzz_note_ok("decode_image");
        check_image(a);
    }
    const char *path = fuzz_write_file(data, size);
    fuzz_stbi_fill = 0xFF;
    kdx_status sb = kdx_read_image(path, &b);
    if (sb != KDX_OK) {
        if (b) fuzz_die("read_image failed and wrote a tensor");
        fuzz_check_error("read_image", sb);
    } else {
        check_image(b);
    }
    if (!injected && !ignore_unwritten && sa != sb)
        fuzz_die("decode_image says %s, read_image of the same bytes %s (stb read memory it never wrote?)",
                 kdx_status_name(sa), kdx_status_name(sb));
    if (!injected && !ignore_unwritten && sa == KDX_OK && !same(a, b))
        fuzz_die("two decodes of the same bytes gave different pixels (stb left memory unwritten?)");
    kdx_tensor_release(a);
    kdx_tensor_release(b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_run(data, size, pass, "read_image");
    return 0;
}
