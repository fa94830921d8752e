/* io_image.c — images in and out through stb_image and stb_image_write,
   linked from Debian's libstb (this is the only file that includes stb).
   Pixels cross over as float32 [C,H,W] in [0,1]. A missing, empty, corrupt or
   truncated file is an error that names the file and carries stb's reason,
   never a crash; a written image replaces its target atomically. */
#define _POSIX_C_SOURCE 200809L /* fsync */

#include "kdx_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <stb/stb_image.h>
#include <stb/stb_image_write.h>

/* Larger images are refused before stb allocates them: a corrupt header can
   claim any size, and 2^28 pixels (16384 x 16384) is far beyond what the
   engine's users feed a model. */
#define MAX_PIXELS ((int64_t)1 << 28)
/* Files past this are refused before they are read into memory. */
#define MAX_FILE_BYTES ((long)INT_MAX)

static const char *reason(void)
{
    const char *r = stbi_failure_reason();
    return r && *r ? r : "unknown reason";
}

/* Interleaved stb pixels (8- or 16-bit) -> a new float32 [C,H,W] in [0,1]. */
static kdx_status planar(const void *pix, int bits, int w, int h, int c, kdx_tensor **out)
{
    int64_t shape[3] = {c, h, w};
    kdx_tensor *t = NULL;
    KDX_TRY(kdx__new_raw("read_image", KDX_DTYPE_F32, 3, shape, &t));
    float *dst = (float *)kdx__base(t);
    int64_t plane = (int64_t)w * h;
    if (bits == 16) {
        const uint16_t *src = pix;
        for (int64_t i = 0; i < plane; i++)
            for (int k = 0; k < c; k++) dst[k * plane + i] = (float)src[i * c + k] / 65535.0f;
    } else {
        const unsigned char *src = pix;
        for (int64_t i = 0; i < plane; i++)
            for (int k = 0; k < c; k++) dst[k * plane + i] = (float)src[i * c + k] / 255.0f;
    }
    *out = t;
    return KDX_OK;
}

/* stb reads through these callbacks rather than from memory directly so that
   a truncated file is caught: BMP, TGA, GIF and JPEG decoders quietly read
   zeros past the end of their input, but through callbacks every byte
   wanted beyond the end shows up as a read that finds nothing left. */
typedef struct mem_reader {
    const unsigned char *p;
    size_t n, pos;
    int overread; /* the decoder asked for bytes past the end */
} mem_reader;

static int mem_read(void *user, char *data, int size)
{
    mem_reader *r = user;
    size_t left = r->n - r->pos, k = size > 0 ? (size_t)size : 0;
    if (k > 0 && left == 0) r->overread = 1;
    if (k > left) k = left;
    memcpy(data, r->p + r->pos, k);
    r->pos += k;
    return (int)k;
}

static void mem_skip(void *user, int n)
{
    mem_reader *r = user;
    if (n < 0) r->pos = (size_t)-n > r->pos ? 0 : r->pos - (size_t)-n;
    else r->pos = (size_t)n > r->n - r->pos ? r->n : r->pos + (size_t)n;
}

static int mem_eof(void *user)
{
    mem_reader *r = user;
    return r->pos >= r->n;
}

static const stbi_io_callbacks mem_io = {mem_read, mem_skip, mem_eof};

/* Starts r over at the beginning of the data. */
static mem_reader *rewind_reader(mem_reader *r)
{
    r->pos = 0;
    r->overread = 0;
    return r;
}

kdx_status kdx_decode_image(const void *data, size_t n, const char *name, kdx_tensor **out)
{
    if (!name) name = "(memory)";
    if (!out) return kdx_fail(KDX_EINVAL, "read_image: out is NULL");
    if (!data && n > 0) return kdx_fail(KDX_EINVAL, "read_image: %s: data is NULL", name);
    if (n == 0) return kdx_fail(KDX_EFORMAT, "read_image: %s is empty", name);
    if (n > (size_t)INT_MAX) return kdx_fail(KDX_EFORMAT, "read_image: %s is too large (%zu bytes)", name, n);
    mem_reader r = {data, n, 0, 0};
    int w = 0, h = 0, c = 0;
    if (!stbi_info_from_callbacks(&mem_io, rewind_reader(&r), &w, &h, &c))
        return kdx_fail(KDX_EFORMAT, "read_image: %s is not a readable image (%s)", name, reason());
    if (w <= 0 || h <= 0 || c < 1 || c > 4)
        return kdx_fail(KDX_EFORMAT, "read_image: %s declares a %dx%d image with %d channels", name, w, h, c);
    if ((int64_t)w * h > MAX_PIXELS)
        return kdx_fail(KDX_EFORMAT, "read_image: %s declares a %dx%d image (more than %lld pixels)", name, w, h,
                        (long long)MAX_PIXELS);
    /* No format packs more than about 8,000 pixels into a byte (a 1-bit
       PNG of one colour; GIF and progressive JPEG stay below 3,000), so a
       small file that claims a huge image is corrupt: refuse it before stb
       allocates the pixels. */
    if ((int64_t)w * h > (int64_t)n * 16384 + ((int64_t)1 << 24))
        return kdx_fail(KDX_EFORMAT, "read_image: %s declares a %dx%d image, more than its %zu bytes can hold", name, w,
                        h, n);
    int bits = stbi_is_16_bit_from_callbacks(&mem_io, rewind_reader(&r)) ? 16 : 8;
    int w2 = 0, h2 = 0, c2 = 0;
    void *pix = bits == 16 ? (void *)stbi_load_16_from_callbacks(&mem_io, rewind_reader(&r), &w2, &h2, &c2, 0)
                           : (void *)stbi_load_from_callbacks(&mem_io, rewind_reader(&r), &w2, &h2, &c2, 0);
    if (!pix) return kdx_fail(KDX_EFORMAT, "read_image: cannot decode %s (%s)", name, reason());
    kdx_status s = KDX_OK;
    /* The channel count is the decoder's (for GIF it may differ from the
       header's); the size must be the one checked above. */
    if (w2 != w || h2 != h || c2 < 1 || c2 > 4)
        s = kdx_fail(KDX_EFORMAT, "read_image: %s decodes to %dx%d with %d channels, not the %dx%d its header declares",
                     name, w2, h2, c2, w, h);
    else if (r.overread)
        s = kdx_fail(KDX_EFORMAT, "read_image: %s is truncated (the decoder needed more than its %zu bytes)", name, n);
    if (s == KDX_OK) s = planar(pix, bits, w, h, c2, out);
    stbi_image_free(pix);
    return s;
}

kdx_status kdx_read_image(const char *path, kdx_tensor **out)
{
    if (!path) return kdx_fail(KDX_EINVAL, "read_image: path is NULL");
    FILE *f = fopen(path, "rb");
    if (!f) return kdx_fail(KDX_EIO, "read_image: cannot open %s: %s", path, strerror(errno ? errno : ENOENT));
    long size = -1;
    if (fseek(f, 0, SEEK_END) == 0) size = ftell(f);
    if (size < 0 || fseek(f, 0, SEEK_SET) != 0) {
        int e = errno;
        fclose(f);
        return kdx_fail(KDX_EIO, "read_image: cannot read %s: %s", path, strerror(e ? e : EIO));
    }
    if (size > MAX_FILE_BYTES) {
        fclose(f);
        return kdx_fail(KDX_EFORMAT, "read_image: %s is too large (%ld bytes)", path, size);
    }
    size_t n = (size_t)size;
    unsigned char *buf = kdx__malloc_raw(n ? n : 1);
    if (!buf) {
        fclose(f);
        return kdx_fail(KDX_ENOMEM, "read_image: out of memory reading %s (%zu bytes)", path, n);
    }
    size_t got = fread(buf, 1, n, f);
    kdx_status s = KDX_OK;
    if (got != n) s = kdx_fail(KDX_EIO, "read_image: %s: read %zu of %zu bytes", path, got, n);
    fclose(f);
    if (s == KDX_OK) s = kdx_decode_image(buf, n, path, out);
    kdx__free(buf, n ? n : 1);
    return s;
}

/* ---- writing ---- */

/* t ([C,H,W] with C in 1..4, or [H,W]; float) as interleaved 8-bit pixels:
   values clamped to [0,1] and rounded, NaN written as 0. [out] *pix: free
   with kdx__free(*pix, *bytes). */
static kdx_status interleave(const char *fname, const kdx_tensor *t, int *w, int *h, int *c, unsigned char **pix,
                             size_t *bytes)
{
    KDX_TRY(kdx__check_float(fname, "t", t));
    int nd = kdx_tensor_ndim(t);
    if (nd != 2 && nd != 3)
        return kdx_fail(KDX_ESHAPE, "%s: t must be [C,H,W] or [H,W], got %s", fname, kdx__shp(t));
    const int64_t *sh = kdx_tensor_shape(t);
    int64_t C = nd == 3 ? sh[0] : 1, H = sh[nd - 2], W = sh[nd - 1];
    if (C < 1 || C > 4)
        return kdx_fail(KDX_ESHAPE, "%s: t must have 1 to 4 channels (gray, gray+alpha, RGB, RGBA), got %s", fname,
                        kdx__shp(t));
    if (H < 1 || W < 1 || H > 65535 || W > 65535)
        return kdx_fail(KDX_ESHAPE, "%s: height and width must be in [1, 65535], got %s", fname, kdx__shp(t));
    kdx_tensor *ct = NULL;
    bool was = kdx__grad_pause(); /* the copy of a non-contiguous view is not part of any graph */
    kdx_status s = kdx_to(t, KDX_DTYPE_F32, &ct);
    kdx_tensor *cc = NULL;
    if (s == KDX_OK) s = kdx_contiguous(ct, &cc);
    kdx__grad_restore(was);
    kdx_tensor_release(ct);
    if (s != KDX_OK) return s;
    size_t n = (size_t)(C * H * W);
    unsigned char *p = kdx__malloc_raw(n);
    if (!p) {
        kdx_tensor_release(cc);
        return kdx_fail(KDX_ENOMEM, "%s: out of memory (%zu bytes)", fname, n);
    }
    const float *src = kdx_tensor_data(cc);
    int64_t plane = H * W;
    for (int64_t k = 0; k < C; k++)
        for (int64_t i = 0; i < plane; i++) {
            float v = src[k * plane + i];
            v = v > 0.0f ? (v < 1.0f ? v : 1.0f) : 0.0f; /* NaN fails v > 0: written as 0 */
            p[i * C + k] = (unsigned char)lrintf(v * 255.0f);
        }
    kdx_tensor_release(cc);
    *w = (int)W, *h = (int)H, *c = (int)C, *pix = p, *bytes = n;
    return KDX_OK;
}

/* Where stb_image_write's output goes: the temporary file. */
typedef struct sink {
    int fd;
    int err; /* errno of the first failed write, 0 if none */
} sink;

static void sink_write(void *ctx, void *data, int size)
{
    sink *k = ctx;
    const char *p = data;
    size_t n = size > 0 ? (size_t)size : 0;
    while (n > 0 && !k->err) {
        ssize_t w = write(k->fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) {
            k->err = errno ? errno : EIO;
            break;
        }
        p += w, n -= (size_t)w;
    }
}

/* Creates path.tmp.<pid>[.k] exclusively in path's directory; the name goes
   to tmp (room for len(path) + 48). */
static int create_temp(const char *path, char *tmp, size_t cap)
{
    int fd = -1;
    for (int k = 0; k < 1000 && fd < 0; k++) {
        if (k) snprintf(tmp, cap, "%s.tmp.%ld.%d", path, (long)getpid(), k);
        else snprintf(tmp, cap, "%s.tmp.%ld", path, (long)getpid());
        fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (fd < 0 && errno != EEXIST && errno != EINTR) return -1;
    }
    return fd;
}

typedef enum { FMT_PNG, FMT_JPG } img_format;

/* Encodes the pixels into a temporary file and renames it over path, so a
   reader never sees half an image and a failure leaves path as it was. */
static kdx_status write_file(const char *fname, const char *path, img_format fmt, int w, int h, int c,
                             const unsigned char *pix, int quality)
{
    size_t cap = strlen(path) + 48;
    char *tmp = kdx__malloc(cap);
    if (!tmp) return kdx_fail(KDX_ENOMEM, "%s: out of memory", fname);
    int fd = create_temp(path, tmp, cap);
    if (fd < 0) {
        kdx_status s = kdx_fail(KDX_EIO, "%s: cannot create %s: %s", fname, tmp, strerror(errno));
        kdx__free(tmp, cap);
        return s;
    }
    sink k = {fd, 0};
    int ok = fmt == FMT_PNG ? stbi_write_png_to_func(sink_write, &k, w, h, c, pix, w * c)
                            : stbi_write_jpg_to_func(sink_write, &k, w, h, c, pix, quality);
    kdx_status s = KDX_OK;
    if (k.err) s = kdx_fail(KDX_EIO, "%s: writing %s failed: %s", fname, tmp, strerror(k.err));
    else if (!ok) s = kdx_fail(KDX_ENOMEM, "%s: the encoder failed for %s (out of memory?)", fname, path);
    if (s == KDX_OK && fsync(fd) != 0) s = kdx_fail(KDX_EIO, "%s: fsync of %s failed: %s", fname, tmp, strerror(errno));
    if (close(fd) != 0 && s == KDX_OK) s = kdx_fail(KDX_EIO, "%s: closing %s failed: %s", fname, tmp, strerror(errno));
    if (s == KDX_OK && rename(tmp, path) != 0)
        s = kdx_fail(KDX_EIO, "%s: cannot rename %s to %s: %s", fname, tmp, path, strerror(errno));
    if (s != KDX_OK) unlink(tmp);
    kdx__free(tmp, cap);
    return s;
}

static kdx_status write_image(const char *fname, const char *path, const kdx_tensor *t, img_format fmt, int quality)
{
    if (!path || !*path) return kdx_fail(KDX_EINVAL, "%s: path must be a non-empty string", fname);
    int w, h, c;
    unsigned char *pix = NULL;
    size_t bytes = 0;
    KDX_TRY(interleave(fname, t, &w, &h, &c, &pix, &bytes));
    kdx_status s = write_file(fname, path, fmt, w, h, c, pix, quality);
    kdx__free(pix, bytes);
    return s;
}

kdx_status kdx_write_png(const char *path, const kdx_tensor *t)
{
    return write_image("write_png", path, t, FMT_PNG, 0);
}

kdx_status kdx_write_jpg(const char *path, const kdx_tensor *t, int quality)
{
    if (quality < 1 || quality > 100)
        return kdx_fail(KDX_EINVAL, "write_jpg: quality must be in [1, 100], got %d", quality);
    return write_image("write_jpg", path, t, FMT_JPG, quality);
}
