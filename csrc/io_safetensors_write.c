/* io_safetensors_write.c — saving checkpoints in the safetensors format
   (the format and the reader are described in io_safetensors.c). The writer
   lays tensors out as the reference implementation does and replaces the
   target atomically (temporary file, fsync, rename). */
#define _POSIX_C_SOURCE 200809L /* fsync */

#include "kdx_internal.h"
#include "io_safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define save_fail(...) kdx__st_fail("save_safetensors", __VA_ARGS__)

/* ---- writing ---- */

static void buf_str(buf *b, const char *s) { kdx__st_buf_put(b, s, strlen(s)); }

/* A JSON string as serde_json writes it: quotes, backslashes and control
   characters escaped, everything else (UTF-8 included) as it is. */
static void buf_json_str(buf *b, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    kdx__st_buf_put(b, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        char esc[7] = {'\\', 0, 0, 0, 0, 0, 0};
        size_t n = 2;
        switch (*p) {
        case '"': esc[1] = '"'; break;
        case '\\': esc[1] = '\\'; break;
        case '\b': esc[1] = 'b'; break;
        case '\f': esc[1] = 'f'; break;
        case '\n': esc[1] = 'n'; break;
        case '\r': esc[1] = 'r'; break;
        case '\t': esc[1] = 't'; break;
        default:
            if (*p >= 0x20) {
                kdx__st_buf_put(b, p, 1);
                continue;
            }
            memcpy(esc + 1, "u00", 3);
            esc[4] = hex[*p >> 4], esc[5] = hex[*p & 15];
            n = 6;
        }
        kdx__st_buf_put(b, esc, n);
    }
    kdx__st_buf_put(b, "\"", 1);
}

typedef struct st_item {
    const char *name;
    const kdx_tensor *t;
    const st_dtype *dt;
} st_item;

static int cmp_item(const void *a, const void *b)
{
    const st_item *x = a, *y = b;
    if (x->dt->rank != y->dt->rank) return y->dt->rank - x->dt->rank;
    return strcmp(x->name, y->name);
}

static int cmp_item_name(const void *a, const void *b)
{
    return strcmp(((const st_item *)a)->name, ((const st_item *)b)->name);
}

typedef struct st_kv {
    const char *k, *v;
} st_kv;

static int cmp_kv(const void *a, const void *b) { return strcmp(((const st_kv *)a)->k, ((const st_kv *)b)->k); }

/* Checks the arguments of kdx_save_safetensors and fills items (in file
   order) and kv (sorted by key). */
static kdx_status save_args(const char *path, int n, const char *const *names, const kdx_tensor *const *tensors,
                            int nmeta, const char *const *keys, const char *const *values, st_item *items, st_kv *kv)
{
    for (int i = 0; i < n; i++) {
        if (!names[i]) return save_fail(path, KDX_EINVAL, "name %d is NULL", i);
        if (!tensors[i]) return save_fail(path, KDX_EINVAL, "tensor '%s' is NULL", names[i]);
        if (!kdx__st_utf8_valid(names[i])) return save_fail(path, KDX_EINVAL, "a tensor name is not valid UTF-8");
        if (strcmp(names[i], "__metadata__") == 0)
            return save_fail(path, KDX_EINVAL, "'__metadata__' is reserved and cannot name a tensor");
        items[i] = (st_item){names[i], tensors[i], kdx__st_native(kdx_tensor_dtype(tensors[i]))};
    }
    for (int i = 0; i < nmeta; i++) {
        if (!keys[i] || !values[i]) return save_fail(path, KDX_EINVAL, "metadata entry %d is NULL", i);
        if (!kdx__st_utf8_valid(keys[i])) return save_fail(path, KDX_EINVAL, "a metadata key is not valid UTF-8");
        if (!kdx__st_utf8_valid(values[i])) return save_fail(path, KDX_EINVAL, "metadata['%s'] is not valid UTF-8", keys[i]);
        kv[i] = (st_kv){keys[i], values[i]};
    }
    qsort(items, (size_t)n, sizeof *items, cmp_item_name);
    for (int i = 1; i < n; i++)
        if (strcmp(items[i - 1].name, items[i].name) == 0)
            return save_fail(path, KDX_EINVAL, "tensor name '%s' appears twice", items[i].name);
    qsort(items, (size_t)n, sizeof *items, cmp_item);
    qsort(kv, (size_t)nmeta, sizeof *kv, cmp_kv);
    for (int i = 1; i < nmeta; i++)
        if (strcmp(kv[i - 1].k, kv[i].k) == 0)
            return save_fail(path, KDX_EINVAL, "metadata key '%s' appears twice", kv[i].k);
    return KDX_OK;
}

/* The header, as the reference writer lays it out: compact JSON, metadata
   first, then tensors in file order; spaces pad it to a multiple of 8. */
static kdx_status build_header(const char *path, int n, const st_item *items, int nmeta, const st_kv *kv, buf *b)
{
    char num[64];
    uint64_t off = 0;
    buf_str(b, "{");
    if (nmeta > 0) {
        buf_str(b, "\"__metadata__\":{");
        for (int i = 0; i < nmeta; i++) {
            if (i) buf_str(b, ",");
            buf_json_str(b, kv[i].k);
            buf_str(b, ":");
            buf_json_str(b, kv[i].v);
        }
        buf_str(b, n ? "}," : "}");
    }
    for (int i = 0; i < n; i++) {
        const kdx_tensor *t = items[i].t;
        if (i) buf_str(b, ",");
        buf_json_str(b, items[i].name);
        buf_str(b, ":{\"dtype\":\"");
        buf_str(b, items[i].dt->name);
        buf_str(b, "\",\"shape\":[");
        for (int d = 0; d < kdx_tensor_ndim(t); d++) {
            snprintf(num, sizeof num, d ? ",%lld" : "%lld", (long long)kdx_tensor_shape(t)[d]);
            buf_str(b, num);
        }
        uint64_t len = (uint64_t)kdx_tensor_numel(t) * (uint64_t)items[i].dt->size;
        snprintf(num, sizeof num, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)off,
                 (unsigned long long)(off + len));
        buf_str(b, num);
        off += len;
    }
    buf_str(b, "}");
    while (b->n % 8) buf_str(b, " ");
    return b->oom ? save_fail(path, KDX_ENOMEM, "out of memory building the header") : KDX_OK;
}

static int write_all(int fd, const void *src, size_t n)
{
    const char *p = src;
    while (n > 0) {
        ssize_t w = write(fd, p, n > ((size_t)1 << 30) ? (size_t)1 << 30 : n);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) return -1;
        p += w, n -= (size_t)w;
    }
    return 0;
}

/* Writes one tensor's elements, contiguous and little-endian. */
static kdx_status write_tensor(const char *path, const char *tmp, int fd, const st_item *it)
{
    kdx_tensor *c = NULL;
    bool was = kdx__grad_pause(); /* the copy of a non-contiguous view is not part of any graph */
    kdx_status s = kdx_contiguous(it->t, &c);
    kdx__grad_restore(was);
    if (s != KDX_OK) return s;
    size_t size = (size_t)it->dt->size, n = (size_t)kdx_tensor_numel(c);
    const char *p = kdx_tensor_data(c);
    int err = 0;
    if (kdx__st_host_is_le()) {
        err = write_all(fd, p, n * size);
    } else { /* big-endian host: swap a chunk at a time */
        char *chunk = kdx__malloc_raw(ST_CHUNK);
        if (!chunk) s = save_fail(path, KDX_ENOMEM, "out of memory");
        for (size_t i = 0; chunk && !err && i < n; i += ST_CHUNK / size) {
            size_t k = n - i < ST_CHUNK / size ? n - i : ST_CHUNK / size;
            memcpy(chunk, p + i * size, k * size);
            kdx__st_swap_bytes(chunk, k, (int)size);
            err = write_all(fd, chunk, k * size);
        }
        kdx__free(chunk, ST_CHUNK);
    }
    if (err) s = save_fail(path, KDX_EIO, "writing %s failed: %s", tmp, strerror(errno));
    kdx_tensor_release(c);
    return s;
}

/* Creates path.tmp.<pid>[.k] exclusively, so concurrent savers never share
   one; the name goes to tmp (room for len(path) + 48). */
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

/* fsync of the directory holding path makes the rename itself durable;
   best effort, since not every file system supports it. */
static void sync_dir(const char *path)
{
    size_t n = strlen(path);
    char *dir = kdx__st_dup_str(path, n);
    if (!dir) return;
    char *slash = strrchr(dir, '/');
    if (slash) slash[slash == dir] = 0; /* keep the root's "/" */
    int fd = open(slash ? dir : ".", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
    kdx__free(dir, n + 1);
}

/* Writes header and data to a new temporary file and renames it over path. */
static kdx_status write_file(const char *path, const buf *hdr, int n, const st_item *items)
{
    size_t cap = strlen(path) + 48;
    char *tmp = kdx__malloc(cap);
    if (!tmp) return save_fail(path, KDX_ENOMEM, "out of memory");
    kdx_status s = KDX_OK;
    int fd = create_temp(path, tmp, cap);
    if (fd < 0) {
        s = save_fail(path, KDX_EIO, "cannot create the temporary file %s: %s", tmp, strerror(errno));
        kdx__free(tmp, cap);
        return s;
    }
    unsigned char len[8];
    for (int i = 0; i < 8; i++) len[i] = (unsigned char)((uint64_t)hdr->n >> (8 * i));
    if (write_all(fd, len, 8) || write_all(fd, hdr->p, hdr->n))
        s = save_fail(path, KDX_EIO, "writing %s failed: %s", tmp, strerror(errno));
    for (int i = 0; s == KDX_OK && i < n; i++) s = write_tensor(path, tmp, fd, &items[i]);
    if (s == KDX_OK && fsync(fd) != 0) s = save_fail(path, KDX_EIO, "fsync of %s failed: %s", tmp, strerror(errno));
    if (close(fd) != 0 && s == KDX_OK) s = save_fail(path, KDX_EIO, "closing %s failed: %s", tmp, strerror(errno));
    if (s == KDX_OK && rename(tmp, path) != 0)
        s = save_fail(path, KDX_EIO, "cannot rename %s over it: %s", tmp, strerror(errno));
    if (s != KDX_OK) unlink(tmp);
    else sync_dir(path);
    kdx__free(tmp, cap);
    return s;
}

kdx_status kdx_save_safetensors(const char *path, int n, const char *const *names, const kdx_tensor *const *tensors,
                                int nmeta, const char *const *meta_keys, const char *const *meta_values)
{
    if (!path || !*path) return kdx_fail(KDX_EINVAL, "save_safetensors: path must be a non-empty string");
    if (n < 0 || (n > 0 && (!names || !tensors)))
        return save_fail(path, KDX_EINVAL, "n must be >= 0 with names and tensors given");
    if (nmeta < 0 || (nmeta > 0 && (!meta_keys || !meta_values)))
        return save_fail(path, KDX_EINVAL, "nmeta must be >= 0 with meta_keys and meta_values given");
    st_item *items = kdx__malloc((size_t)n * sizeof *items);
    st_kv *kv = kdx__malloc((size_t)nmeta * sizeof *kv);
    buf hdr = {0};
    kdx_status s = items && kv ? KDX_OK : save_fail(path, KDX_ENOMEM, "out of memory");
    if (s == KDX_OK) s = save_args(path, n, names, tensors, nmeta, meta_keys, meta_values, items, kv);
    if (s == KDX_OK) s = build_header(path, n, items, nmeta, kv, &hdr);
    if (s == KDX_OK) s = write_file(path, &hdr, n, items);
    kdx__st_buf_free(&hdr);
    kdx__free(items, (size_t)n * sizeof *items);
    kdx__free(kv, (size_t)nmeta * sizeof *kv);
    return s;
}
