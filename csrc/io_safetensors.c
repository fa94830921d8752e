/* io_safetensors.c — checkpoints in the safetensors format
   (https://github.com/huggingface/safetensors): an 8-byte little-endian
   header length N, N bytes of JSON naming each tensor's dtype, shape and
   byte range, then the raw little-endian data. This file reads them; the
   writer is io_safetensors_write.c, and io_safetensors.h holds what the two
   share.

   The reader trusts nothing in the file: a strict parser for the JSON subset
   the format uses (objects, arrays, strings, integers) and a check that the
   byte ranges tile the data exactly come before any tensor is allocated, so
   a corrupt or hostile file gives an error, never a crash or a huge
   allocation. */
#define _POSIX_C_SOURCE 200809L /* fstat, pread */

#include "kdx_internal.h"
#include "io_safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The reference reader refuses headers above 100 MB; so do we. */
#define ST_MAX_HEADER 100000000ull

/* ---- dtypes of the format ---- */

static const st_dtype ST_DTYPES[] = {
    {"F32", 4, ST_NATIVE, KDX_DTYPE_F32, 15}, {"F64", 8, ST_NATIVE, KDX_DTYPE_F64, 16},
    {"I64", 8, ST_NATIVE, KDX_DTYPE_I64, 17},  {"I32", 4, ST_INT, KDX_DTYPE_I64, 13},
    {"I16", 2, ST_INT, KDX_DTYPE_I64, 9},      {"I8", 1, ST_INT, KDX_DTYPE_I64, 5},
    {"U32", 4, ST_UINT, KDX_DTYPE_I64, 14},    {"U16", 2, ST_UINT, KDX_DTYPE_I64, 10},
    {"U8", 1, ST_UINT, KDX_DTYPE_I64, 4},      {"BOOL", 1, ST_BOOL, KDX_DTYPE_I64, 0},
    {"F16", 2, ST_F16, KDX_DTYPE_F32, 11},     {"BF16", 2, ST_BF16, KDX_DTYPE_F32, 12},
};
#define ST_NDTYPES ((int)(sizeof ST_DTYPES / sizeof ST_DTYPES[0]))

const st_dtype *kdx__st_native(kdx_dtype dt)
{
    return &ST_DTYPES[dt == KDX_DTYPE_F32 ? 0 : dt == KDX_DTYPE_F64 ? 1 : 2];
}

int kdx__st_host_is_le(void)
{
    const uint16_t one = 1;
    return *(const unsigned char *)&one == 1;
}

void kdx__st_swap_bytes(char *p, size_t n, int size)
{
    for (size_t i = 0; i < n; i++, p += size)
        for (int a = 0, b = size - 1; a < b; a++, b--) {
            char c = p[a];
            p[a] = p[b];
            p[b] = c;
        }
}

/* IEEE half -> float, exact for every value (subnormals normalised, inf and
   NaN payloads kept). */
static float half_to_float(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu, bits;
    if (e == 0 && m == 0) {
        bits = sign;
    } else if (e == 0) {
        uint32_t shift = 0;
        while (!(m & 0x400u)) m <<= 1, shift++;
        bits = sign | ((113u - shift) << 23) | ((m & 0x3ffu) << 13);
    } else if (e == 31) {
        bits = sign | 0x7f800000u | (m << 13);
    } else {
        bits = sign | ((e + 112u) << 23) | (m << 13);
    }
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

/* Decodes n little-endian elements of a converted dtype from src into dst. */
static void convert(const st_dtype *d, const unsigned char *src, size_t n, void *dst)
{
    int64_t *oi = dst;
    float *of = dst;
    for (size_t i = 0; i < n; i++, src += d->size) {
        uint32_t u = 0;
        for (int b = d->size - 1; b >= 0; b--) u = (u << 8) | src[b];
        switch (d->kind) {
        case ST_INT: {
            uint32_t sign = (uint32_t)1 << (8 * d->size - 1);
            oi[i] = (u & sign) ? (int64_t)u - 2 * (int64_t)sign : (int64_t)u;
            break;
        }
        case ST_UINT: oi[i] = (int64_t)u; break;
        case ST_BOOL: oi[i] = u != 0; break;
        case ST_F16: of[i] = half_to_float((uint16_t)u); break;
        case ST_BF16: {
            uint32_t bits = u << 16;
            memcpy(&of[i], &bits, sizeof bits);
            break;
        }
        }
    }
}

/* ---- UTF-8 ---- */

/* Length of the valid UTF-8 sequence at s (at most n bytes), 0 if invalid:
   no overlong forms, no surrogates, nothing above U+10FFFF. */
static int utf8_len(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    int len;
    uint32_t cp, min;
    if (c < 0x80) return 1;
    if (c >= 0xc2 && c <= 0xdf) len = 2, cp = c & 0x1f, min = 0x80;
    else if (c >= 0xe0 && c <= 0xef) len = 3, cp = c & 0x0f, min = 0x800;
    else if (c >= 0xf0 && c <= 0xf4) len = 4, cp = c & 0x07, min = 0x10000;
    else return 0;
    if ((size_t)len > n) return 0;
    for (int i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80) return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
    return len;
}

int kdx__st_utf8_valid(const char *s)
{
    size_t n = strlen(s);
    for (size_t i = 0; i < n;) {
        int l = utf8_len((const unsigned char *)s + i, n - i);
        if (!l) return 0;
        i += (size_t)l;
    }
    return 1;
}

/* ---- a growable byte buffer (engine allocator) ---- */

void kdx__st_buf_put(buf *b, const void *src, size_t n)
{
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n + 1) cap *= 2;
        char *p = kdx__malloc_raw(cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        if (b->n) memcpy(p, b->p, b->n);
        kdx__free(b->p, b->cap);
        b->p = p, b->cap = cap;
    }
    memcpy(b->p + b->n, src, n);
    b->n += n;
    b->p[b->n] = 0;
}

void kdx__st_buf_free(buf *b)
{
    kdx__free(b->p, b->cap);
    b->p = NULL, b->n = b->cap = 0;
}

char *kdx__st_dup_str(const char *s, size_t n)
{
    char *p = kdx__malloc_raw(n + 1);
    if (p) memcpy(p, s, n), p[n] = 0;
    return p;
}

static void free_str(char *s)
{
    if (s) kdx__free(s, strlen(s) + 1);
}

/* ---- the loaded file ---- */

typedef struct st_entry {
    char *name;
    const st_dtype *dt;
    int ndim;
    int64_t shape[KDX_MAX_DIMS];
    uint64_t begin, end;
    kdx_tensor *t;
} st_entry;

typedef struct st_meta {
    char *key, *value;
} st_meta;

struct kdx_safetensors {
    int n, cap, nmeta, mcap;
    st_entry *e;
    st_meta *m;
};

void kdx_safetensors_free(kdx_safetensors *st)
{
    if (!st) return;
    for (int i = 0; i < st->n; i++) {
        free_str(st->e[i].name);
        kdx_tensor_release(st->e[i].t);
    }
    for (int i = 0; i < st->nmeta; i++) free_str(st->m[i].key), free_str(st->m[i].value);
    kdx__free(st->e, (size_t)st->cap * sizeof *st->e);
    kdx__free(st->m, (size_t)st->mcap * sizeof *st->m);
    kdx__free(st, sizeof *st);
}

int kdx_safetensors_count(const kdx_safetensors *st) { return st ? st->n : 0; }

const char *kdx_safetensors_name(const kdx_safetensors *st, int i)
{
    return st && i >= 0 && i < st->n ? st->e[i].name : NULL;
}

kdx_tensor *kdx_safetensors_tensor(const kdx_safetensors *st, int i)
{
    return st && i >= 0 && i < st->n ? st->e[i].t : NULL;
}

const char *kdx_safetensors_file_dtype(const kdx_safetensors *st, int i)
{
    return st && i >= 0 && i < st->n ? st->e[i].dt->name : NULL;
}

int kdx_safetensors_find(const kdx_safetensors *st, const char *name)
{
    int lo = 0, hi = st && name ? st->n - 1 : -1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2, c = strcmp(st->e[mid].name, name);
        if (c == 0) return mid;
        if (c < 0) lo = mid + 1;
        else hi = mid - 1;
    }
    return -1;
}

int kdx_safetensors_meta_count(const kdx_safetensors *st) { return st ? st->nmeta : 0; }

const char *kdx_safetensors_meta_key(const kdx_safetensors *st, int i)
{
    return st && i >= 0 && i < st->nmeta ? st->m[i].key : NULL;
}

const char *kdx_safetensors_meta_value(const kdx_safetensors *st, int i)
{
    return st && i >= 0 && i < st->nmeta ? st->m[i].value : NULL;
}

/* Makes room for one more element in an array of *cap elements of size sz. */
static int grow(void **arr, int n, int *cap, size_t sz)
{
    if (n < *cap) return 1;
    int ncap = *cap ? *cap * 2 : 8;
    void *p = kdx__malloc((size_t)ncap * sz);
    if (!p) return 0;
    if (n) memcpy(p, *arr, (size_t)n * sz);
    kdx__free(*arr, (size_t)*cap * sz);
    *arr = p, *cap = ncap;
    return 1;
}

/* ---- a strict parser for the header's JSON subset ---- */

typedef struct jp {
    const char *p, *start, *end;
    const char *path;
    kdx_safetensors *st;
} jp;

/* Records "<fn>: <path>: <message>" and returns s. */
kdx_status kdx__st_fail(const char *fn, const char *path, kdx_status s, const char *fmt, ...)
{
    char msg[384];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return kdx_fail(s, "%s: %s: %s", fn, path, msg);
}
#define load_fail(...) kdx__st_fail("load_safetensors", __VA_ARGS__)

/* A syntax error at the parser's position. */
static kdx_status bad_json(jp *j, const char *what)
{
    if (j->p >= j->end)
        return load_fail(j->path, KDX_EFORMAT, "invalid header JSON: %s, found the end of the header", what);
    unsigned char c = (unsigned char)*j->p;
    if (c >= 0x20 && c < 0x7f)
        return load_fail(j->path, KDX_EFORMAT, "invalid header JSON at byte %ld: %s, found '%c'",
                         (long)(j->p - j->start), what, c);
    return load_fail(j->path, KDX_EFORMAT, "invalid header JSON at byte %ld: %s, found byte 0x%02x",
                     (long)(j->p - j->start), what, c);
}

static void skip_ws(jp *j)
{
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r')) j->p++;
}

/* Skips whitespace and consumes c if it comes next. */
static int accept(jp *j, char c)
{
    skip_ws(j);
    if (j->p < j->end && *j->p == c) {
        j->p++;
        return 1;
    }
    return 0;
}

static int hex4(const char *p, uint32_t *v)
{
    *v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0) return 0;
        *v = (*v << 4) | (uint32_t)d;
    }
    return 1;
}

static void put_utf8(buf *b, uint32_t cp)
{
    unsigned char u[4];
    size_t n;
    if (cp < 0x80) u[0] = (unsigned char)cp, n = 1;
    else if (cp < 0x800) u[0] = (unsigned char)(0xc0 | cp >> 6), u[1] = (unsigned char)(0x80 | (cp & 0x3f)), n = 2;
    else if (cp < 0x10000)
        u[0] = (unsigned char)(0xe0 | cp >> 12), u[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f)),
        u[2] = (unsigned char)(0x80 | (cp & 0x3f)), n = 3;
    else
        u[0] = (unsigned char)(0xf0 | cp >> 18), u[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3f)),
        u[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f)), u[3] = (unsigned char)(0x80 | (cp & 0x3f)), n = 4;
    kdx__st_buf_put(b, u, n);
}

/* One \u escape (j->p after the 'u'), pairing surrogates. */
static kdx_status parse_uescape(jp *j, buf *b)
{
    uint32_t cp, lo;
    if (j->end - j->p < 4 || !hex4(j->p, &cp)) return bad_json(j, "expected 4 hex digits after \\u");
    j->p += 4;
    if (cp >= 0xd800 && cp <= 0xdbff) {
        if (j->end - j->p < 6 || j->p[0] != '\\' || j->p[1] != 'u' || !hex4(j->p + 2, &lo) || lo < 0xdc00 ||
            lo > 0xdfff)
            return bad_json(j, "expected a low surrogate \\uDC00-\\uDFFF after a high surrogate");
        j->p += 6;
        cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
    } else if (cp >= 0xdc00 && cp <= 0xdfff) {
        j->p -= 6;
        return bad_json(j, "a lone low surrogate is not a character");
    }
    if (cp == 0) {
        j->p -= 6;
        return bad_json(j, "\\u0000 is not allowed in names and metadata");
    }
    put_utf8(b, cp);
    return KDX_OK;
}

/* A string, decoded to UTF-8 in a new allocation (*out, free with free_str). */
static kdx_status parse_string(jp *j, char **out)
{
    skip_ws(j);
    if (j->p >= j->end || *j->p != '"') return bad_json(j, "expected a string");
    j->p++;
    buf b = {0};
    kdx__st_buf_put(&b, "", 0);
    kdx_status s = KDX_OK;
    while (s == KDX_OK) {
        if (j->p >= j->end) {
            s = bad_json(j, "unterminated string");
            break;
        }
        unsigned char c = (unsigned char)*j->p;
        if (c == '"') {
            j->p++;
            break;
        }
        if (c < 0x20) {
            s = bad_json(j, "control characters must be escaped in strings");
        } else if (c == '\\') {
            if (j->end - j->p < 2) {
                j->p++;
                s = bad_json(j, "unterminated escape");
                break;
            }
            char e = j->p[1], r = e == 'b' ? '\b' : e == 'f' ? '\f' : e == 'n' ? '\n' : e == 'r' ? '\r' : e == 't' ? '\t' : e;
            j->p += 2;
            if (e == 'u') s = parse_uescape(j, &b);
            else if (e == '"' || e == '\\' || e == '/' || r != e) kdx__st_buf_put(&b, &r, 1);
            else j->p--, s = bad_json(j, "unknown escape");
        } else {
            int l = utf8_len((const unsigned char *)j->p, (size_t)(j->end - j->p));
            if (!l) s = bad_json(j, "invalid UTF-8 in a string");
            else kdx__st_buf_put(&b, j->p, (size_t)l), j->p += l;
        }
    }
    if (s == KDX_OK && b.oom) s = load_fail(j->path, KDX_ENOMEM, "out of memory reading the header");
    if (s != KDX_OK) {
        kdx__st_buf_free(&b);
        return s;
    }
    *out = kdx__st_dup_str(b.p, b.n);
    kdx__st_buf_free(&b);
    return *out ? KDX_OK : load_fail(j->path, KDX_ENOMEM, "out of memory reading the header");
}

/* A non-negative JSON integer up to 2^63 - 1. what names it in messages. */
static kdx_status parse_uint(jp *j, const char *what, uint64_t *v)
{
    skip_ws(j);
    const char *at = j->p;
    if (at < j->end && *at == '-') {
        if (at + 1 < j->end && at[1] >= '0' && at[1] <= '9')
            return load_fail(j->path, KDX_EFORMAT, "invalid header: %s must not be negative", what);
        j->p++;
        return bad_json(j, "expected a digit after '-'");
    }
    if (at >= j->end || *at < '0' || *at > '9') return bad_json(j, "expected an integer");
    uint64_t x = 0;
    while (j->p < j->end && *j->p >= '0' && *j->p <= '9') {
        unsigned d = (unsigned)(*j->p - '0');
        if (x > (UINT64_C(0x7fffffffffffffff) - d) / 10)
            return load_fail(j->path, KDX_EFORMAT, "invalid header: %s is too large", what);
        x = x * 10 + d;
        j->p++;
    }
    if (*at == '0' && j->p - at > 1) {
        j->p = at + 1;
        return bad_json(j, "leading zeros are not allowed in numbers");
    }
    if (j->p < j->end && (*j->p == '.' || *j->p == 'e' || *j->p == 'E'))
        return load_fail(j->path, KDX_EFORMAT, "invalid header: %s must be an integer", what);
    *v = x;
    return KDX_OK;
}

/* Reads `[a, b, ...]` of integers into v (at most max, count in *n). */
static kdx_status parse_uints(jp *j, const char *what, const char *tname, uint64_t *v, int max, int *n)
{
    if (!accept(j, '[')) return bad_json(j, "expected '['");
    *n = 0;
    if (accept(j, ']')) return KDX_OK;
    do {
        if (*n == max)
            return load_fail(j->path, KDX_EFORMAT, "tensor '%s': %s has more than %d entries", tname, what, max);
        KDX_TRY(parse_uint(j, what, &v[(*n)++]));
    } while (accept(j, ','));
    return accept(j, ']') ? KDX_OK : bad_json(j, "expected ',' or ']'");
}

enum { F_DTYPE = 1, F_SHAPE = 2, F_OFFSETS = 4 };

/* One field of a tensor entry into e; *seen collects the fields read. */
static kdx_status parse_field(jp *j, st_entry *e, const char *key, int *seen)
{
    int f = strcmp(key, "dtype") == 0 ? F_DTYPE : strcmp(key, "shape") == 0 ? F_SHAPE
          : strcmp(key, "data_offsets") == 0 ? F_OFFSETS : 0;
    if (!f) return load_fail(j->path, KDX_EFORMAT, "tensor '%s': unknown field '%s'", e->name, key);
    if (*seen & f) return load_fail(j->path, KDX_EFORMAT, "tensor '%s': field '%s' appears twice", e->name, key);
    *seen |= f;
    if (f == F_DTYPE) {
        char *name = NULL;
        KDX_TRY(parse_string(j, &name));
        for (int i = 0; i < ST_NDTYPES && !e->dt; i++)
            if (strcmp(name, ST_DTYPES[i].name) == 0) e->dt = &ST_DTYPES[i];
        kdx_status s = e->dt ? KDX_OK
                             : load_fail(j->path, KDX_EFORMAT,
                                         "tensor '%s': dtype '%s' is not supported (kdx reads F32, F64, I64, I32, "
                                         "I16, I8, U32, U16, U8, BOOL, F16, BF16)", e->name, name);
        free_str(name);
        return s;
    }
    uint64_t v[KDX_MAX_DIMS + 1];
    int n;
    if (f == F_SHAPE) {
        KDX_TRY(parse_uints(j, "shape", e->name, v, KDX_MAX_DIMS, &n));
        e->ndim = n;
        for (int i = 0; i < n; i++) e->shape[i] = (int64_t)v[i];
        return KDX_OK;
    }
    KDX_TRY(parse_uints(j, "data_offsets", e->name, v, 2, &n));
    if (n != 2) return load_fail(j->path, KDX_EFORMAT, "tensor '%s': data_offsets must be [begin, end]", e->name);
    e->begin = v[0], e->end = v[1];
    return KDX_OK;
}

/* The object describing tensor e (its name already set). */
static kdx_status parse_tensor(jp *j, st_entry *e)
{
    if (!accept(j, '{'))
        return load_fail(j->path, KDX_EFORMAT, "tensor '%s': the entry must be an object {dtype, shape, data_offsets}",
                         e->name);
    int seen = 0;
    if (!accept(j, '}')) {
        do {
            char *key = NULL;
            KDX_TRY(parse_string(j, &key));
            kdx_status s = accept(j, ':') ? parse_field(j, e, key, &seen) : bad_json(j, "expected ':'");
            free_str(key);
            KDX_TRY(s);
        } while (accept(j, ','));
        if (!accept(j, '}')) return bad_json(j, "expected ',' or '}'");
    }
    const char *miss = !(seen & F_DTYPE) ? "dtype" : !(seen & F_SHAPE) ? "shape" : !(seen & F_OFFSETS) ? "data_offsets" : NULL;
    if (miss) return load_fail(j->path, KDX_EFORMAT, "tensor '%s': field '%s' is missing", e->name, miss);
    return KDX_OK;
}

/* The __metadata__ object: strings to strings. */
static kdx_status parse_meta(jp *j)
{
    kdx_safetensors *st = j->st;
    if (!accept(j, '{'))
        return load_fail(j->path, KDX_EFORMAT, "__metadata__ must be an object of strings");
    if (accept(j, '}')) return KDX_OK;
    do {
        if (!grow((void **)&st->m, st->nmeta, &st->mcap, sizeof *st->m))
            return load_fail(j->path, KDX_ENOMEM, "out of memory reading the header");
        st_meta *m = &st->m[st->nmeta];
        KDX_TRY(parse_string(j, &m->key));
        st->nmeta++; /* owned by st from here: freed with it on any error */
        if (!accept(j, ':')) return bad_json(j, "expected ':'");
        skip_ws(j);
        if (j->p < j->end && *j->p != '"')
            return load_fail(j->path, KDX_EFORMAT, "__metadata__ value of '%s' must be a string", m->key);
        KDX_TRY(parse_string(j, &m->value));
    } while (accept(j, ','));
    return accept(j, '}') ? KDX_OK : bad_json(j, "expected ',' or '}'");
}

/* The whole header: one object of tensor entries and an optional __metadata__. */
static kdx_status parse_header(jp *j)
{
    kdx_safetensors *st = j->st;
    int have_meta = 0;
    if (!accept(j, '{')) return bad_json(j, "the header must be a JSON object: expected '{'");
    if (!accept(j, '}')) {
        do {
            char *key = NULL;
            KDX_TRY(parse_string(j, &key));
            if (strcmp(key, "__metadata__") == 0) {
                free_str(key);
                if (have_meta) return load_fail(j->path, KDX_EFORMAT, "__metadata__ appears twice");
                have_meta = 1;
                if (!accept(j, ':')) return bad_json(j, "expected ':'");
                KDX_TRY(parse_meta(j));
                continue;
            }
            if (!grow((void **)&st->e, st->n, &st->cap, sizeof *st->e)) {
                free_str(key);
                return load_fail(j->path, KDX_ENOMEM, "out of memory reading the header");
            }
            st_entry *e = &st->e[st->n++];
            memset(e, 0, sizeof *e);
            e->name = key;
            if (!accept(j, ':')) return bad_json(j, "expected ':'");
            KDX_TRY(parse_tensor(j, e));
        } while (accept(j, ','));
        if (!accept(j, '}')) return bad_json(j, "expected ',' or '}'");
    }
    skip_ws(j);
    if (j->p < j->end) return bad_json(j, "expected only padding after the header object");
    return KDX_OK;
}

/* ---- checking the parsed header against the data ---- */

static int cmp_name(const void *a, const void *b)
{
    return strcmp(((const st_entry *)a)->name, ((const st_entry *)b)->name);
}

static int cmp_key(const void *a, const void *b)
{
    return strcmp(((const st_meta *)a)->key, ((const st_meta *)b)->key);
}

static int cmp_begin(const void *a, const void *b)
{
    const st_entry *x = *(const st_entry *const *)a, *y = *(const st_entry *const *)b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return 0;
}

/* Sizes agree with shapes, ranges lie in the data; no duplicate names. */
static kdx_status check_entries(const char *path, kdx_safetensors *st, uint64_t datalen)
{
    const uint64_t limit = (uint64_t)(INT64_MAX / 8); /* what a kdx shape may hold, zero dims aside */
    for (int i = 0; i < st->n; i++) {
        st_entry *e = &st->e[i];
        uint64_t nonzero = 1, numel;
        int zero = 0;
        char shp[96];
        kdx_shape_str(e->ndim, e->shape, shp, sizeof shp);
        for (int d = 0; d < e->ndim; d++) {
            uint64_t k = (uint64_t)e->shape[d];
            if (k == 0) zero = 1;
            else if (nonzero > limit / k)
                return load_fail(path, KDX_EFORMAT, "tensor '%s': shape %s is too large", e->name, shp);
            else nonzero *= k;
        }
        numel = zero ? 0 : nonzero;
        if (e->begin > e->end)
            return load_fail(path, KDX_EFORMAT, "tensor '%s': data_offsets [%llu, %llu] end before they begin",
                             e->name, (unsigned long long)e->begin, (unsigned long long)e->end);
        if (e->end > datalen)
            return load_fail(path, KDX_EFORMAT,
                             "tensor '%s': data_offsets [%llu, %llu] lie past the end of the data (%llu bytes)",
                             e->name, (unsigned long long)e->begin, (unsigned long long)e->end,
                             (unsigned long long)datalen);
        /* numel <= 2^60, so numel * size (at most 8) cannot overflow */
        if (numel * (uint64_t)e->dt->size != e->end - e->begin)
            return load_fail(path, KDX_EFORMAT, "tensor '%s': shape %s of %s needs %llu bytes, but data_offsets span %llu",
                             e->name, shp, e->dt->name, (unsigned long long)(numel * (uint64_t)e->dt->size),
                             (unsigned long long)(e->end - e->begin));
    }
    if (st->n > 1) qsort(st->e, (size_t)st->n, sizeof *st->e, cmp_name);
    for (int i = 1; i < st->n; i++)
        if (strcmp(st->e[i - 1].name, st->e[i].name) == 0)
            return load_fail(path, KDX_EFORMAT, "tensor name '%s' appears twice", st->e[i].name);
    if (st->nmeta > 1) qsort(st->m, (size_t)st->nmeta, sizeof *st->m, cmp_key);
    for (int i = 1; i < st->nmeta; i++)
        if (strcmp(st->m[i - 1].key, st->m[i].key) == 0)
            return load_fail(path, KDX_EFORMAT, "__metadata__ key '%s' appears twice", st->m[i].key);
    return KDX_OK;
}

/* The byte ranges, sorted by begin, tile [0, datalen) with no gap or overlap. */
static kdx_status check_tiling(const char *path, st_entry **order, int n, uint64_t datalen)
{
    uint64_t at = 0;
    const char *prev = NULL;
    for (int i = 0; i < n; i++) {
        const st_entry *e = order[i];
        if (e->begin < at)
            return load_fail(path, KDX_EFORMAT, "tensor '%s' (bytes %llu..%llu) overlaps tensor '%s' (ending at %llu)",
                             e->name, (unsigned long long)e->begin, (unsigned long long)e->end, prev,
                             (unsigned long long)at);
        if (e->begin > at)
            return load_fail(path, KDX_EFORMAT, "%llu unused bytes in the data before tensor '%s' (at %llu)",
                             (unsigned long long)(e->begin - at), e->name, (unsigned long long)e->begin);
        at = e->end, prev = e->name;
    }
    if (at != datalen)
        return load_fail(path, KDX_EFORMAT, "the tensors cover %llu bytes of the data, but it has %llu", (unsigned long long)at,
                         (unsigned long long)datalen);
    return KDX_OK;
}

/* ---- reading ---- */

static kdx_status read_at(const char *path, int fd, void *dst, size_t n, uint64_t off)
{
    char *p = dst;
    while (n > 0) {
        ssize_t r = pread(fd, p, n > ((size_t)1 << 30) ? (size_t)1 << 30 : n, (off_t)off);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return load_fail(path, KDX_EIO, "read failed: %s", strerror(errno));
        if (r == 0) return load_fail(path, KDX_EIO, "the file ended early (was it changed while loading?)");
        p += r, n -= (size_t)r, off += (uint64_t)r;
    }
    return KDX_OK;
}

/* Reads e's bytes at file offset off into a new tensor e->t. */
static kdx_status read_tensor(const char *path, int fd, st_entry *e, uint64_t off, unsigned char *scratch)
{
    if (kdx__new_raw("load_safetensors", e->dt->to, e->ndim, e->shape, &e->t) != KDX_OK) {
        char shp[96];
        return load_fail(path, KDX_ENOMEM, "tensor '%s': out of memory for %s %s", e->name,
                         kdx_dtype_name(e->dt->to), kdx_shape_str(e->ndim, e->shape, shp, sizeof shp));
    }
    size_t numel = (size_t)kdx_tensor_numel(e->t), outsz = kdx_dtype_size(e->dt->to);
    char *dst = kdx_tensor_data(e->t);
    if (e->dt->kind == ST_NATIVE) {
        KDX_TRY(read_at(path, fd, dst, numel * outsz, off));
        if (!kdx__st_host_is_le()) kdx__st_swap_bytes(dst, numel, (int)outsz);
        return KDX_OK;
    }
    size_t per = ST_CHUNK / (size_t)e->dt->size;
    for (size_t i = 0; i < numel; i += per) {
        size_t k = numel - i < per ? numel - i : per;
        KDX_TRY(read_at(path, fd, scratch, k * (size_t)e->dt->size, off + i * (size_t)e->dt->size));
        convert(e->dt, scratch, k, dst + i * outsz);
    }
    return KDX_OK;
}

/* The size of the file behind fd and the length of its header. */
static kdx_status read_prefix(const char *path, int fd, uint64_t *fsize, uint64_t *hlen)
{
    struct stat sb;
    if (fstat(fd, &sb) != 0) return load_fail(path, KDX_EIO, "cannot stat: %s", strerror(errno));
    if (!S_ISREG(sb.st_mode)) return load_fail(path, KDX_EIO, "not a regular file");
    *fsize = (uint64_t)sb.st_size;
    if (*fsize < 8)
        return load_fail(path, KDX_EFORMAT, "the file has %llu bytes, too short for a safetensors header",
                         (unsigned long long)*fsize);
    unsigned char b[8];
    KDX_TRY(read_at(path, fd, b, 8, 0));
    *hlen = 0;
    for (int i = 7; i >= 0; i--) *hlen = (*hlen << 8) | b[i];
    if (*hlen > ST_MAX_HEADER)
        return load_fail(path, KDX_EFORMAT, "header length %llu is absurd (more than %llu bytes): not a safetensors file?",
                         (unsigned long long)*hlen, ST_MAX_HEADER);
    if (*hlen > *fsize - 8)
        return load_fail(path, KDX_EFORMAT, "header length %llu runs past the end of the file (%llu bytes)",
                         (unsigned long long)*hlen, (unsigned long long)*fsize);
    return KDX_OK;
}

/* Everything after opening: header, checks, tensors. */
static kdx_status load_fd(const char *path, int fd, kdx_safetensors *st)
{
    uint64_t fsize = 0, hlen = 0;
    KDX_TRY(read_prefix(path, fd, &fsize, &hlen));
    char *hdr = kdx__malloc_raw((size_t)hlen);
    if (!hdr) return load_fail(path, KDX_ENOMEM, "out of memory for a %llu-byte header", (unsigned long long)hlen);
    kdx_status s = read_at(path, fd, hdr, (size_t)hlen, 8);
    if (s == KDX_OK) {
        jp j = {hdr, hdr, hdr + hlen, path, st};
        s = parse_header(&j);
    }
    kdx__free(hdr, (size_t)hlen);
    uint64_t datalen = fsize - 8 - hlen;
    if (s == KDX_OK) s = check_entries(path, st, datalen);
    if (s != KDX_OK) return s;
    st_entry **order = kdx__malloc((size_t)st->n * sizeof *order);
    unsigned char *scratch = kdx__malloc_raw(ST_CHUNK);
    if (!order || !scratch) s = load_fail(path, KDX_ENOMEM, "out of memory");
    for (int i = 0; s == KDX_OK && i < st->n; i++) order[i] = &st->e[i];
    if (s == KDX_OK) {
        qsort(order, (size_t)st->n, sizeof *order, cmp_begin);
        s = check_tiling(path, order, st->n, datalen);
    }
    /* In file order: the reads go front to back. */
    for (int i = 0; s == KDX_OK && i < st->n; i++) s = read_tensor(path, fd, order[i], 8 + hlen + order[i]->begin, scratch);
    kdx__free(order, (size_t)st->n * sizeof *order);
    kdx__free(scratch, ST_CHUNK);
    return s;
}

kdx_status kdx_load_safetensors(const char *path, kdx_safetensors **out)
{
    if (!path || !*path) return kdx_fail(KDX_EINVAL, "load_safetensors: path must be a non-empty string");
    if (!out) return kdx_fail(KDX_EINVAL, "load_safetensors: out must not be NULL");
    int fd;
    /* O_NONBLOCK: opening a FIFO must not hang (it is refused below) */
    do fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    while (fd < 0 && errno == EINTR);
    if (fd < 0) return load_fail(path, KDX_EIO, "cannot open: %s", strerror(errno));
    kdx_safetensors *st = kdx__malloc(sizeof *st);
    kdx_status s = st ? load_fd(path, fd, st) : load_fail(path, KDX_ENOMEM, "out of memory");
    close(fd);
    if (s != KDX_OK) {
        kdx_safetensors_free(st);
        return s;
    }
    *out = st;
    return KDX_OK;
}
