/* io_idx.c — the IDX format of MNIST and Fashion-MNIST, plain or
   gzip-compressed (zlib reads both). A corrupt or truncated file is an error
   that names the file, never a crash. */
#include "kdx_internal.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

/* Reads exactly n bytes; KDX_EFORMAT names what was being read on a short read. */
static kdx_status read_all(gzFile f, void *buf, size_t n, const char *path, const char *what)
{
    size_t got = 0;
    while (got < n) {
        unsigned chunk = n - got > (1u << 30) ? (1u << 30) : (unsigned)(n - got);
        int r = gzread(f, (char *)buf + got, chunk);
        if (r < 0) {
            int zerr;
            const char *msg = gzerror(f, &zerr);
            return kdx_fail(KDX_EFORMAT, "idx: %s: %s while reading the %s", path, msg ? msg : "read error", what);
        }
        if (r == 0) return kdx_fail(KDX_EFORMAT, "idx: %s: file ends in the %s (truncated?)", path, what);
        got += (size_t)r;
    }
    return KDX_OK;
}

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

/* Element type codes of the format, their sizes and names. */
static int type_size(int code)
{
    switch (code) {
    case 0x08: case 0x09: return 1; /* u8, i8 */
    case 0x0B: return 2;            /* i16 */
    case 0x0C: case 0x0D: return 4; /* i32, f32 */
    case 0x0E: return 8;            /* f64 */
    }
    return 0;
}

/* One big-endian element as a double (every IDX type fits exactly). */
static double element(int code, const unsigned char *p)
{
    switch (code) {
    case 0x08: return p[0];
    case 0x09: return (int8_t)p[0];
    case 0x0B: return (int16_t)(uint16_t)(p[0] << 8 | p[1]);
    case 0x0C: return (int32_t)be32(p);
    case 0x0D: {
        uint32_t u = be32(p);
        float f;
        memcpy(&f, &u, 4);
        return f;
    }
    case 0x0E: {
        uint64_t u = (uint64_t)be32(p) << 32 | be32(p + 4);
        double d;
        memcpy(&d, &u, 8);
        return d;
    }
    }
    return 0;
}

kdx_status kdx_read_idx(const char *path, int as_float, kdx_tensor **out)
{
    if (!path) return kdx_fail(KDX_EINVAL, "idx: path is NULL");
    gzFile f = gzopen(path, "rb");
    if (!f) return kdx_fail(KDX_EIO, "idx: cannot open %s: %s", path, strerror(errno ? errno : ENOENT));
    gzbuffer(f, 1 << 16);
    unsigned char head[4] = {0}, dims[4 * KDX_MAX_DIMS];
    kdx_tensor *t = NULL;
    unsigned char *raw = NULL;
    size_t rawbytes = 0;
    kdx_status s = read_all(f, head, 4, path, "header");
    int code = head[2], nd = head[3], es = type_size(code);
    if (s == KDX_OK && (head[0] != 0 || head[1] != 0 || es == 0))
        s = kdx_fail(KDX_EFORMAT, "idx: %s is not an IDX file (magic %02x %02x %02x %02x)", path, head[0], head[1],
                     head[2], head[3]);
    if (s == KDX_OK && (nd < 1 || nd > KDX_MAX_DIMS))
        s = kdx_fail(KDX_EFORMAT, "idx: %s has %d dims (1 to %d are supported)", path, nd, KDX_MAX_DIMS);
    if (s == KDX_OK) s = read_all(f, dims, (size_t)nd * 4, path, "dimension sizes");
    int64_t shape[KDX_MAX_DIMS], n = 1;
    for (int i = 0; s == KDX_OK && i < nd; i++) {
        shape[i] = be32(dims + 4 * i);
        if (shape[i] > 0 && n > ((int64_t)1 << 40) / shape[i])
            s = kdx_fail(KDX_EFORMAT, "idx: %s declares an impossibly large array", path);
        else
            n *= shape[i];
    }
    /* The header is checked against the file before anything is allocated: a
       plain file holds exactly the declared bytes; a gzip stream cannot expand
       more than deflate's limit of about 1032:1, so a small file that declares
       gigabytes is refused rather than allocated. */
    struct stat st;
    if (s == KDX_OK && stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
        double want = (double)n * es, have = (double)st.st_size - 4 - 4.0 * nd;
        if (gzdirect(f) ? want > have : want > 1040.0 * (double)st.st_size)
            s = kdx_fail(KDX_EFORMAT, "idx: %s declares %.0f bytes of data but the file is too short for that (truncated?)",
                         path, want);
    }
    kdx_dtype dt = as_float || code == 0x0D ? KDX_DTYPE_F32 : code == 0x0E ? KDX_DTYPE_F64 : KDX_DTYPE_I64;
    if (s == KDX_OK) s = kdx__new_raw("idx", dt, nd, shape, &t);
    /* Read in blocks and convert, so memory stays at the tensor plus one block. */
    const size_t block = (size_t)1 << 20;
    if (s == KDX_OK) {
        rawbytes = block * (size_t)es;
        raw = kdx__malloc_raw(rawbytes);
        if (!raw) s = kdx_fail(KDX_ENOMEM, "idx: out of memory reading %s", path);
    }
    for (int64_t at = 0; s == KDX_OK && at < n; at += (int64_t)block) {
        int64_t m = n - at < (int64_t)block ? n - at : (int64_t)block;
        s = read_all(f, raw, (size_t)m * (size_t)es, path, "data");
        char *dst = kdx__base(t);
        for (int64_t i = 0; s == KDX_OK && i < m; i++) {
            double v = element(code, raw + i * es);
            switch (dt) {
            case KDX_DTYPE_F32: ((float *)dst)[at + i] = (float)v; break;
            case KDX_DTYPE_F64: ((double *)dst)[at + i] = v; break;
            case KDX_DTYPE_I64: ((int64_t *)dst)[at + i] = (int64_t)v; break;
            }
        }
    }
    if (s == KDX_OK) {
        unsigned char extra;
        if (gzread(f, &extra, 1) > 0)
            s = kdx_fail(KDX_EFORMAT, "idx: %s has data past the %lld elements its header declares", path, (long long)n);
    }
    kdx__free(raw, rawbytes);
    gzclose(f);
    if (s != KDX_OK) {
        kdx_tensor_release(t);
        return s;
    }
    *out = t;
    return KDX_OK;
}
