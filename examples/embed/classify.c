/* classify.c — the kdx engine as a plain C library (no Lua): loads an MLP
 * student from a safetensors checkpoint and classifies the images of a second
 * safetensors file.
 *
 *   classify model.safetensors images.safetensors
 *
 * The checkpoint is what `model:save(path)` writes for an nn.Sequential of
 * Flatten, Linear and ReLU modules: tensors "<i>.weight" [out, in] and
 * "<i>.bias" [out] for each Linear at position i. The layers run in the order
 * of i, with a ReLU between two of them. The images file holds "x" [N, ...]
 * (each image flattened to the first layer's input size). Prints one line per
 * image: "<index> <class> <top logit>", class 0-based.
 * Exit status 0 on success, 1 with a message on stderr otherwise. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kdx.h"

#define MAX_LAYERS 16

typedef struct layer {
    long index;                 /* i in "<i>.weight" */
    const kdx_tensor *w, *b;    /* borrowed from the checkpoint */
} layer;

static int check(kdx_status s, const char *what)
{
    if (s == KDX_OK) return 0;
    fprintf(stderr, "classify: %s failed (%s): %s\n", what, kdx_status_name(s), kdx_last_error());
    return 1;
}

static int by_index(const void *a, const void *b)
{
    long x = ((const layer *)a)->index, y = ((const layer *)b)->index;
    return (x > y) - (x < y);
}

/* Finds the Linear layers of the checkpoint, sorted by position. */
static int find_layers(const kdx_safetensors *st, layer *ls, int *n)
{
    *n = 0;
    for (int i = 0; i < kdx_safetensors_count(st); i++) {
        const char *name = kdx_safetensors_name(st, i);
        char *end;
        long idx = strtol(name, &end, 10);
        if (end == name || strcmp(end, ".weight") != 0) continue;
        char bias[64];
        snprintf(bias, sizeof bias, "%ld.bias", idx);
        int bi = kdx_safetensors_find(st, bias);
        if (*n == MAX_LAYERS || bi < 0) {
            fprintf(stderr, "classify: %s: too many layers or no %s\n", name, bias);
            return 1;
        }
        ls[*n] = (layer){idx, kdx_safetensors_tensor(st, i), kdx_safetensors_tensor(st, bi)};
        (*n)++;
    }
    if (*n == 0) {
        fprintf(stderr, "classify: no \"<i>.weight\" tensors in the checkpoint\n");
        return 1;
    }
    qsort(ls, (size_t)*n, sizeof *ls, by_index);
    return 0;
}

/* h = relu?(x @ w^T + b): the transposed view goes to BLAS as a flag. */
static int linear(const kdx_tensor *x, const layer *l, int relu, kdx_tensor **out)
{
    kdx_tensor *wt = NULL, *h = NULL;
    int rc = check(kdx_transpose(l->w, 0, 1, &wt), "transpose") ||
             check(kdx_addmm(l->b, x, wt, 1.0, 1.0, &h), "addmm") ||
             (relu && check(kdx_unary_(KDX_UN_RELU, h, 0, 0), "relu"));
    kdx_tensor_release(wt);
    if (rc) {
        kdx_tensor_release(h);
        return 1;
    }
    *out = h;
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: classify model.safetensors images.safetensors\n");
        return 1;
    }
    kdx_set_num_threads(1); /* a host that owns its threads */
    kdx_safetensors *model = NULL, *images = NULL;
    kdx_tensor *h = NULL, *pred = NULL, *top = NULL;
    layer ls[MAX_LAYERS];
    int nl = 0, rc = 1;

    if (check(kdx_load_safetensors(argv[1], &model), argv[1])) goto done;
    if (check(kdx_load_safetensors(argv[2], &images), argv[2])) goto done;
    if (find_layers(model, ls, &nl)) goto done;
    int xi = kdx_safetensors_find(images, "x");
    if (xi < 0) {
        fprintf(stderr, "classify: %s has no tensor \"x\"\n", argv[2]);
        goto done;
    }
    const kdx_tensor *raw = kdx_safetensors_tensor(images, xi);
    const int64_t flat[2] = {kdx_tensor_size(raw, 0), -1};
    if (check(kdx_reshape(raw, 2, flat, &h), "reshape")) goto done;

    for (int i = 0; i < nl; i++) {
        kdx_tensor *next = NULL;
        if (linear(h, &ls[i], i + 1 < nl, &next)) goto done;
        kdx_tensor_release(h);
        h = next;
    }
    if (check(kdx_max(h, 1, 0, &top, &pred), "max")) goto done;
    for (int64_t i = 0; i < kdx_tensor_size(pred, 0); i++) {
        int64_t c;
        double v;
        if (check(kdx_tensor_get_i64(pred, &i, &c), "get") || check(kdx_tensor_get(top, &i, &v), "get")) goto done;
        printf("%lld %lld %.6g\n", (long long)i, (long long)c, v);
    }
    rc = 0;
done:
    kdx_tensor_release(h);
    kdx_tensor_release(pred);
    kdx_tensor_release(top);
    kdx_safetensors_free(model);
    kdx_safetensors_free(images);
    return rc;
}
