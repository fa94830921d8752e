/* rng.c — xoshiro256** (Blackman & Vigna), seeded through splitmix64, with
   normals by the Marsaglia polar method. Deterministic across machines. */
#include "kdx_internal.h"

#include <math.h>
#include <pthread.h>
#include <string.h>

struct kdx_generator {
    uint64_t s[4];
    int has_spare;
    double spare;
};

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

void kdx_generator_seed(kdx_generator *g, uint64_t seed)
{
    uint64_t x = seed;
    for (int i = 0; i < 4; i++) g->s[i] = splitmix64(&x);
    g->has_spare = 0;
    g->spare = 0;
}

kdx_status kdx_generator_new(uint64_t seed, kdx_generator **out)
{
    kdx_generator *g = kdx__malloc(sizeof *g);
    if (!g) return kdx_fail(KDX_ENOMEM, "generator_new: out of memory");
    kdx_generator_seed(g, seed);
    *out = g;
    return KDX_OK;
}

void kdx_generator_free(kdx_generator *g) { kdx__free(g, sizeof *g); }

static kdx_generator default_gen;

static void seed_default(void) { kdx_generator_seed(&default_gen, 0x6b6478 /* "kdx" */); }

kdx_generator *kdx_default_generator(void)
{
    /* The one mutable global the design allows; seeded once, lazily (two
       threads' first calls must not both seed it), with a fixed seed. Its
       draws are the callers' to serialise: a thread should use its own. */
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, seed_default);
    return &default_gen;
}

uint64_t kdx_generator_next(kdx_generator *g)
{
    uint64_t *s = g->s;
    uint64_t r = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return r;
}

double kdx_generator_uniform(kdx_generator *g) { return (double)(kdx_generator_next(g) >> 11) * 0x1.0p-53; }

uint64_t kdx_generator_below(kdx_generator *g, uint64_t n)
{
    /* Rejection keeps every residue equally likely. */
    uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t r;
    do r = kdx_generator_next(g);
    while (r >= limit);
    return r % n;
}

double kdx_generator_normal(kdx_generator *g)
{
    if (g->has_spare) {
        g->has_spare = 0;
        return g->spare;
    }
    double u, v, s;
    do {
        u = 2.0 * kdx_generator_uniform(g) - 1.0;
        v = 2.0 * kdx_generator_uniform(g) - 1.0;
        s = u * u + v * v;
    } while (s >= 1.0 || s == 0.0);
    double m = sqrt(-2.0 * log(s) / s);
    g->spare = v * m;
    g->has_spare = 1;
    return u * m;
}

void kdx_generator_get_state(const kdx_generator *g, uint64_t state[6])
{
    memcpy(state, g->s, sizeof g->s);
    state[4] = (uint64_t)g->has_spare;
    memcpy(&state[5], &g->spare, sizeof g->spare);
}

void kdx_generator_set_state(kdx_generator *g, const uint64_t state[6])
{
    memcpy(g->s, state, sizeof g->s);
    g->has_spare = state[4] != 0;
    memcpy(&g->spare, &state[5], sizeof g->spare);
}
