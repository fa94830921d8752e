/* stb_image_fuzz.c — the stb_image of Debian's libstb-dev (the same header
   libstb is built from), compiled into the image harness so that libFuzzer
   sees its branches and ASan checks its memory accesses. Its objects
   override libstb's stbi_* functions in the harness only; the engine's
   own build still links libstb.

   Every block stb allocates is filled with fuzz_stbi_fill, so a decoder that
   hands out memory it never wrote shows it as a pattern the harness can
   change between two decodes of the same bytes. Only the first FILL_MAX
   bytes: a corrupt PNG can make stb reserve 1 GiB it never touches, and
   filling that would turn every such input into a timeout. */
#define _GNU_SOURCE /* malloc_usable_size */

#include <malloc.h>
#include <stddef.h>
#include <string.h>

void *fuzz_stbi_malloc(size_t n);
void *fuzz_stbi_realloc(void *p, size_t n);
void fuzz_stbi_free(void *p);
extern unsigned char fuzz_stbi_fill;

#define STBI_MALLOC(n) fuzz_stbi_malloc(n)
#define STBI_REALLOC(p, n) fuzz_stbi_realloc(p, n)
#define STBI_FREE(p) fuzz_stbi_free(p)
#define STB_IMAGE_IMPLEMENTATION
#include <stb/stb_image.h>

#ifndef FILL_MAX
#define FILL_MAX ((size_t)1 << 24)
#endif

unsigned char fuzz_stbi_fill;

static void fill(unsigned char *p, size_t from, size_t to)
{
    if (to > FILL_MAX) to = FILL_MAX;
    if (from < to) memset(p + from, fuzz_stbi_fill, to - from);
}

void *fuzz_stbi_malloc(size_t n)
{
    void *p = malloc(n);
    if (p) fill(p, 0, n);
    return p;
}

void *fuzz_stbi_realloc(void *p, size_t n)
{
    size_t old = p ? malloc_usable_size(p) : 0; /* exact under ASan */
    unsigned char *q = realloc(p, n);
    if (q) fill(q, old, n);
    return q;
}

void fuzz_stbi_free(void *p)
{
    free(p);
}
