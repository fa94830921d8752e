/* io_safetensors.h — what the safetensors reader (io_safetensors.c) and
   writer (io_safetensors_write.c) share. Private to those two files; the
   shared functions are defined in io_safetensors.c. */
#ifndef KDX_IO_SAFETENSORS_H
#define KDX_IO_SAFETENSORS_H

#include "kdx_internal.h"

#include <stddef.h>
#include <stdint.h>

/* Bytes converted or byte-swapped at a time: bounds the scratch memory. */
#define ST_CHUNK 65536

/* ---- dtypes of the format ---- */

enum { ST_NATIVE, ST_INT, ST_UINT, ST_BOOL, ST_F16, ST_BF16 };

typedef struct st_dtype {
    const char *name;
    int size, kind;
    kdx_dtype to;
    int rank; /* the reference writer's order: higher ranks come first */
} st_dtype;

/* The format's dtype that stores a kdx dtype as it is (F32, F64 or I64). */
const st_dtype *kdx__st_native(kdx_dtype dt);
/* 1 if the host is little-endian, as the format's data is. */
int kdx__st_host_is_le(void);
/* Reverses the bytes of each of the n elements of size bytes at p, in place. */
void kdx__st_swap_bytes(char *p, size_t n, int size);

/* ---- UTF-8 and strings ---- */

/* 1 if the string s is valid UTF-8 (no overlong forms, no surrogates, nothing above U+10FFFF). */
int kdx__st_utf8_valid(const char *s);
/* A NUL-terminated copy of the n bytes at s (engine allocator, n + 1 bytes); NULL if out of memory. */
char *kdx__st_dup_str(const char *s, size_t n);

/* ---- a growable byte buffer (engine allocator) ---- */

typedef struct buf {
    char *p;
    size_t n, cap;
    int oom;
} buf;

/* Appends n bytes of src, keeping p NUL-terminated; out of memory sets oom and makes later puts no-ops. */
void kdx__st_buf_put(buf *b, const void *src, size_t n);
/* Frees b's bytes and leaves it empty. */
void kdx__st_buf_free(buf *b);

/* ---- errors ---- */

/* Records "<fn>: <path>: <message>" and returns s. */
kdx_status kdx__st_fail(const char *fn, const char *path, kdx_status s, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;

#endif
