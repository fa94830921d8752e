/* fuzz_common.h — what the four libFuzzer harnesses share: the input as a
   file that the path-taking readers can open, an allocator hook that checks
   the engine's size bookkeeping and can refuse an allocation, and the checks
   that a reader let go of everything it made. A failed check prints why and
   aborts, which libFuzzer reports as a crash and saves the input. Error
   statuses are never findings: corrupt input is supposed to give one. */
#ifndef KDX_FUZZ_COMMON_H
#define KDX_FUZZ_COMMON_H

#define _GNU_SOURCE /* memfd_create, malloc_usable_size */

#include "kdx.h"

#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static inline void fuzz_die(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));

static inline void fuzz_die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("kdx fuzz: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    abort();
}

/* Allocations through the hook in the current pass, and the number of the
   one to refuse (-1: none); see fuzz_run. */
static long fuzz_allocs, fuzz_fail_at = -1;

/* lua_Alloc's contract says osize is the size the block was made with; a host
   allocator may rely on it. Under ASan malloc_usable_size is exactly the size
   asked for, so every free and realloc can be checked against it. */
static inline void *fuzz_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    (void)ud;
    if (ptr && malloc_usable_size(ptr) != osize)
        fuzz_die("the engine %s a block of %zu bytes saying it has %zu", nsize ? "resized" : "freed",
                 malloc_usable_size(ptr), osize);
    if (nsize == 0) {
        free(ptr);
        return NULL;
    }
    if (fuzz_allocs++ == fuzz_fail_at) return NULL;
    return realloc(ptr, nsize);
}

/* The per-process file the input is written to: a memfd (nothing to clean
   up, even after a crash), or a file in /tmp removed at exit. */
static int fuzz_fd = -1;
static char fuzz_file[64];

static inline void fuzz_unlink(void)
{
    unlink(fuzz_file);
}

static inline void fuzz_open_file(const char *name)
{
    fuzz_fd = memfd_create(name, MFD_CLOEXEC);
    if (fuzz_fd >= 0) {
        snprintf(fuzz_file, sizeof fuzz_file, "/proc/self/fd/%d", fuzz_fd);
        if (access(fuzz_file, R_OK) == 0) return;
        close(fuzz_fd); /* no /proc: fall back to /tmp */
    }
    snprintf(fuzz_file, sizeof fuzz_file, "/tmp/kdx-%s-%ld", name, (long)getpid());
    fuzz_fd = open(fuzz_file, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fuzz_fd < 0) fuzz_die("cannot create %s: %s", fuzz_file, strerror(errno));
    atexit(fuzz_unlink);
}

/* Replaces the file's contents with the input; returns its path. */
static inline const char *fuzz_write_file(const uint8_t *data, size_t size)
{
    if (ftruncate(fuzz_fd, 0) != 0) fuzz_die("truncating %s: %s", fuzz_file, strerror(errno));
    for (size_t done = 0; done < size;) {
        ssize_t w = pwrite(fuzz_fd, data + done, size - done, (off_t)done);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) fuzz_die("writing %s: %s", fuzz_file, strerror(errno));
        done += (size_t)w;
    }
    return fuzz_file;
}

/* Engine set-up for every harness: the checking allocator (which also keeps
   freed blocks out of the engine's cache, so ASan sees every free), one
   thread, and the input file. */
static inline void fuzz_setup(const char *name)
{
    kdx_set_allocator(fuzz_alloc, NULL);
    kdx_set_num_threads(1);
    fuzz_open_file(name);
}

/* A failure must leave a readable message. With KDX_FUZZ_VERBOSE set in the
   environment it is printed, to see what a seed or a crash input reaches. */
static inline void fuzz_check_error(const char *what, kdx_status s)
{
    const char *msg = kdx_last_error();
    if (!msg || !*msg) fuzz_die("%s failed (%s) without a message", what, kdx_status_name(s));
    if (getenv("KDX_FUZZ_VERBOSE"))
        fprintf(stderr, "%s%s: %s: %s\n", fuzz_fail_at >= 0 ? "[allocation refused] " : "", what,
                kdx_status_name(s), msg);
}

/* With KDX_FUZZ_VERBOSE: a reader succeeded. */
static inline void fuzz_note_ok(const char *what)
{
    if (getenv("KDX_FUZZ_VERBOSE"))
        fprintf(stderr, "%s%s: ok\n", fuzz_fail_at >= 0 ? "[allocation refused] " : "", what);
}

/* A tensor a reader returned: a sane, contiguous shape, and every byte of its
   data readable (ASan checks that the storage is as large as the shape says). */
static inline void fuzz_check_tensor(const char *what, const kdx_tensor *t)
{
    if (!t) fuzz_die("%s returned OK and a NULL tensor", what);
    int nd = kdx_tensor_ndim(t);
    if (nd < 0 || nd > KDX_MAX_DIMS) fuzz_die("%s: a tensor with %d dims", what, nd);
    const int64_t *sh = kdx_tensor_shape(t);
    for (int i = 0; i < nd; i++)
        if (sh[i] < 0) fuzz_die("%s: dim %d has size %lld", what, i, (long long)sh[i]);
    size_t n = (size_t)kdx_tensor_numel(t) * kdx_dtype_size(kdx_tensor_dtype(t));
    /* (An empty tensor's strides are whatever it was made with.) */
    if (n > 0 && !kdx_tensor_is_contiguous(t)) fuzz_die("%s returned a non-contiguous tensor", what);
    const volatile unsigned char *p = kdx_tensor_data(t);
    unsigned acc = 0;
    for (size_t i = 0; i < n; i++) acc += p[i];
    (void)acc;
}

/* After the reader's results are freed nothing of the engine's may be alive. */
static inline void fuzz_check_released(const char *what)
{
    int64_t nt = kdx_debug_live_tensors(), nb = kdx_debug_live_bytes();
    if (nt != 0 || nb != 0)
        fuzz_die("%s: %lld tensors (%lld bytes) still alive after everything was freed", what, (long long)nt,
                 (long long)nb);
}

/* FNV-1a of the input: picks the allocation to refuse, the same on every run. */
static inline uint64_t fuzz_hash(const uint8_t *data, size_t size)
{
    uint64_t h = 14695981039346656037ull;
    for (size_t i = 0; i < size; i++) h = (h ^ data[i]) * 1099511628211ull;
    return h;
}

/* One pass of a harness over an input; injected is 1 when an allocation will
   be refused, so results may legitimately differ from the first pass. */
typedef void (*fuzz_pass_fn)(const uint8_t *data, size_t size, int injected);

/* Runs pass on the input twice: as it is, then with one of the engine's
   allocations refused (which one depends on the input), so the KDX_ENOMEM
   paths are walked too and must release everything as well. */
static inline void fuzz_run(const uint8_t *data, size_t size, fuzz_pass_fn pass, const char *what)
{
    fuzz_fail_at = -1;
    fuzz_allocs = 0;
    pass(data, size, 0);
    fuzz_check_released(what);
    long n = fuzz_allocs;
    if (n > 0) {
        fuzz_fail_at = (long)(fuzz_hash(data, size) % (uint64_t)n);
        fuzz_allocs = 0;
        pass(data, size, 1);
        fuzz_check_released(what);
        fuzz_fail_at = -1;
    }
}

#endif /* KDX_FUZZ_COMMON_H */
