/* ctest.h — a tiny harness for the engine's C-only tests (no Lua).
   Each CHECK counts as one assertion; main() returns nonzero on any failure
   and prints "<file>: N passed, N failed" for the test runner to add up. */
#ifndef KDX_CTEST_H
#define KDX_CTEST_H

#include <math.h>
#include <stdio.h>

static int ct_pass, ct_fail;

#define CHECK(cond)                                                              \
    do {                                                                         \
        if (cond) ct_pass++;                                                     \
        else { ct_fail++; fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); } \
    } while (0)

/* A call that must succeed; prints the engine's message when it does not. */
#define CHECK_OK(call)                                                           \
    do {                                                                         \
        kdx_status ct_s = (call);                                                \
        if (ct_s == KDX_OK) ct_pass++;                                           \
        else { ct_fail++; fprintf(stderr, "%s:%d: %s failed: %s\n", __FILE__, __LINE__, #call, kdx_last_error()); } \
    } while (0)

/* A call that must fail with status st. */
#define CHECK_FAILS(call, st)                                                    \
    do {                                                                         \
        kdx_status ct_s = (call);                                                \
        if (ct_s == (st)) ct_pass++;                                             \
        else { ct_fail++; fprintf(stderr, "%s:%d: %s returned %d, wanted %d\n", __FILE__, __LINE__, #call, (int)ct_s, (int)(st)); } \
    } while (0)

#define CHECK_NEAR(a, b, tol) CHECK(fabs((double)(a) - (double)(b)) <= (tol))

#define CT_REPORT(name)                                                          \
    (printf("%s: %d passed, %d failed\n", (name), ct_pass, ct_fail), ct_fail != 0)

#endif
