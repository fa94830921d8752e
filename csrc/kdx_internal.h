/*
 * kdx_internal.h — struct layouts and helpers private to the engine.
 * Never installed; the binding and hosts use kdx.h only.
 */
#ifndef KDX_INTERNAL_H
#define KDX_INTERNAL_H

#include "kdx.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct kdx_storage {
    atomic_long refs;
    void *data;
    size_t nbytes;
    void *block;        /* the allocation holding data (and its first tensor) */
    size_t block_bytes;
    atomic_long version; /* bumped by every in-place write: autograd checks saved tensors */
} kdx_storage;

typedef struct kdx_node kdx_node;

struct kdx_tensor {
    atomic_long refs;
    kdx_dtype dtype;
    int ndim;
    int64_t shape[KDX_MAX_DIMS];
    int64_t stride[KDX_MAX_DIMS]; /* in elements */
    int64_t offset;               /* in elements, into storage */
    kdx_storage *storage;
    bool in_block;                /* this header lives in storage->block */
    /* autograd (autograd.c) */
    bool requires_grad;
    int32_t hook_pending;         /* contributions still due in a hooked backward (autograd.c) */
    uint32_t hook_pass;           /* the hooked backward that counted them */
    kdx_node *grad_fn;            /* the node that made this tensor (NULL for leaves) */
    kdx_tensor *grad;             /* accumulated gradient of a leaf */
};

/* ---- autograd (autograd.c) ----
 * A node records one differentiable op with a single differentiable output.
 * Its backward turns the output's gradient into its inputs' gradients using
 * the public (recording) ops, so that with create_graph the backward pass is
 * itself recorded and can be differentiated again. */
typedef struct kdx_edge {
    kdx_node *node;   /* the input's producer, or NULL */
    kdx_tensor *leaf; /* the input itself when it is a leaf that requires grad */
    int ndim;         /* the input's shape and dtype, for reducing gradients */
    int64_t shape[KDX_MAX_DIMS];
    kdx_dtype dtype;
} kdx_edge;

/* gin[i] receives input i's gradient (a new reference) when want[i]; a
   backward may leave gin[i] NULL for "no gradient" (zero). */
typedef kdx_status (*kdx_backward_fn)(kdx_node *n, kdx_tensor *g, const bool *want, kdx_tensor **gin);

#define KDX_NODE_SAVED 4
#define KDX_NODE_PARAMS 16
struct kdx_node {
    atomic_long refs;
    const char *name;
    kdx_backward_fn backward;
    kdx_tensor *saved[KDX_NODE_SAVED]; /* inputs (with their graph) or detached outputs */
    long saved_version[KDX_NODE_SAVED];
    bool released;                     /* saved tensors freed by a backward without retain_graph */
    double p[KDX_NODE_PARAMS];         /* scalar parameters of the op */
    int64_t ip[KDX_NODE_PARAMS];       /* integer parameters (dims, sizes) */
    const void *ctx;                   /* what the backward needs beyond tensors and numbers (may be NULL) */
    kdx_node *next_free;               /* link in the list of nodes being freed */
    int nin;
    kdx_edge next[];                   /* one per input */
};

/* Grad mode of this thread (kdx_set_grad_enabled), read by every op. */
bool kdx__grad_on(void);
/* Turns recording off for the engine's own nested calls; returns the old mode. */
bool kdx__grad_pause(void);
void kdx__grad_restore(bool was);
/* True when an op on these inputs must be recorded (grad mode on and one requires grad). */
bool kdx__needs_node(int nin, const kdx_tensor *const *ins);
/* Makes a node for *out from inputs ins (NULL entries: non-tensor inputs) and
   attaches it; *node (may be NULL when not wanted) is left for the caller to
   fill with saved tensors and parameters. On failure *out is released and
   set to NULL. Call only when kdx__needs_node. */
kdx_status kdx__record(const char *name, kdx_backward_fn bw, int nin, const kdx_tensor *const *ins, kdx_tensor **out,
                       kdx_node **node);
/* Keeps t (a new reference) in slot i, noting its version. */
void kdx__save(kdx_node *n, int i, const kdx_tensor *t);
/* Keeps a graph-free alias of t (for outputs: saving them with their graph would
   make a cycle). */
kdx_status kdx__save_detached(kdx_node *n, int i, const kdx_tensor *t);
/* Saved tensor i, after checking it was not modified in place since. */
kdx_status kdx__saved(kdx_node *n, int i, kdx_tensor **t);
/* Marks an in-place write to t (bumps the version of its storage). */
static inline void kdx__bump(kdx_tensor *t) { atomic_fetch_add(&t->storage->version, 1); }
/* Refuses an in-place op on a tensor that takes part in autograd. */
kdx_status kdx__check_inplace(const char *fname, const kdx_tensor *t);
/* g summed down to shape (undoing broadcasting) in the edge's dtype: a new reference. */
kdx_status kdx__sum_to(kdx_tensor *g, const kdx_edge *e, kdx_tensor **out);
void kdx__node_release(kdx_node *n);
/* The model outputs y [B] or [B, C] reduced to the selected class per
   sample: target rows first..first+B-1, one class for all, or none for [B]. */
kdx_status kdx__select_target(const char *fname, const kdx_tensor *y, const kdx_tensor *target, int64_t first,
                              kdx_tensor **out);

/* ---- shared by the attribution methods (attr_*.c) ----
 * All take the public method's name for messages. The model sees at most
 * batch_size rows per call: callers build perturbed rows in chunks. */
/* Checks the model, a float batch x [N, ...] and batch_size >= 1. */
kdx_status kdx__attr_check(const char *fname, const kdx_model *m, const kdx_tensor *x, int64_t batch_size);
/* *y = the model at x, checked to be a tensor with x's first dim (a new reference). */
kdx_status kdx__attr_call(const char *fname, const kdx_model *m, const kdx_tensor *x, kdx_tensor **y);
/* d(sum of the selected outputs)/dx for a chunk x whose rows are target rows
   first..; *out has x's shape; *value (may be NULL) the selected outputs [B]. */
kdx_status kdx__attr_grad(const char *fname, const kdx_model *m, const kdx_tensor *x, const kdx_tensor *target,
                          int64_t first, kdx_tensor **out, kdx_tensor **value);
/* The selected outputs [B] at x, without a graph. */
kdx_status kdx__attr_outputs(const char *fname, const kdx_model *m, const kdx_tensor *x, const kdx_tensor *target,
                             int64_t first, kdx_tensor **out);
/* Targets for rows that belong to samples ids [n] (int64, 0-based): a new
   reference to target's rows, or to target itself when it is NULL or one class
   (then *out may be NULL). N is the number of samples, for the message. */
kdx_status kdx__attr_row_targets(const char *fname, const kdx_tensor *target, int64_t N, const kdx_tensor *ids,
                                 kdx_tensor **out);

/* ---- perturbation methods (attr_mask.c) ---- */
/* Feature groups: the group of every element of a sample. */
typedef struct kdx__groups {
    int64_t N, per;      /* samples; elements per sample */
    const int64_t *ids;  /* group of each element: [per] for all samples, or [N * per] */
    int per_sample;      /* ids differ between samples */
    int64_t *nfeat;      /* [N]: features of sample i (its largest id + 1) */
    int64_t max_feat;    /* the largest nfeat */
    size_t bytes;
} kdx__groups;
/* Groups from mask (NULL: every element its own feature; else int64 0-based
   ids of one sample's shape or x's, broadcast). Free with kdx__attr_groups_free. */
kdx_status kdx__attr_groups(const char *fname, const kdx_tensor *x, const kdx_tensor *mask, kdx__groups *g);
void kdx__attr_groups_free(kdx__groups *g);
static inline const int64_t *kdx__groups_of(const kdx__groups *g, int64_t i)
{
    return g->ids + (g->per_sample ? i * g->per : 0);
}
/* A contiguous tensor of x's shape and dtype: baseline (NULL: zeros) broadcast. */
kdx_status kdx__attr_baseline(const char *fname, const kdx_tensor *x, const kdx_tensor *baseline, kdx_tensor **out);
/* dst = x where the element's feature is present (present[id] != 0), else
   base; x, base, dst: one sample's contiguous data (float32 or float64). */
void kdx__attr_mix_row(const kdx__groups *g, int64_t i, const unsigned char *present, const char *x, const char *base,
                       char *dst, kdx_dtype dt);
/* Writes perturbed row r (one sample's elements, x's dtype) to dst and the
   sample it belongs to (0-based) to *sample. */
typedef kdx_status (*kdx__row_fill)(void *ud, int64_t r, char *dst, int64_t *sample);
/* Runs R rows made by fill through the model, at most batch_size rows per
   call, and writes each row's target output (its sample's target) to out[R]. */
kdx_status kdx__attr_eval_rows(const char *fname, const kdx_model *m, const kdx_tensor *x, const kdx_tensor *target,
                               int64_t R, kdx__row_fill fill, void *ud, int64_t batch_size, double *out);
/* As kdx__attr_eval_rows, but *out gets the whole output rows as float64
   [R] or [R, C] (a new reference), for scores of full outputs (attr_perturb.c). */
kdx_status kdx__attr_eval_full(const char *fname, const kdx_model *m, const kdx_tensor *x, int64_t R, kdx__row_fill fill,
                               void *ud, int64_t batch_size, kdx_tensor **out);

/* ---- backward rules of the attribution methods (autograd.c, attr_modrules.c) ----
 * Guided backprop, deconvolution and DeepLift change how nonlinear ops pass
 * gradients back. Their C functions set a thread-local rule around their own
 * passes only and restore it on every path; ordinary training, other threads
 * and create_graph passes (recording on) never see a rule. */
typedef enum kdx__rule_kind {
    KDX__RULE_NONE,
    KDX__RULE_GUIDED,  /* ReLU: g where input > 0 and g > 0 */
    KDX__RULE_DECONV,  /* ReLU: relu(g), whatever the input */
    KDX__RULE_RESCALE  /* DeepLift on a [x; baseline] batch of `rows` rows */
} kdx__rule_kind;
typedef struct kdx__rule {
    kdx__rule_kind kind;
    bool backward;     /* false while the model runs forward, true in the backward pass */
    int64_t rows;      /* rescale: 2n, the x half first */
} kdx__rule;
/* Sets this thread's rule; returns the old one (to restore). */
kdx__rule kdx__rule_set(kdx__rule r);
/* The rule a backward function applies now: NONE unless an attribution
   backward pass is running without recording. */
kdx__rule_kind kdx__backward_rule(void);
/* True while a DeepLift forward pass records (ops that need extra saved
   tensors for the rule, as max_pool2d, save them only then). */
bool kdx__rule_saving(void);
/* DeepLift's rows (2n) of the running rule. */
int64_t kdx__rule_rows(void);
/* Rescale for y = f(u) elementwise: the gradient g * [m; m] with
   m = (f(u_x) - f(u_b)) / (u_x - u_b), or ord (the ordinary gradient) where
   |u_x - u_b| < 1e-7. op names the op in messages. */
kdx_status kdx__rescale_unary(const char *op, const kdx_tensor *u, const kdx_tensor *y, const kdx_tensor *g,
                              const kdx_tensor *ord, kdx_tensor **out);
/* Rescale for z = a op b (two-player Shapley split of the change of z between
   the halves, exact); ord[i] the ordinary gradients, gin[i] filled where want[i]. */
kdx_status kdx__rescale_binary(const char *opname, kdx_binop op, const kdx_tensor *a, const kdx_tensor *b,
                               const kdx_tensor *g, const bool *want, kdx_tensor *const *ord, kdx_tensor **gin);
/* max_pool2d's rule: the gradient g [2n, C, OH, OW] scaled, in the x half, so that each output's change
   goes to its argmax at x: m = (y_x - y_b) / (u_x[j] - u_b[j]), 1 where that is below 1e-7. u the
   input, idx the saved argmax [2n, C, OH, OW] (into H*W planes). */
kdx_status kdx__rescale_maxpool(const kdx_tensor *u, const kdx_tensor *idx, const kdx_tensor *g, kdx_tensor **out);

/* ---- expressions for backward formulas (expr.c) ----
 * A scope owns the temporaries of a formula: each E_* call runs one public
 * (recording) op, keeps its result in the scope and returns it, or returns
 * NULL once anything failed, so a formula reads as a chain of calls and is
 * checked once at the end with kdx__scope_end. */
#define KDX_SCOPE_MAX 48
typedef struct kdx_scope {
    kdx_status s;
    int n;
    kdx_tensor *t[KDX_SCOPE_MAX];
} kdx_scope;
#define KDX_SCOPE {KDX_OK, 0, {0}}
/* Runs CALL, which writes its result through &kdx_o_, and keeps the result
   in scope S as DST (the status is read before the result, in that order). */
#define KDX_KEEP(S, DST, CALL)                          \
    do {                                                \
        kdx_tensor *kdx_o_ = NULL;                      \
        kdx_status kdx_st_ = (S)->s == KDX_OK ? (CALL) : (S)->s; \
        (DST) = kdx__keep((S), kdx_st_, kdx_o_);        \
    } while (0)
/* Keeps t (the result of a call that returned st) in the scope. */
kdx_tensor *kdx__keep(kdx_scope *S, kdx_status st, kdx_tensor *t);
/* Hands out a new reference to r (may be NULL) in *out, frees the scope's
   temporaries and returns the first failure, if any. */
kdx_status kdx__scope_end(kdx_scope *S, kdx_tensor *r, kdx_tensor **out);
/* Frees the scope's temporaries; returns its status. */
kdx_status kdx__scope_free(kdx_scope *S);
kdx_tensor *E_bin(kdx_scope *S, kdx_binop op, const kdx_tensor *a, const kdx_tensor *b);
kdx_tensor *E_bins(kdx_scope *S, kdx_binop op, const kdx_tensor *a, double s); /* a op s */
kdx_tensor *E_sbin(kdx_scope *S, kdx_binop op, double s, const kdx_tensor *a); /* s op a */
kdx_tensor *E_un(kdx_scope *S, kdx_unop op, const kdx_tensor *a, double p, double q);
kdx_tensor *E_sum(kdx_scope *S, const kdx_tensor *x, const int *dims, int nd, int keepdim);
kdx_tensor *E_mm(kdx_scope *S, const kdx_tensor *a, const kdx_tensor *b);
kdx_tensor *E_tr(kdx_scope *S, const kdx_tensor *x, int d0, int d1);
kdx_tensor *E_reshape(kdx_scope *S, const kdx_tensor *x, int nd, const int64_t *shape);
kdx_tensor *E_expand(kdx_scope *S, const kdx_tensor *x, int nd, const int64_t *shape);
kdx_tensor *E_where(kdx_scope *S, const kdx_tensor *c, const kdx_tensor *a, const kdx_tensor *b);
kdx_tensor *E_zeros(kdx_scope *S, kdx_dtype dt, int nd, const int64_t *shape);
/* 0/1 mask of a op s (comparisons), never recorded. */
kdx_tensor *E_mask(kdx_scope *S, kdx_binop op, const kdx_tensor *a, double s);

/* ---- nn autograd helpers (op_nn.c, op_conv.c, op_pool.c, op_resize.c) ---- */
/* A 2-D sliding window over one sample: conv2d, unfold and fold share it. */
typedef struct kdx_conv_geom {
    int64_t C, H, W;        /* input channels and plane */
    int64_t kh, kw, OH, OW; /* kernel and output plane */
    int64_t sh, sw, ph, pw, dh, dw;
} kdx_conv_geom;
/* Unfolds one sample x [C,H,W] into col [C*kh*kw, OH*OW] (op_unfold.c):
   row (c, i, j), column oh*OW + ow, zero where a tap falls in the padding.
   xp (may be NULL; column stride 1 only) is scratch for a zero-bordered copy
   [C, H+2ph, W+2pw] whose border is already zero. */
void kdx__im2col(const char *x, const kdx_conv_geom *g, kdx_dtype dt, char *xp, char *col);
/* Its adjoint: adds col [C*kh*kw, OH*OW] back into one sample x [C,H,W]
   (which the caller has initialised, usually to zeros). */
void kdx__col2im(const char *col, const kdx_conv_geom *g, kdx_dtype dt, char *x);

/* batch_norm's argument checks, shared with kdx_batch_norm_sync (op_nn.c).
   training: 0 eval, 1 training, 2 training over several processes (more
   than one value per channel is then checked globally, by the caller). */
kdx_status kdx__bn_check(const kdx_tensor *x, const kdx_tensor *rm, const kdx_tensor *rv, const kdx_tensor *w,
                         const kdx_tensor *b, int training, double momentum, double eps);

/* The gradient of batch norm in training (x, weight or NULL, the saved mean
   and invstd [C], the output gradient g; M values per channel over all
   processes, scale = all rows / this process's rows, sum NULL or over the
   processes), in one fused pass without recording (op_bn_sync.c): gin[0..2]
   = d x, d weight, d bias where want[]. */
kdx_status kdx__bn_grad(const kdx_tensor *x, const kdx_tensor *w, const kdx_tensor *sm, const kdx_tensor *si,
                        const kdx_tensor *g, double M, double scale, const kdx_sum *sum, const bool *want,
                        kdx_tensor **gin);

/* ---- memory (alloc.c) ---- */
void *kdx__malloc(size_t n);           /* zero-filled; NULL on failure */
void *kdx__malloc_raw(size_t n);       /* not filled: for memory the caller writes in full */
void kdx__free(void *p, size_t n);
void kdx__log(kdx_log_level level, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* ---- tensor construction (tensor.c) ---- */
/* A new contiguous tensor with fresh zeroed storage. */
kdx_status kdx__new(const char *fname, kdx_dtype dt, int ndim, const int64_t *shape, kdx_tensor **out);
/* As kdx__new, but the data is left unfilled: only for results the caller
   writes in full (zeroing a large output costs as much as a cheap op). */
kdx_status kdx__new_raw(const char *fname, kdx_dtype dt, int ndim, const int64_t *shape, kdx_tensor **out);
/* A new view header over t's storage (refcount on storage taken). */
kdx_status kdx__view_of(const kdx_tensor *t, int ndim, const int64_t *shape, const int64_t *stride,
                        int64_t offset, kdx_tensor **out);
/* Validates a shape (ndim in range, sizes >= 0, product fits). */
kdx_status kdx__check_shape(const char *fname, int ndim, const int64_t *shape);
/* Normalises dim d for a tensor of ndim dims (negative from the end). */
kdx_status kdx__dim(const char *fname, int ndim, int d, int *out);
/* Checks t is non-NULL. */
kdx_status kdx__arg(const char *fname, const char *argname, const kdx_tensor *t);
int64_t kdx__numel(int ndim, const int64_t *shape);
void kdx__contig_strides(int ndim, const int64_t *shape, int64_t *stride);
static inline char *kdx__base(const kdx_tensor *t) {
    return (char *)t->storage->data + (size_t)t->offset * kdx_dtype_size(t->dtype);
}
/* double -> int64 without undefined behaviour: truncates, NaN gives 0,
   out-of-range values saturate. */
static inline int64_t kdx__f2i(double v)
{
    if (v != v) return 0;
    if (v >= 9223372036854775807.0) return INT64_MAX;
    if (v <= -9223372036854775808.0) return INT64_MIN;
    return (int64_t)v;
}
/* Refuses in-place writes to an expanded view, whose elements share memory
   (the result would depend on the order of writes). */
kdx_status kdx__check_writable(const char *fname, const kdx_tensor *t);
/* Checks t is non-NULL and float32 or float64 (arg names it in messages). */
kdx_status kdx__check_float(const char *fname, const char *arg, const kdx_tensor *t);
/* Kernel options (kernel, stride, ...) beyond this cannot describe a real
   tensor and would overflow size arithmetic. */
#define KDX_OPT_MAX ((int64_t)1 << 30)
/* An option pair must lie in [lo, KDX_OPT_MAX]. */
kdx_status kdx__check_pair(const char *fname, const char *name, const int64_t v[2], int64_t lo);
/* x is [C,H,W] or [N,C,H,W] float with non-empty C, H, W (N may be 0). */
kdx_status kdx__check_planes(const char *fname, const kdx_tensor *x);
static inline int64_t kdx__min64(int64_t a, int64_t b) { return a < b ? a : b; }
static inline int64_t kdx__max64(int64_t a, int64_t b) { return a > b ? a : b; }
/* Work below this many elements per thread is not worth a thread. */
#define KDX_GRAIN_ELEMS 16384
/* Items per parallel task so each task has about KDX_GRAIN_ELEMS elements. */
static inline int64_t kdx__grain(int64_t elems_per_item)
{
    return elems_per_item >= KDX_GRAIN_ELEMS ? 1 : KDX_GRAIN_ELEMS / (elems_per_item > 0 ? elems_per_item : 1);
}
/* Same shape? */
bool kdx__same_shape(const kdx_tensor *a, const kdx_tensor *b);
/* Shape as "[2,3]" in a rotating thread-local buffer (for messages). */
const char *kdx__shp(const kdx_tensor *t);

/* ---- strided iteration (iter.c) ----
 * Walks up to KDX_ITER_MAX operands that share a (broadcast) shape, one
 * innermost run at a time. Dims are coalesced, so contiguous operands give a
 * single run of numel elements. Strides are in bytes. */
#define KDX_ITER_MAX 4
typedef struct kdx_iter {
    int nops, ndim;
    int64_t shape[KDX_MAX_DIMS];
    int64_t stride[KDX_ITER_MAX][KDX_MAX_DIMS]; /* bytes; dim 0 innermost */
    char *base[KDX_ITER_MAX];
    int64_t count[KDX_MAX_DIMS];
    int64_t done, total_runs;
} kdx_iter;
/* ts[i] are viewed with shape (broadcast; each ts[i] must be broadcastable to it). */
void kdx__iter_init(kdx_iter *it, int nops, const kdx_tensor *const *ts, int ndim, const int64_t *shape);
/* Next run: ptr[i] its start, *n its length, *st[i] its byte strides. 0 when done. */
int kdx__iter_next(kdx_iter *it, char **ptr, int64_t *n, int64_t *st);
/* Broadcast strides (elements) of t viewed as shape; 0 where t has size 1 or lacks the dim. */
void kdx__bcast_strides(const kdx_tensor *t, int ndim, const int64_t *shape, int64_t *stride);

/* ---- reductions (op_reduce.c): the [outer, n, inner] layout ---- */
/* Contiguous copy of x with dims permuted so that the reduced dims (mask bit
   set) come last; *outer = product of kept dims, *n = product of reduced dims. */
kdx_status kdx__reduce_layout(const char *fname, const kdx_tensor *x, unsigned mask, kdx_tensor **xt,
                              int64_t *outer, int64_t *n);
/* Bitmask from a dims list (ndims == 0: all); errors on repeats or range. */
kdx_status kdx__dims_mask(const char *fname, int ndim, const int *dims, int ndims, unsigned *mask);
/* Output shape after reducing mask. */
int kdx__reduced_shape(int ndim, const int64_t *shape, unsigned mask, int keepdim, int64_t *out);

/* ---- BLAS (blas.c, the only file that includes cblas.h) ---- */
/* C[m,n] = alpha * op(A) op(B) + beta * C; row-major; ta/tb transpose flags.
   Large products are split over the engine's threads; inside a parallel
   region (kdx__parallel_for) it runs on the calling thread. */
void kdx__sgemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
                const float *b, int64_t ldb, float beta, float *c, int64_t ldc);
void kdx__dgemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, double alpha, const double *a, int64_t lda,
                const double *b, int64_t ldb, double beta, double *c, int64_t ldc);

/* ---- threads (parallel.c) ---- */
/* Runs fn(ud, lo, hi) over [0, n) split across the engine's threads when n is
   at least grain per thread; serially otherwise. */
typedef void (*kdx__range_fn)(void *ud, int64_t lo, int64_t hi);
void kdx__parallel_for(int64_t n, int64_t grain, kdx__range_fn fn, void *ud);

/* Releases each non-NULL pointer in a NULL-terminated style list. */
#define KDX_RELEASE(...)                                                              \
    do {                                                                              \
        kdx_tensor *kdx__rl[] = {__VA_ARGS__};                                        \
        for (size_t kdx__i = 0; kdx__i < sizeof kdx__rl / sizeof kdx__rl[0]; kdx__i++) \
            kdx_tensor_release(kdx__rl[kdx__i]);                                      \
    } while (0)

/* Propagates a failing status. */
#define KDX_TRY(expr)                      \
    do {                                   \
        kdx_status kdx__s = (expr);        \
        if (kdx__s != KDX_OK) return kdx__s; \
    } while (0)

#endif /* KDX_INTERNAL_H */
