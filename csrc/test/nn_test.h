/* nn_test.h — helpers shared by the kernel tests (test_nn.c, test_nn_layers.c):
   tensors from values, flat element access, comparisons. */
#ifndef KDX_NN_TEST_H
#define KDX_NN_TEST_H

#include "ctest.h"
#include "kdx.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* A tensor of dtype dt holding v (converted). */
static inline kdx_tensor *mk(kdx_dtype dt, int nd, const int64_t *shape, const double *v)
{
    int64_t n = 1;
    for (int i = 0; i < nd; i++) n *= shape[i];
    kdx_tensor *t = NULL;
    if (kdx_empty(dt, nd, shape, &t) != KDX_OK) return NULL;
    void *p = kdx_tensor_data(t);
    for (int64_t i = 0; i < n; i++) {
        if (dt == KDX_DTYPE_F32) ((float *)p)[i] = (float)v[i];
        else if (dt == KDX_DTYPE_F64) ((double *)p)[i] = v[i];
        else ((int64_t *)p)[i] = (int64_t)v[i];
    }
    return t;
}

/* 0, 1, 2, ... (n values) as a tensor. */
static inline kdx_tensor *iota(kdx_dtype dt, int nd, const int64_t *shape, double scale)
{
    int64_t n = 1;
    for (int i = 0; i < nd; i++) n *= shape[i];
    double *v = malloc((size_t)(n > 0 ? n : 1) * sizeof *v);
    for (int64_t i = 0; i < n; i++) v[i] = (double)i * scale;
    kdx_tensor *t = mk(dt, nd, shape, v);
    free(v);
    return t;
}

/* Flat element i of a contiguous tensor. */
static inline double at(const kdx_tensor *t, int64_t i)
{
    const void *p = kdx_tensor_data(t);
    switch (kdx_tensor_dtype(t)) {
    case KDX_DTYPE_F32: return ((const float *)p)[i];
    case KDX_DTYPE_F64: return ((const double *)p)[i];
    default: return (double)((const int64_t *)p)[i];
    }
}

/* The first n elements of t are within tol of want[] (t has at least n). */
static inline int all_near(const kdx_tensor *t, const double *want, int64_t n, double tol)
{
    if (!t || kdx_tensor_numel(t) < n) return 0;
    for (int64_t i = 0; i < n; i++)
        if (!(fabs(at(t, i) - want[i]) <= tol)) {
            fprintf(stderr, "  element %lld: got %.9g, want %.9g\n", (long long)i, at(t, i), want[i]);
            return 0;
        }
    return 1;
}

static inline int shape_is(const kdx_tensor *t, int nd, const int64_t *shape)
{
    if (!t || kdx_tensor_ndim(t) != nd) return 0;
    for (int i = 0; i < nd; i++)
        if (kdx_tensor_shape(t)[i] != shape[i]) return 0;
    return 1;
}

static const kdx_dtype FLOATS[2] = {KDX_DTYPE_F32, KDX_DTYPE_F64};

#endif
