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

#include <zlib.h>

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
   wanted beyond the end shows up as a read that finds nothing left. PNM,
   TGA and HDR also read runs of pixels straight into their output
   (stbi__getn) and ignore a short count, leaving the rest unwritten, so a
   short read is truncation too, except for stb refilling its own 128-byte
   buffer, where a short read at the end of the data is normal. That buffer
   is the target of a context's first read (stbi__start_callbacks refills
   it), so it is told apart by its address. */
typedef struct mem_reader {
    const unsigned char *p;
    size_t n, pos;
    const char *refill; /* stb's buffer: the first read's target, NULL before it */
    int overread;       /* the decoder asked for bytes past the end */
} mem_reader;

static int mem_read(void *user, char *data, int size)
{
    mem_reader *r = user;
    size_t left = r->n - r->pos, k = size > 0 ? (size_t)size : 0;
    if (!r->refill) r->refill = data;
    if (k > 0 && left == 0) r->overread = 1;
    if (k > left) {
        if (data != r->refill) r->overread = 1;
        k = left;
    }
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
    r->refill = NULL; /* each stb call starts a new context with its own buffer */
    r->overread = 0;
    return r;
}

/* ---- what stb does not check ----

   stb keeps its JPEG tables and its BMP palette in memory it never clears,
   and trusts a file to define every table and palette entry it uses. A
   corrupt file that does not decodes from garbage (or trips an assert in
   Debian's libstb, which keeps them), so these scans find such files first.
   Each walks the bytes the way stb will and answers NULL for a file stb may
   decode, or why it must not; a file it cannot follow is left to stb, whose
   own checks reject it. */

static unsigned be16(const unsigned char *p)
{
    return (unsigned)p[0] << 8 | p[1];
}

static uint32_t le32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* The tables a JPEG has defined so far, as bit sets over ids 0..3, and its
   frame's components. */
typedef struct jpeg_state {
    unsigned quant, dc, ac;
    int progressive, nf; /* nf == 0: no frame header yet */
    unsigned char id[4], tq[4];
    unsigned covered; /* components a scan has written: any scan, or for
                         progressive a first DC scan (which clears the block) */
} jpeg_state;

/* DQT: 64 entries of 8 or 16 bits per table (stbi__process_marker). */
static void jpeg_dqt(const unsigned char *s, size_t len, jpeg_state *j)
{
    for (size_t i = 0; i < len;) {
        int p = s[i] >> 4, t = s[i] & 15;
        size_t size = p ? 129 : 65;
        if (p > 1 || t > 3 || size > len - i) return; /* stb rejects it */
        j->quant |= 1u << t;
        i += size;
    }
}

/* DHT: class, id, 16 code counts and the values. */
static void jpeg_dht(const unsigned char *s, size_t len, jpeg_state *j)
{
    for (size_t i = 0; i < len;) {
        int tc = s[i] >> 4, th = s[i] & 15;
        if (tc > 1 || th > 3 || len - i < 17) return;
        size_t size = 17;
        for (int k = 1; k <= 16; k++) size += s[i + k];
        if (size > len - i) return;
        if (tc == 0) j->dc |= 1u << th;
        else j->ac |= 1u << th;
        i += size;
    }
}

/* SOS: every table the scan's components use must exist by now. stb decodes
   a baseline scan with both Huffman tables and the quantisation table; a
   progressive DC scan needs the DC table unless it refines (Ah != 0), an AC
   scan the AC table, and the quantisation table is applied at the end. */
static const char *jpeg_sos(const unsigned char *s, size_t len, jpeg_state *j, int scan, char *why, size_t cap)
{
    int ns = len > 0 ? s[0] : 0;
    if (ns < 1 || ns > j->nf || len != 4 + 2 * (size_t)ns) return NULL; /* stb rejects it */
    int ss = s[1 + 2 * ns], ah = s[3 + 2 * ns] >> 4;
    int need_dc = !j->progressive || (ss == 0 && ah == 0), need_ac = !j->progressive || ss > 0;
    for (int k = 0; k < ns; k++) {
        int c = 0, td = s[2 + 2 * k] >> 4, ta = s[2 + 2 * k] & 15;
        while (c < j->nf && j->id[c] != s[1 + 2 * k]) c++; /* stb takes the first match */
        if (c == j->nf || td > 3 || ta > 3) return NULL;
        if (!(j->quant >> j->tq[c] & 1))
            snprintf(why, cap, "component %d uses quantisation table %d, which no DQT defines", c + 1, j->tq[c]);
        else if (need_dc && !(j->dc >> td & 1))
            snprintf(why, cap, "scan %d uses DC Huffman table %d, which no DHT defines", scan, td);
        else if (need_ac && !(j->ac >> ta & 1))
            snprintf(why, cap, "scan %d uses AC Huffman table %d, which no DHT defines", scan, ta);
        else {
            if (need_dc) j->covered |= 1u << c;
            continue;
        }
        return why;
    }
    return NULL;
}

/* Past a scan's entropy-coded data: to the first marker that is not a
   stuffed 0xFF00 or a restart RSTn (fill bytes 0xFF may precede either). */
static size_t jpeg_skip_entropy(const unsigned char *p, size_t n, size_t i)
{
    while (i < n) {
        if (p[i] != 0xFF) {
            i++;
            continue;
        }
        size_t k = i + 1;
        while (k < n && p[k] == 0xFF) k++;
        if (k < n && p[k] != 0x00 && !(p[k] >= 0xD0 && p[k] <= 0xD7)) return i;
        i = k + 1;
    }
    return n;
}

/* JPEG (starting with SOI, as stbi__jpeg_test wants): walks the markers to
   EOI (stb fails a file without one) and checks each scan's tables, then
   that every component was written. */
static const char *jpeg_check(const unsigned char *p, size_t n, char *why, size_t cap)
{
    size_t i = 0;
    while (i < n && p[i] == 0xFF) i++;
    if (i < 1 || i >= n || p[i] != 0xD8) return NULL;
    i++;
    jpeg_state j = {0};
    int scans = 0;
    for (;;) {
        while (i < n && p[i] != 0xFF) i++; /* stb skips junk between segments */
        while (i < n && p[i] == 0xFF) i++;
        if (i >= n) return NULL;
        int m = p[i++];
        if (m == 0xD9) break; /* EOI */
        if (m == 0x00 || m == 0x01 || (m >= 0xD0 && m <= 0xD8)) continue; /* no length; stb rejects most */
        if (n - i < 2 || be16(p + i) < 2 || be16(p + i) > n - i) return NULL; /* truncated: stb notices */
        const unsigned char *s = p + i + 2;
        size_t len = be16(p + i) - 2;
        i += len + 2;
        if (m == 0xDB) {
            jpeg_dqt(s, len, &j);
        } else if (m == 0xC4) {
            jpeg_dht(s, len, &j);
        } else if (m >= 0xC0 && m <= 0xC2) { /* the frames stb decodes (stbi__SOF) */
            if (j.nf || len < 6 || s[5] < 1 || s[5] > 4 || len < 6 + 3 * (size_t)s[5]) return NULL;
            j.nf = s[5];
            j.progressive = m == 0xC2;
            for (int c = 0; c < j.nf; c++) j.id[c] = s[6 + 3 * c], j.tq[c] = s[8 + 3 * c];
        } else if (m == 0xDA) {
            if (!j.nf) return NULL; /* a scan before the frame: stb rejects it */
            if (jpeg_sos(s, len, &j, ++scans, why, cap)) return why;
            i = jpeg_skip_entropy(p, n, i);
        }
    }
    for (int c = 0; c < j.nf; c++)
        if (!(j.covered >> c & 1)) {
            snprintf(why, cap, "component %d is in no %sscan", c + 1, j.progressive ? "first DC " : "");
            return why;
        }
    return NULL;
}

/* BMP of 1, 4 or 8 bits per pixel: stb sizes the palette from the gap
   between the headers and the pixels (not from biClrUsed) and reads it into
   an uninitialised array of 256, so every index the pixels use must fall in
   it. Follows stbi__bmp_load: same palette size, same rows and padding. */
static const char *bmp_check(const unsigned char *p, size_t n, char *why, size_t cap)
{
    if (n < 34 || p[0] != 'B' || p[1] != 'M') return NULL;
    uint32_t hsz = le32(p + 14);
    if (hsz != 12 && hsz != 40 && hsz != 56 && hsz != 108 && hsz != 124) return NULL; /* not stb's BMP */
    int64_t offset = (int32_t)le32(p + 10), w, h;
    int bpp;
    if (hsz == 12) {
        w = p[18] | p[19] << 8, h = p[20] | p[21] << 8, bpp = p[24] | p[25] << 8;
    } else {
        w = (int32_t)le32(p + 18), h = (int32_t)le32(p + 22), bpp = p[28] | p[29] << 8;
        /* stb refuses compression 1 to 3 with a palette and 4 up, but reads
           it as a signed int: a negative one decodes as uncompressed. */
        if ((int32_t)le32(p + 30) > 0) return NULL;
    }
    h = h < 0 ? -h : h;
    if ((bpp != 1 && bpp != 4 && bpp != 8) || w <= 0) return NULL;
    /* stb divides by 3 (rounding toward zero) but shifts by 2 (rounding
       down): an offset 1 to 3 bytes inside the header gives 0 with one and
       -1 with the other. */
    int64_t gap = offset - 14 - (int64_t)hsz;
    int64_t psize = hsz == 12 ? (offset - 14 - 24) / 3 : (gap - (gap < 0 ? 3 : 0)) / 4;
    if (offset < 0 || psize == 0 || psize > 256) return NULL; /* stb rejects these */
    if (psize < 0) {
        snprintf(why, cap, "its pixel data (at byte %lld) starts inside its header", (long long)offset);
        return why;
    }
    if (psize >= (1 << bpp)) return NULL;
    int64_t width = bpp == 1 ? (w + 7) / 8 : bpp == 4 ? (w + 1) / 2 : w, stride = width + ((-width) & 3);
    /* Bytes past the end are not looked at: stb reads them as zeros (colour
       0, which exists) and the reader reports the file truncated. */
    for (int64_t y = 0, row = offset; y < h && row < (int64_t)n; y++, row += stride)
        for (int64_t x = 0; x < w; x++) {
            int64_t at = row + (bpp == 8 ? x : bpp == 4 ? x / 2 : x / 8);
            if (at >= (int64_t)n) break;
            int v = bpp == 8 ? p[at] : bpp == 4 ? (p[at] >> (x % 2 ? 0 : 4)) & 15 : (p[at] >> (7 - x % 8)) & 1;
            if (v >= psize) {
                snprintf(why, cap, "a pixel uses colour %d of a %lld-colour palette", v, (long long)psize);
                return why;
            }
        }
    return NULL;
}

/* PNG: stb's inflate takes the unused distance codes 30 and 31 as a
   distance of 0 and copies pixels from output it has not written yet, so the
   compressed stream is first run through zlib, which refuses such codes (and
   checks the Adler-32 that stb ignores). The output is thrown away; a stream
   cut short is left to stb, which reports the file truncated. */
static const char *png_check(const unsigned char *p, size_t n, char *why, size_t cap)
{
    static const unsigned char sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
    if (n < 8 || memcmp(p, sig, 8) != 0) return NULL;
    z_stream z;
    memset(&z, 0, sizeof z);
    int raw = n >= 16 && memcmp(p + 12, "CgBI", 4) == 0; /* Apple's PNGs: deflate without zlib's wrapper */
    if (inflateInit2(&z, raw ? -15 : 15) != Z_OK) return NULL;
    unsigned char sink[16384];
    int rc = Z_OK;
    for (size_t at = 8; rc == Z_OK && n - at >= 12;) {
        uint32_t len = (uint32_t)p[at] << 24 | (uint32_t)p[at + 1] << 16 | (uint32_t)p[at + 2] << 8 | p[at + 3];
        if (len > n - at - 12) break;
        if (memcmp(p + at + 4, "IDAT", 4) == 0) {
            z.next_in = (unsigned char *)(uintptr_t)(p + at + 8);
            z.avail_in = len;
            do {
                z.next_out = sink;
                z.avail_out = sizeof sink;
                rc = inflate(&z, Z_NO_FLUSH);
            } while (rc == Z_OK && z.avail_in > 0);
            if (rc == Z_BUF_ERROR) rc = Z_OK; /* needs the next IDAT */
        }
        at += 12 + (size_t)len;
    }
    const char *res = NULL;
    if (rc == Z_DATA_ERROR || rc == Z_NEED_DICT) {
        snprintf(why, cap, "its compressed pixels are invalid (zlib: %s)", z.msg ? z.msg : "needs a dictionary");
        res = why;
    }
    inflateEnd(&z);
    return res;
}

kdx_status kdx_decode_image(const void *data, size_t n, const char *name, kdx_tensor **out)
{
    if (!name) name = "(memory)";
    if (!out) return kdx_fail(KDX_EINVAL, "read_image: out is NULL");
    if (!data && n > 0) return kdx_fail(KDX_EINVAL, "read_image: %s: data is NULL", name);
    if (n == 0) return kdx_fail(KDX_EFORMAT, "read_image: %s is empty", name);
    if (n > (size_t)INT_MAX) return kdx_fail(KDX_EFORMAT, "read_image: %s is too large (%zu bytes)", name, n);
    mem_reader r = {data, n, 0, NULL, 0};
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
    char why[120];
    const unsigned char *b = data;
    if (jpeg_check(b, n, why, sizeof why))
        return kdx_fail(KDX_EFORMAT, "read_image: %s is a corrupt JPEG: %s", name, why);
    if (bmp_check(b, n, why, sizeof why)) return kdx_fail(KDX_EFORMAT, "read_image: %s is a corrupt BMP: %s", name, why);
    if (png_check(b, n, why, sizeof why)) return kdx_fail(KDX_EFORMAT, "read_image: %s is a corrupt PNG: %s", name, why);
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
