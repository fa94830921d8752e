/* io_csv.c — numeric CSV files with a label column, plain or gzip-compressed
   (zlib reads both). The whole file is read into memory and parsed in place:
   quoted fields are unescaped where they lie, and every cell is checked, so a
   bad file is an error naming the line and column, never a crash or a
   silently wrong number. */
#include "kdx_internal.h"

#include <errno.h>
#include <locale.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#define MAX_COLS (1 << 24)
#define MAX_CLASSES (1 << 26)

struct kdx_csv {
    kdx_tensor *x, *y;
    int nfeat, label_col, nclasses;
    char **names;     /* nfeat header names, or NULL without a header */
    char *label_name; /* NULL without a header or a label */
    char **classes;   /* nclasses label texts, in class order */
    size_t classes_cap; /* entries allocated in classes */
};

kdx_csv_opts kdx_csv_opts_default(void)
{
    kdx_csv_opts o = {',', 1, 0, NULL, -1, KDX_CSV_SORTED, NULL, 0};
    return o;
}

/* ---- memory ----------------------------------------------------------------------- */

/* Makes room for need elements of elem bytes in *p (capacity *cap, doubling). */
static bool grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap) return true;
    size_t nc = *cap ? *cap : 16;
    while (nc < need) {
        if (nc > SIZE_MAX / 4 / elem) return false;
        nc *= 2;
    }
    void *np = kdx__malloc_raw(nc * elem);
    if (!np) return false;
    if (*p) {
        memcpy(np, *p, *cap * elem);
        kdx__free(*p, *cap * elem);
    }
    *p = np;
    *cap = nc;
    return true;
}

/* A NUL-terminated copy of n bytes (the file has no NULs, so strlen recovers n). */
static char *dup_n(const char *s, size_t n)
{
    char *d = kdx__malloc_raw(n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = 0;
    }
    return d;
}

static void free_str(char *s)
{
    if (s) kdx__free(s, strlen(s) + 1);
}

/* Frees the n strings of v and v itself (cap entries allocated). */
static void free_strs(char **v, size_t n, size_t cap)
{
    if (!v) return;
    for (size_t i = 0; i < n; i++) free_str(v[i]);
    kdx__free(v, cap * sizeof *v);
}

/* ---- text --------------------------------------------------------------------------- */

/* Length of the valid UTF-8 sequence at s (at most n bytes), or 0. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
    if (s[0] < 0x80) return 1;
    size_t len = s[0] >= 0xF0 ? 4 : s[0] >= 0xE0 ? 3 : s[0] >= 0xC2 ? 2 : 0;
    if (len == 0 || s[0] > 0xF4 || len > n) return 0;
    for (size_t i = 1; i < len; i++)
        if ((s[i] & 0xC0) != 0x80) return 0;
    /* overlong forms, UTF-16 surrogates and code points past U+10FFFF */
    if (len == 3 && s[0] == 0xE0 && s[1] < 0xA0) return 0;
    if (len == 3 && s[0] == 0xED && s[1] >= 0xA0) return 0;
    if (len == 4 && s[0] == 0xF0 && s[1] < 0x90) return 0;
    if (len == 4 && s[0] == 0xF4 && s[1] >= 0x90) return 0;
    return len;
}

static bool utf8_valid(const char *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        size_t k = utf8_seq((const unsigned char *)s + i, n - i);
        if (!k) return false;
        i += k;
    }
    return true;
}

/* Writes s[0..n) into out (cap bytes) for a message: control characters and
   invalid UTF-8 as \xNN, cut with "..." past ~40 bytes. Returns out. */
static const char *show(const char *s, size_t n, char *out, size_t cap)
{
    size_t w = 0;
    for (size_t i = 0; i < n;) {
        const unsigned char *u = (const unsigned char *)s + i;
        size_t k = utf8_seq(u, n - i);
        if (w + 8 >= cap || w > 40) {
            memcpy(out + w, "...", 4);
            return out;
        }
        if (k == 0 || (k == 1 && (u[0] < 0x20 || u[0] == 0x7F))) {
            static const char hex[] = "0123456789abcdef";
            out[w++] = '\\', out[w++] = 'x', out[w++] = hex[u[0] >> 4], out[w++] = hex[u[0] & 15];
            i++;
        } else {
            memcpy(out + w, u, k);
            w += k, i += k;
        }
    }
    out[w] = 0;
    return out;
}

static bool ieq(const char *s, const char *lower, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((s[i] >= 'A' && s[i] <= 'Z' ? s[i] + 32 : s[i]) != lower[i]) return false;
    return true;
}

static bool is_digit(char c) { return c >= '0' && c <= '9'; }

/* A decimal number with optional sign, fraction and exponent, or nan/inf/infinity. */
static bool number_syntax(const char *s, size_t n)
{
    size_t i = 0, digits = 0;
    if (i < n && (s[i] == '+' || s[i] == '-')) i++;
    if ((n - i == 3 && (ieq(s + i, "nan", 3) || ieq(s + i, "inf", 3))) || (n - i == 8 && ieq(s + i, "infinity", 8)))
        return true;
    for (; i < n && is_digit(s[i]); i++) digits++;
    if (i < n && s[i] == '.')
        for (i++; i < n && is_digit(s[i]); i++) digits++;
    if (digits == 0) return false;
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        size_t e = 0;
        if (++i < n && (s[i] == '+' || s[i] == '-')) i++;
        for (; i < n && is_digit(s[i]); i++) e++;
        if (e == 0) return false;
    }
    return i == n;
}

/* An integer (optional sign, digits) that fits in int64. */
static bool parse_int(const char *s, size_t n, int64_t *v)
{
    size_t i = s[0] == '+' || s[0] == '-' ? 1 : 0;
    if (i == n) return false;
    uint64_t acc = 0, lim = s[0] == '-' ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    for (; i < n; i++) {
        if (!is_digit(s[i])) return false;
        unsigned d = (unsigned)(s[i] - '0');
        if (acc > (lim - d) / 10) return false;
        acc = acc * 10 + d;
    }
    *v = s[0] == '-' ? (acc == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)acc) : (int64_t)acc;
    return true;
}

/* strtod of a checked number; 1 ok, 0 not understood, -1 out of range. */
static int to_double(const char *s, size_t n, double *v)
{
    char small[64], *t = n < sizeof small ? small : kdx__malloc_raw(n + 1);
    if (!t) return 0;
    memcpy(t, s, n);
    t[n] = 0;
    char *end;
    errno = 0;
    *v = strtod(t, &end);
    if (end != t + n) {
        /* strtod follows the C locale a host may have changed: retry with its decimal point */
        char *dot = memchr(t, '.', n);
        const char *dp = localeconv()->decimal_point;
        if (dot && dp && dp[0] && !dp[1]) {
            *dot = dp[0];
            errno = 0;
            *v = strtod(t, &end);
        }
    }
    int r = end != t + n ? 0 : errno == ERANGE && fabs(*v) == HUGE_VAL ? -1 : 1;
    if (t != small) kdx__free(t, n + 1);
    return r;
}

/* ---- the file ------------------------------------------------------------------------ */

/* gzerror's message without the path it starts with. */
static const char *gz_reason(gzFile f, const char *path, int *zerr)
{
    const char *m = gzerror(f, zerr);
    size_t pl = strlen(path);
    if (m && strncmp(m, path, pl) == 0 && m[pl] == ':') m += pl + 1 + (m[pl + 1] == ' ');
    return m && *m ? m : "read error";
}

static kdx_status read_file(const char *path, char **buf, size_t *len, size_t *cap)
{
    errno = 0;
    gzFile f = gzopen(path, "rb");
    if (!f) return kdx_fail(KDX_EIO, "csv: cannot open %s: %s", path, strerror(errno ? errno : ENOENT));
    gzbuffer(f, 1 << 16);
    kdx_status s = KDX_OK;
    int zerr = Z_OK;
    for (;;) {
        if (!grow((void **)buf, cap, *len + (1 << 16), 1)) {
            s = kdx_fail(KDX_ENOMEM, "csv: out of memory reading %s", path);
            break;
        }
        size_t room = *cap - *len;
        int r = gzread(f, *buf + *len, room > (1u << 30) ? (1u << 30) : (unsigned)room);
        if (r <= 0) {
            const char *why = gz_reason(f, path, &zerr);
            /* a truncated gzip stream reads as a short file with Z_BUF_ERROR set */
            if (zerr == Z_BUF_ERROR)
                s = kdx_fail(KDX_EFORMAT, "csv: %s: the gzip data end early (truncated file?)", path);
            else if (zerr == Z_ERRNO)
                s = kdx_fail(KDX_EIO, "csv: cannot read %s: %s", path, strerror(errno ? errno : EIO));
            else if (r < 0 || zerr != Z_OK)
                s = kdx_fail(KDX_EFORMAT, "csv: %s: %s (corrupt gzip data?)", path, why);
            break;
        }
        *len += (size_t)r;
    }
    gzclose(f);
    return s;
}

/* ---- fields and records --------------------------------------------------------------- */

typedef struct field {
    char *p;
    size_t n;
    int64_t line;
} field;

typedef struct parser {
    const char *path;
    char *buf;
    size_t len, pos;
    int64_t line; /* line of buf[pos] */
    char delim;
    field *f;
    size_t fcap;
    int nf;
} parser;

static bool is_eol(char c) { return c == '\n' || c == '\r'; }
static bool is_space(const parser *p, char c) { return (c == ' ' || c == '\t') && c != p->delim; }

/* Moves past the line end at pos (LF, CRLF or CR). */
static void eat_eol(parser *p)
{
    if (p->buf[p->pos] == '\r' && p->pos + 1 < p->len && p->buf[p->pos + 1] == '\n') p->pos++;
    p->pos++;
    p->line++;
}

static void skip_line(parser *p)
{
    while (p->pos < p->len && !is_eol(p->buf[p->pos])) p->pos++;
    if (p->pos < p->len) eat_eol(p);
}

static bool blank_line(const parser *p)
{
    size_t i = p->pos;
    while (i < p->len && is_space(p, p->buf[i])) i++;
    return i >= p->len || is_eol(p->buf[i]);
}

/* Reads one quoted field starting at the opening quote, unescaping "" in place. */
static kdx_status quoted_field(parser *p, int col, field *fd)
{
    char *b = p->buf;
    size_t r = ++p->pos, w = r;
    for (;;) {
        if (r >= p->len)
            return kdx_fail(KDX_EFORMAT, "csv: %s: line %lld, column %d: the quoted field never ends (no closing \")",
                            p->path, (long long)fd->line, col + 1);
        char c = b[r];
        if (c == '"') {
            if (r + 1 < p->len && b[r + 1] == '"') {
                b[w++] = '"';
                r += 2;
                continue;
            }
            r++;
            break;
        }
        if (c == '\n' || (c == '\r' && !(r + 1 < p->len && b[r + 1] == '\n'))) p->line++;
        b[w++] = c;
        r++;
    }
    fd->p = b + p->pos;
    fd->n = w - p->pos;
    p->pos = r;
    while (p->pos < p->len && is_space(p, b[p->pos])) p->pos++;
    if (p->pos < p->len && b[p->pos] != p->delim && !is_eol(b[p->pos]))
        return kdx_fail(KDX_EFORMAT, "csv: %s: line %lld, column %d: text after the closing quote of a field",
                        p->path, (long long)p->line, col + 1);
    return KDX_OK;
}

/* Reads field col at pos: spaces around it dropped, up to a delimiter or line end. */
static kdx_status parse_field(parser *p, int col, field *fd)
{
    char *b = p->buf;
    while (p->pos < p->len && is_space(p, b[p->pos])) p->pos++;
    fd->line = p->line;
    if (p->pos < p->len && b[p->pos] == '"') return quoted_field(p, col, fd);
    size_t st = p->pos;
    for (; p->pos < p->len && b[p->pos] != p->delim && !is_eol(b[p->pos]); p->pos++)
        if (b[p->pos] == '"')
            return kdx_fail(KDX_EFORMAT,
                            "csv: %s: line %lld, column %d: a quote inside an unquoted field (quote the whole "
                            "field and double the quotes in it)",
                            p->path, (long long)p->line, col + 1);
    size_t e = p->pos;
    while (e > st && is_space(p, b[e - 1])) e--;
    fd->p = b + st;
    fd->n = e - st;
    return KDX_OK;
}

/* The next non-blank record into p->f[0..nf); *got = false at the end of the file. */
static kdx_status next_record(parser *p, bool *got)
{
    while (p->pos < p->len && blank_line(p)) skip_line(p);
    *got = p->pos < p->len;
    if (!*got) return KDX_OK;
    p->nf = 0;
    for (;;) {
        if (p->nf == MAX_COLS)
            return kdx_fail(KDX_EFORMAT, "csv: %s: line %lld has more than %d fields", p->path,
                            (long long)p->f[0].line, MAX_COLS);
        if (!grow((void **)&p->f, &p->fcap, (size_t)p->nf + 1, sizeof *p->f))
            return kdx_fail(KDX_ENOMEM, "csv: out of memory reading %s", p->path);
        KDX_TRY(parse_field(p, p->nf, &p->f[p->nf]));
        p->nf++;
        if (p->pos < p->len && p->buf[p->pos] == p->delim) {
            p->pos++;
            continue;
        }
        break;
    }
    if (p->pos < p->len) eat_eol(p);
    return KDX_OK;
}

/* ---- classes ------------------------------------------------------------------------------ */

/* The distinct label values, in first-appearance (or given) order, with a hash index. */
typedef struct classes {
    char **name;
    size_t ncap;
    int n;
    int32_t *slot; /* open addressing: -1 empty, else a class id */
    size_t nslot;
    bool fixed;    /* the caller gave the list: other values are errors */
} classes;

static uint64_t hash(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603u;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211u;
    return h;
}

static int32_t *find_slot(const classes *c, const char *s, size_t n)
{
    size_t i = (size_t)hash(s, n) & (c->nslot - 1);
    for (;; i = (i + 1) & (c->nslot - 1)) {
        int32_t id = c->slot[i];
        if (id < 0) return &c->slot[i];
        const char *t = c->name[id];
        if (strlen(t) == n && memcmp(t, s, n) == 0) return &c->slot[i];
    }
}

static bool rehash(classes *c)
{
    size_t ns = c->nslot ? c->nslot * 2 : 64;
    int32_t *old = c->slot;
    size_t on = c->nslot;
    c->slot = kdx__malloc_raw(ns * sizeof *c->slot);
    if (!c->slot) {
        c->slot = old;
        return false;
    }
    for (size_t i = 0; i < ns; i++) c->slot[i] = -1;
    c->nslot = ns;
    for (int id = 0; id < c->n; id++) *find_slot(c, c->name[id], strlen(c->name[id])) = id;
    kdx__free(old, on * sizeof *old);
    return true;
}

/* The class id of s[0..n), adding it unless the list is fixed (then *id = -1 if absent). */
static kdx_status class_id(classes *c, const char *s, size_t n, const char *path, int32_t *id)
{
    if ((size_t)(c->n + 1) * 2 > c->nslot && !rehash(c))
        return kdx_fail(KDX_ENOMEM, "csv: out of memory reading %s", path);
    int32_t *slot = find_slot(c, s, n);
    if (*slot >= 0 || c->fixed) {
        *id = *slot;
        return KDX_OK;
    }
    if (c->n == MAX_CLASSES)
        return kdx_fail(KDX_EFORMAT, "csv: %s: the label column has more than %d distinct values", path, MAX_CLASSES);
    if (!grow((void **)&c->name, &c->ncap, (size_t)c->n + 1, sizeof *c->name) || !(c->name[c->n] = dup_n(s, n)))
        return kdx_fail(KDX_ENOMEM, "csv: out of memory reading %s", path);
    *id = *slot = c->n++;
    return KDX_OK;
}

typedef struct rank_key {
    const char *s;
    int64_t v;
    int32_t id;
    bool is_int;
} rank_key;

static int cmp_key(const void *pa, const void *pb)
{
    const rank_key *a = pa, *b = pb;
    if (a->is_int && b->is_int && a->v != b->v) return a->v < b->v ? -1 : 1;
    return strcmp(a->s, b->s);
}

/* Renumbers the classes in sorted order (numerically when all are integers);
   rank[old id] receives the new id. */
static kdx_status sort_classes(classes *c, int32_t *rank, const char *path)
{
    rank_key *k = kdx__malloc_raw((size_t)c->n * sizeof *k + 1);
    char **sorted = kdx__malloc_raw((size_t)c->n * sizeof *sorted + 1);
    if (!k || !sorted) {
        kdx__free(k, (size_t)c->n * sizeof *k + 1);
        kdx__free(sorted, (size_t)c->n * sizeof *sorted + 1);
        return kdx_fail(KDX_ENOMEM, "csv: out of memory reading %s", path);
    }
    bool all_int = true;
    for (int i = 0; i < c->n; i++) {
        k[i] = (rank_key){c->name[i], 0, i, false};
        k[i].is_int = parse_int(c->name[i], strlen(c->name[i]), &k[i].v);
        all_int = all_int && k[i].is_int;
    }
    for (int i = 0; i < c->n; i++) k[i].is_int = all_int;
    qsort(k, (size_t)c->n, sizeof *k, cmp_key);
    for (int i = 0; i < c->n; i++) {
        rank[k[i].id] = i;
        sorted[i] = c->name[k[i].id];
    }
    memcpy(c->name, sorted, (size_t)c->n * sizeof *sorted);
    kdx__free(k, (size_t)c->n * sizeof *k + 1);
    kdx__free(sorted, (size_t)c->n * sizeof *sorted + 1);
    return KDX_OK;
}

/* ---- the reader --------------------------------------------------------------------------- */

typedef struct reader {
    parser p;
    const kdx_csv_opts *o;
    char *text;
    size_t tcap;
    int ncols, label;   /* label: 0-based column, or -1 */
    int64_t head_line;  /* line of the header, or of the first row */
    char **names;       /* ncols header names, or NULL */
    double *val;
    size_t nval, vcap;
    int32_t *lab;
    size_t nrow, lcap;
    classes cls;
} reader;

static void reader_free(reader *r)
{
    kdx__free(r->text, r->tcap);
    kdx__free(r->p.f, r->p.fcap * sizeof *r->p.f);
    free_strs(r->names, (size_t)r->ncols, (size_t)r->ncols);
    kdx__free(r->val, r->vcap * sizeof *r->val);
    kdx__free(r->lab, r->lcap * sizeof *r->lab);
    free_strs(r->cls.name, (size_t)r->cls.n, r->cls.ncap);
    kdx__free(r->cls.slot, r->cls.nslot * sizeof *r->cls.slot);
}

/* "column 3" or "column 3 (petal length)" into buf. */
static const char *colname(const reader *r, int j, char *buf, size_t cap)
{
    char shown[64];
    if (r->names) snprintf(buf, cap, "column %d (%s)", j + 1, show(r->names[j], strlen(r->names[j]), shown, sizeof shown));
    else snprintf(buf, cap, "column %d", j + 1);
    return buf;
}

static kdx_status check_opts(const char *path, const kdx_csv_opts *o)
{
    if (!path) return kdx_fail(KDX_EINVAL, "csv: path is NULL");
    char d = o->delimiter;
    if (d == '"' || d == '\r' || d == '\n' || d == 0)
        return kdx_fail(KDX_EINVAL, "csv: the delimiter cannot be a quote, CR, LF or NUL");
    if (o->skip < 0) return kdx_fail(KDX_EINVAL, "csv: skip must be >= 0, got %lld", (long long)o->skip);
    if (o->label_name && !o->header)
        return kdx_fail(KDX_EINVAL, "csv: a label column given by name ('%s') needs a header", o->label_name);
    if (o->order != KDX_CSV_SORTED && o->order != KDX_CSV_FIRST) return kdx_fail(KDX_EINVAL, "csv: unknown class order");
    if (o->classes && (o->nclasses < 1 || o->nclasses > MAX_CLASSES))
        return kdx_fail(KDX_EINVAL, "csv: nclasses must be in 1..%d, got %d", MAX_CLASSES, o->nclasses);
    if (o->classes && !o->label_name && o->label_column == KDX_CSV_NO_LABEL)
        return kdx_fail(KDX_EINVAL, "csv: classes are given but there is no label column");
    return KDX_OK;
}

/* Seeds the class table with the caller's list. */
static kdx_status given_classes(reader *r)
{
    for (int i = 0; i < r->o->nclasses; i++) {
        const char *s = r->o->classes[i];
        if (!s) return kdx_fail(KDX_EINVAL, "csv: class %d of the given list is NULL", i + 1);
        int32_t id;
        KDX_TRY(class_id(&r->cls, s, strlen(s), r->p.path, &id));
        if (id != i) return kdx_fail(KDX_EINVAL, "csv: class '%s' is given twice", s);
    }
    r->cls.fixed = true;
    return KDX_OK;
}

/* Reads the file, refuses NUL bytes, skips a byte-order mark and the skip lines. */
static kdx_status load_text(reader *r)
{
    parser *p = &r->p;
    KDX_TRY(read_file(p->path, &r->text, &p->len, &r->tcap));
    p->buf = r->text;
    const char *nul = memchr(p->buf, 0, p->len);
    if (nul) {
        int64_t line = 1;
        for (const char *c = p->buf; c < nul; c++) line += *c == '\n';
        return kdx_fail(KDX_EFORMAT, "csv: %s: line %lld contains a NUL byte (is it a text file?)", p->path,
                        (long long)line);
    }
    if (p->len >= 3 && memcmp(p->buf, "\xEF\xBB\xBF", 3) == 0) p->pos = 3;
    for (int64_t i = 0; i < r->o->skip && p->pos < p->len; i++) skip_line(p);
    return KDX_OK;
}

/* The header (or the first row, which stays in p->f): fixes the column count. */
static kdx_status read_head(reader *r, bool *have_row)
{
    parser *p = &r->p;
    bool got;
    KDX_TRY(next_record(p, &got));
    if (!got) {
        if (r->o->skip > 0)
            return kdx_fail(KDX_EFORMAT, "csv: %s: nothing after the %lld skipped lines", p->path, (long long)r->o->skip);
        return kdx_fail(KDX_EFORMAT, "csv: %s: the file is empty", p->path);
    }
    r->ncols = p->nf;
    r->head_line = p->f[0].line;
    *have_row = !r->o->header;
    if (!r->o->header) return KDX_OK;
    r->names = kdx__malloc((size_t)r->ncols * sizeof *r->names);
    if (!r->names) return kdx_fail(KDX_ENOMEM, "csv: out of memory reading %s", p->path);
    for (int j = 0; j < r->ncols; j++) {
        const field *fd = &p->f[j];
        if (!utf8_valid(fd->p, fd->n))
            return kdx_fail(KDX_EFORMAT, "csv: %s: line %lld, column %d: the header name is not valid UTF-8",
                            p->path, (long long)fd->line, j + 1);
        if (!(r->names[j] = dup_n(fd->p, fd->n))) return kdx_fail(KDX_ENOMEM, "csv: out of memory reading %s", p->path);
    }
    return KDX_OK;
}

/* The label column from its name or position. */
static kdx_status find_label(reader *r)
{
    const kdx_csv_opts *o = r->o;
    const char *path = r->p.path;
    r->label = -1;
    if (o->label_name) {
        for (int j = 0; j < r->ncols; j++) {
            if (strcmp(r->names[j], o->label_name) != 0) continue;
            if (r->label >= 0)
                return kdx_fail(KDX_EFORMAT, "csv: %s: the header names columns %d and %d both '%s'", path,
                                r->label + 1, j + 1, o->label_name);
            r->label = j;
        }
        if (r->label >= 0) return KDX_OK;
        /* the names, up to ~150 bytes: each shown name is under 50 */
        char list[208], shown[64];
        size_t w = 0;
        list[0] = 0;
        int j = 0;
        for (; j < r->ncols && w < 150; j++)
            w += (size_t)snprintf(list + w, sizeof list - w, "%s%s", j ? ", " : "",
                                  show(r->names[j], strlen(r->names[j]), shown, sizeof shown));
        if (j < r->ncols) snprintf(list + w, sizeof list - w, ", ...");
        return kdx_fail(KDX_EINDEX, "csv: %s: no column named '%s' (the header has: %s)", path,
                        show(o->label_name, strlen(o->label_name), shown, sizeof shown), list);
    }
    if (o->label_column == KDX_CSV_NO_LABEL) return KDX_OK;
    int64_t j = o->label_column < 0 ? (int64_t)o->label_column + r->ncols : o->label_column;
    if (j < 0 || j >= r->ncols)
        /* counted as the caller counts: from 1, or negative from the end */
        return kdx_fail(KDX_EINDEX, "csv: %s: label column %lld is out of range: the file has %d columns", path,
                        (long long)(o->label_column < 0 ? o->label_column : (int64_t)o->label_column + 1), r->ncols);
    r->label = (int)j;
    return KDX_OK;
}

/* Cell j of the current row: a number into the matrix, or the label's class. */
static kdx_status take_cell(reader *r, int j)
{
    const field *fd = &r->p.f[j];
    char where[128], shown[64];
    if (j == r->label) {
        int32_t id;
        if (!utf8_valid(fd->p, fd->n))
            return kdx_fail(KDX_EFORMAT, "csv: %s: line %lld, %s: the label is not valid UTF-8 ('%s')", r->p.path,
                            (long long)fd->line, colname(r, j, where, sizeof where), show(fd->p, fd->n, shown, sizeof shown));
        KDX_TRY(class_id(&r->cls, fd->p, fd->n, r->p.path, &id));
        if (id < 0)
            return kdx_fail(KDX_EFORMAT, "csv: %s: line %lld, %s: label '%s' is not one of the given classes",
                            r->p.path, (long long)fd->line, colname(r, j, where, sizeof where),
                            show(fd->p, fd->n, shown, sizeof shown));
        r->lab[r->nrow] = id;
        return KDX_OK;
    }
    double v = 0;
    int ok = fd->n == 0 ? 0 : number_syntax(fd->p, fd->n) ? to_double(fd->p, fd->n, &v) : 0;
    if (ok == 1) {
        r->val[r->nval++] = v;
        return KDX_OK;
    }
    colname(r, j, where, sizeof where);
    if (fd->n == 0)
        return kdx_fail(KDX_EFORMAT, "csv: %s: line %lld, %s: empty cell (missing values are not supported)",
                        r->p.path, (long long)fd->line, where);
    return kdx_fail(KDX_EFORMAT, "csv: %s: line %lld, %s: '%s' %s", r->p.path, (long long)fd->line, where,
                    show(fd->p, fd->n, shown, sizeof shown),
                    ok < 0 ? "is out of the float64 range" : "is not a number");
}

/* Every data row, starting with the one in p->f when have_row. */
static kdx_status read_rows(reader *r, bool have_row)
{
    parser *p = &r->p;
    int nfeat = r->ncols - (r->label >= 0);
    bool got = have_row;
    if (!got) KDX_TRY(next_record(p, &got));
    while (got) {
        if (p->nf != r->ncols)
            return kdx_fail(KDX_EFORMAT, "csv: %s: line %lld has %d field%s, expected %d as %s line %lld", p->path,
                            (long long)p->f[0].line, p->nf, p->nf == 1 ? "" : "s", r->ncols,
                            r->names ? "in the header on" : "on", (long long)r->head_line);
        if (!grow((void **)&r->val, &r->vcap, r->nval + (size_t)nfeat + 1, sizeof *r->val) ||
            !grow((void **)&r->lab, &r->lcap, r->nrow + 1, sizeof *r->lab))
            return kdx_fail(KDX_ENOMEM, "csv: out of memory reading %s", p->path);
        for (int j = 0; j < r->ncols; j++) KDX_TRY(take_cell(r, j));
        r->nrow++;
        KDX_TRY(next_record(p, &got));
    }
    if (r->nrow == 0)
        return kdx_fail(KDX_EFORMAT, "csv: %s: no data rows%s", p->path, r->names ? " after the header" : "");
    return KDX_OK;
}

/* Moves the parsed rows, names and classes into a kdx_csv. */
static kdx_status build(reader *r, kdx_csv *c)
{
    int nfeat = r->ncols - (r->label >= 0);
    int64_t shape[2] = {(int64_t)r->nrow, nfeat};
    c->nfeat = nfeat;
    c->label_col = r->label;
    KDX_TRY(kdx__new_raw("csv", KDX_DTYPE_F64, 2, shape, &c->x));
    if (r->nval) memcpy(kdx__base(c->x), r->val, r->nval * sizeof *r->val);
    if (r->names) {
        if (!(c->names = kdx__malloc((size_t)(nfeat ? nfeat : 1) * sizeof *c->names)))
            return kdx_fail(KDX_ENOMEM, "csv: out of memory reading %s", r->p.path);
        for (int j = 0, k = 0; j < r->ncols; j++) {
            if (j == r->label) c->label_name = r->names[j];
            else c->names[k++] = r->names[j];
            r->names[j] = NULL;
        }
    }
    if (r->label < 0) return KDX_OK;
    size_t rank_bytes = (size_t)r->cls.n * sizeof(int32_t) + 1;
    int32_t *rank = kdx__malloc_raw(rank_bytes);
    if (!rank) return kdx_fail(KDX_ENOMEM, "csv: out of memory reading %s", r->p.path);
    kdx_status s = KDX_OK;
    for (int i = 0; i < r->cls.n; i++) rank[i] = i;
    if (!r->cls.fixed && r->o->order == KDX_CSV_SORTED) s = sort_classes(&r->cls, rank, r->p.path);
    if (s == KDX_OK) s = kdx__new_raw("csv", KDX_DTYPE_I64, 1, shape, &c->y);
    if (s == KDX_OK) {
        int64_t *y = (int64_t *)kdx__base(c->y);
        for (size_t i = 0; i < r->nrow; i++) y[i] = rank[r->lab[i]];
        c->classes = r->cls.name;
        c->nclasses = r->cls.n;
        c->classes_cap = r->cls.ncap;
        r->cls.name = NULL;
        r->cls.ncap = 0;
    }
    kdx__free(rank, rank_bytes);
    return s;
}

kdx_status kdx_read_csv(const char *path, const kdx_csv_opts *o, kdx_csv **out)
{
    kdx_csv_opts def = kdx_csv_opts_default();
    if (!o) o = &def;
    KDX_TRY(check_opts(path, o));
    kdx_csv *c = kdx__malloc(sizeof *c);
    if (!c) return kdx_fail(KDX_ENOMEM, "csv: out of memory reading %s", path);
    c->label_col = -1;
    reader r = {.o = o};
    r.p.path = path;
    r.p.line = 1;
    r.p.delim = o->delimiter;
    bool have_row = false;
    kdx_status s = o->classes ? given_classes(&r) : KDX_OK;
    if (s == KDX_OK) s = load_text(&r);
    if (s == KDX_OK) s = read_head(&r, &have_row);
    if (s == KDX_OK) s = find_label(&r);
    if (s == KDX_OK) s = read_rows(&r, have_row);
    if (s == KDX_OK) s = build(&r, c);
    reader_free(&r);
    if (s != KDX_OK) {
        kdx_csv_free(c);
        return s;
    }
    *out = c;
    return KDX_OK;
}

void kdx_csv_free(kdx_csv *c)
{
    if (!c) return;
    kdx_tensor_release(c->x);
    kdx_tensor_release(c->y);
    size_t nn = (size_t)(c->nfeat ? c->nfeat : 1);
    free_strs(c->names, nn, nn);
    free_str(c->label_name);
    free_strs(c->classes, (size_t)c->nclasses, c->classes_cap);
    kdx__free(c, sizeof *c);
}

kdx_tensor *kdx_csv_features(const kdx_csv *c) { return c ? c->x : NULL; }
kdx_tensor *kdx_csv_labels(const kdx_csv *c) { return c ? c->y : NULL; }
int kdx_csv_label_column(const kdx_csv *c) { return c ? c->label_col : -1; }
const char *kdx_csv_label_name(const kdx_csv *c) { return c ? c->label_name : NULL; }
int kdx_csv_class_count(const kdx_csv *c) { return c ? c->nclasses : 0; }

const char *kdx_csv_feature_name(const kdx_csv *c, int j)
{
    return c && c->names && j >= 0 && j < c->nfeat ? c->names[j] : NULL;
}

const char *kdx_csv_class_name(const kdx_csv *c, int k)
{
    return c && k >= 0 && k < c->nclasses ? c->classes[k] : NULL;
}
