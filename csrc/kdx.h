/*
 * kdx.h — the one public header of the kdx engine.
 *
 * The engine is plain C11 and knows nothing of Lua. Every function that can
 * fail returns a kdx_status; on failure kdx_last_error() holds a message that
 * names the function and the argument ("matmul: shapes [2,3] and [4,5] do not
 * match"), valid until the next failing call on the same thread. The engine
 * never aborts, exits, prints or longjmps.
 *
 * Ownership: every tensor is reference counted. A function that writes a
 * tensor through an [out] pointer hands the caller a new reference, which the
 * caller releases with kdx_tensor_release(). Every other tensor argument is
 * borrowed. On failure nothing is written to [out] pointers.
 *
 * Dimensions and indices are 0-based; a negative dimension counts from the
 * end (-1 is the last). Shapes are int64_t arrays of at most KDX_MAX_DIMS.
 */
#ifndef KDX_H
#define KDX_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define KDX_VERSION "0.1.0"
#define KDX_MAX_DIMS 8

/* ---- status, errors, hooks ------------------------------------------------ */

typedef enum kdx_status {
    KDX_OK = 0,
    KDX_EINVAL,   /* an argument has a bad value */
    KDX_ESHAPE,   /* shapes do not fit together */
    KDX_EDTYPE,   /* a dtype is not accepted here */
    KDX_EINDEX,   /* an index or dimension is out of range */
    KDX_ENOMEM,   /* an allocation failed */
    KDX_EIO,      /* a file could not be read or written */
    KDX_EFORMAT,  /* a file or buffer is corrupt or not the expected format */
    KDX_ESTATE    /* the call is not allowed in the current state */
} kdx_status;

/* The message of the last failure on this thread ("" if none). */
const char *kdx_last_error(void);
/* A short name for a status code ("shape error", ...). */
const char *kdx_status_name(kdx_status s);
/* Records a failure message (printf-style) and returns s; for extensions. */
kdx_status kdx_fail(kdx_status s, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* An allocator with lua_Alloc's contract: nsize == 0 frees and returns NULL,
   otherwise (re)allocates ptr (NULL for a new block) to nsize bytes. */
typedef void *(*kdx_alloc_fn)(void *ud, void *ptr, size_t osize, size_t nsize);
/* Routes all engine memory through fn (NULL restores malloc/free). Every
   block is freed through whichever allocator is installed at that moment, so
   set it before the first tensor is made and keep it while any tensor lives. */
void kdx_set_allocator(kdx_alloc_fn fn, void *ud);

/* Frees the blocks the engine keeps for reuse (through the installed allocator).
   Freed blocks of 64 KiB and more are kept (up to a limit) so that repeated
   allocations of the same sizes cost no page faults or allocator calls. */
void kdx_cache_clear(void);
/* Sets how many bytes the block cache may hold (0 turns it off; default 256 MiB). */
void kdx_set_cache_limit(size_t bytes);
/* Bytes the block cache holds now. */
size_t kdx_cache_bytes(void);
/* Sets the smallest freed block the cache keeps (default 64 KiB; 0 keeps every size: a frame loop then allocates nothing after warm-up). */
void kdx_set_cache_min(size_t bytes);

typedef enum kdx_log_level { KDX_LOG_DEBUG, KDX_LOG_INFO, KDX_LOG_WARN } kdx_log_level;
typedef void (*kdx_log_fn)(void *ud, kdx_log_level level, const char *msg);
/* Receives the engine's diagnostic messages (NULL: discard them). Errors are
   never logged (they are returned); the hook carries warnings and notes. */
void kdx_set_log(kdx_log_fn fn, void *ud);

/* Threads used by BLAS and the engine's own parallel loops (n >= 1). */
void kdx_set_num_threads(int n);
/* The thread count set by kdx_set_num_threads (default: the core count). */
int kdx_get_num_threads(void);

/* Number of live tensor objects in the process (for leak tests). */
int64_t kdx_debug_live_tensors(void);
/* Bytes of tensor storage alive in the process (what a garbage collector that
   sees only small handles should know about). */
int64_t kdx_debug_live_bytes(void);
/* Bytes of tensor storage allocated since the process started (monotonic). */
int64_t kdx_debug_bytes_allocated(void);

/* ---- dtypes ---------------------------------------------------------------- */

typedef enum kdx_dtype { KDX_DTYPE_F32 = 0, KDX_DTYPE_F64 = 1, KDX_DTYPE_I64 = 2 } kdx_dtype;

/* "float32", "float64", "int64". */
const char *kdx_dtype_name(kdx_dtype dt);
/* Bytes per element. */
size_t kdx_dtype_size(kdx_dtype dt);
/* Parses a dtype name ("float32"/"float"/"f32", "float64"/"double"/"f64",
   "int64"/"long"/"i64"). Errors: KDX_EDTYPE for an unknown name. */
kdx_status kdx_dtype_parse(const char *name, kdx_dtype *out);
/* The dtype a binary op of a and b computes in (float64 > float32 > int64). */
kdx_dtype kdx_dtype_promote(kdx_dtype a, kdx_dtype b);

/* ---- random numbers ---------------------------------------------------------- */

/* A seeded xoshiro256** generator. Same seed, same sequence on every machine. */
typedef struct kdx_generator kdx_generator;

/* A new generator seeded with seed. [out] *out: free with kdx_generator_free. */
kdx_status kdx_generator_new(uint64_t seed, kdx_generator **out);
/* Frees a generator (NULL is fine). */
void kdx_generator_free(kdx_generator *g);
/* Restarts g from seed. */
void kdx_generator_seed(kdx_generator *g, uint64_t seed);
/* The process-wide default generator, used wherever a NULL generator is passed. */
kdx_generator *kdx_default_generator(void);
/* Next raw 64-bit output. */
uint64_t kdx_generator_next(kdx_generator *g);
/* Uniform double in [0, 1) with 53 random bits. */
double kdx_generator_uniform(kdx_generator *g);
/* Standard normal (Marsaglia polar method). */
double kdx_generator_normal(kdx_generator *g);
/* Uniform integer in [0, n), unbiased (n > 0). */
uint64_t kdx_generator_below(kdx_generator *g, uint64_t n);
/* Copies the generator's full state (four words, a cached-normal flag and its bits). */
void kdx_generator_get_state(const kdx_generator *g, uint64_t state[6]);
/* Restores a state taken with kdx_generator_get_state. */
void kdx_generator_set_state(kdx_generator *g, const uint64_t state[6]);

/* ---- tensors: lifetime and inspection ------------------------------------ */

typedef struct kdx_tensor kdx_tensor;

/* Adds a reference; returns t. */
kdx_tensor *kdx_tensor_retain(kdx_tensor *t);
/* Drops a reference (NULL is fine); frees the tensor with the last one. */
void kdx_tensor_release(kdx_tensor *t);

/* Element type of t. */
kdx_dtype kdx_tensor_dtype(const kdx_tensor *t);
/* Number of dims (0 for a scalar). */
int kdx_tensor_ndim(const kdx_tensor *t);
/* Pointer to the ndim sizes (valid while t lives). */
const int64_t *kdx_tensor_shape(const kdx_tensor *t);
/* Pointer to the ndim strides, in elements. */
const int64_t *kdx_tensor_strides(const kdx_tensor *t);
/* Size of dim d (negative counts from the end); -1 if out of range. */
int64_t kdx_tensor_size(const kdx_tensor *t, int d);
/* Number of elements. */
int64_t kdx_tensor_numel(const kdx_tensor *t);
/* Pointer to the first element of the view (strides apply from there). */
void *kdx_tensor_data(const kdx_tensor *t);
/* 1 if the view is row-major contiguous. */
int kdx_tensor_is_contiguous(const kdx_tensor *t);
/* An identity for the storage behind t: equal for views that share memory. */
const void *kdx_tensor_storage_id(const kdx_tensor *t);
/* Writes "[2,3]" into buf (always NUL-terminated); returns buf. */
char *kdx_shape_str(int ndim, const int64_t *shape, char *buf, size_t n);

/* Reads element idx[0..ndim-1] as a double. Errors: KDX_EINDEX. */
kdx_status kdx_tensor_get(const kdx_tensor *t, const int64_t *idx, double *v);
/* Reads element idx exactly as an int64 (int64 tensors; floats are truncated). */
kdx_status kdx_tensor_get_i64(const kdx_tensor *t, const int64_t *idx, int64_t *v);
/* Writes v at idx (converted to t's dtype). Errors: KDX_EINDEX. */
kdx_status kdx_tensor_set(kdx_tensor *t, const int64_t *idx, double v);
/* Writes an exact int64 at idx. */
kdx_status kdx_tensor_set_i64(kdx_tensor *t, const int64_t *idx, int64_t v);
/* The value of a one-element tensor. Errors: KDX_ESHAPE otherwise. */
kdx_status kdx_tensor_item(const kdx_tensor *t, double *v);

/* ---- creation ---------------------------------------------------------------- */

/* Uninitialised (zero-filled) tensor. [out] *out: new reference. */
kdx_status kdx_empty(kdx_dtype dt, int ndim, const int64_t *shape, kdx_tensor **out);
/* Copies numel(shape) elements of dtype dt from data. */
kdx_status kdx_from_data(kdx_dtype dt, int ndim, const int64_t *shape, const void *data, kdx_tensor **out);
/* Tensor filled with value. */
kdx_status kdx_full(kdx_dtype dt, int ndim, const int64_t *shape, double value, kdx_tensor **out);
/* Tensor of zeros. */
kdx_status kdx_zeros(kdx_dtype dt, int ndim, const int64_t *shape, kdx_tensor **out);
/* Tensor of ones. */
kdx_status kdx_ones(kdx_dtype dt, int ndim, const int64_t *shape, kdx_tensor **out);
/* A 0-d tensor holding v. */
kdx_status kdx_scalar(kdx_dtype dt, double v, kdx_tensor **out);
/* start, start+step, ... while < end (> end for a negative step), as PyTorch. */
kdx_status kdx_arange(double start, double end, double step, kdx_dtype dt, kdx_tensor **out);
/* n points from start to end inclusive. */
kdx_status kdx_linspace(double start, double end, int64_t n, kdx_dtype dt, kdx_tensor **out);
/* n x m identity. */
kdx_status kdx_eye(int64_t n, int64_t m, kdx_dtype dt, kdx_tensor **out);
/* Uniform [0,1) (float dtypes). g may be NULL for the default generator. */
kdx_status kdx_rand(kdx_generator *g, kdx_dtype dt, int ndim, const int64_t *shape, kdx_tensor **out);
/* Standard normal (float dtypes). */
kdx_status kdx_randn(kdx_generator *g, kdx_dtype dt, int ndim, const int64_t *shape, kdx_tensor **out);
/* Uniform integers in [low, high). */
kdx_status kdx_randint(kdx_generator *g, int64_t low, int64_t high, kdx_dtype dt, int ndim,
                       const int64_t *shape, kdx_tensor **out);
/* A random permutation of 0..n-1 (int64). */
kdx_status kdx_randperm(kdx_generator *g, int64_t n, kdx_tensor **out);
/* Fills t in place: uniform in [lo, hi). */
kdx_status kdx_uniform_(kdx_tensor *t, kdx_generator *g, double lo, double hi);
/* Fills t in place: normal with mean and std. */
kdx_status kdx_normal_(kdx_tensor *t, kdx_generator *g, double mean, double std);

/* ---- views (share storage) and copies ------------------------------------------ */

/* A view with a new shape; one entry may be -1. Errors: KDX_ESHAPE if the
   sizes differ or the strides do not allow a view. */
kdx_status kdx_view(const kdx_tensor *t, int ndim, const int64_t *shape, kdx_tensor **out);
/* As kdx_view, but copies when a view is impossible. */
kdx_status kdx_reshape(const kdx_tensor *t, int ndim, const int64_t *shape, kdx_tensor **out);
/* Swaps dims d0 and d1. */
kdx_status kdx_transpose(const kdx_tensor *t, int d0, int d1, kdx_tensor **out);
/* dims: a permutation of 0..ndim-1. */
kdx_status kdx_permute(const kdx_tensor *t, const int *dims, int ndim, kdx_tensor **out);
/* length elements of dim starting at start. */
kdx_status kdx_narrow(const kdx_tensor *t, int dim, int64_t start, int64_t length, kdx_tensor **out);
/* Drops dim, taking entry index (negative counts from the end). */
kdx_status kdx_select(const kdx_tensor *t, int dim, int64_t index, kdx_tensor **out);
/* Removes dim if it has size 1 (all size-1 dims when all is nonzero). */
kdx_status kdx_squeeze(const kdx_tensor *t, int dim, int all, kdx_tensor **out);
/* Inserts a size-1 dim at position dim (0..ndim; negative: from the end). */
kdx_status kdx_unsqueeze(const kdx_tensor *t, int dim, kdx_tensor **out);
/* Broadcasts size-1 dims to shape (-1 keeps a size); leading dims may be added. */
kdx_status kdx_expand(const kdx_tensor *t, int ndim, const int64_t *shape, kdx_tensor **out);
/* Merges dims start..end (inclusive) into one. */
kdx_status kdx_flatten(const kdx_tensor *t, int start, int end, kdx_tensor **out);
/* t itself (a new reference) if contiguous, else a contiguous copy. */
kdx_status kdx_contiguous(const kdx_tensor *t, kdx_tensor **out);
/* A contiguous copy with its own storage. */
kdx_status kdx_clone(const kdx_tensor *t, kdx_tensor **out);
/* Copies src into dst (src broadcast to dst's shape, converted to its dtype). */
kdx_status kdx_copy_(kdx_tensor *dst, const kdx_tensor *src);
/* t converted to dtype (a new reference to t when it already has it). */
kdx_status kdx_to(const kdx_tensor *t, kdx_dtype dt, kdx_tensor **out);

/* ---- elementwise ---------------------------------------------------------------- */

/* Unary ops; a and b are the parameters where an op has them. */
typedef enum kdx_unop {
    KDX_UN_NEG, KDX_UN_ABS, KDX_UN_SIGN, KDX_UN_EXP, KDX_UN_LOG, KDX_UN_LOG1P,
    KDX_UN_SQRT, KDX_UN_RSQRT, KDX_UN_SIN, KDX_UN_COS, KDX_UN_TANH, KDX_UN_SIGMOID,
    KDX_UN_RELU,
    KDX_UN_LEAKY_RELU, /* a: negative slope */
    KDX_UN_GELU,       /* a: 0 exact (erf), 1 tanh approximation */
    KDX_UN_ELU,        /* a: alpha */
    KDX_UN_SOFTPLUS,   /* a: beta, b: threshold (linear above x*beta > b) */
    KDX_UN_CLAMP,      /* a: min, b: max; NaN means no bound */
    KDX_UN_POW,        /* a: exponent */
    KDX_UN_FILL,       /* a: value (used by fill_) */
    KDX_UN_ERF,
    KDX_UN_COUNT
} kdx_unop;

/* y = op(x). Float ops on int64 input give float32 (exp, log, ...); neg, abs,
   sign, relu, clamp keep int64. */
kdx_status kdx_unary(kdx_unop op, const kdx_tensor *x, double a, double b, kdx_tensor **out);
/* x = op(x) in place. Errors: KDX_EDTYPE if the result would change dtype. */
kdx_status kdx_unary_(kdx_unop op, kdx_tensor *x, double a, double b);

typedef enum kdx_binop {
    KDX_BIN_ADD, KDX_BIN_SUB, KDX_BIN_MUL, KDX_BIN_DIV, KDX_BIN_POW,
    KDX_BIN_MAXIMUM, KDX_BIN_MINIMUM,
    KDX_BIN_EQ, KDX_BIN_NE, KDX_BIN_LT, KDX_BIN_LE, KDX_BIN_GT, KDX_BIN_GE,
    KDX_BIN_COUNT
} kdx_binop;

/* out = a op b with NumPy/PyTorch broadcasting, computed in the promoted
   dtype (division of int64 gives float32). Comparisons give 0/1 in that dtype. */
kdx_status kdx_binary(kdx_binop op, const kdx_tensor *a, const kdx_tensor *b, kdx_tensor **out);
/* a op s (or s op a when scalar_first). An int64 tensor with a non-integral
   s computes in float32. */
kdx_status kdx_binary_scalar(kdx_binop op, const kdx_tensor *a, double s, int scalar_first,
                             kdx_tensor **out);
/* a = a op b in place; b broadcasts to a's shape. */
kdx_status kdx_binary_(kdx_binop op, kdx_tensor *a, const kdx_tensor *b);
/* a = a op s in place. */
kdx_status kdx_binary_scalar_(kdx_binop op, kdx_tensor *a, double s);
/* out = cond ? a : b (cond nonzero), all three broadcast together. */
kdx_status kdx_where(const kdx_tensor *cond, const kdx_tensor *a, const kdx_tensor *b, kdx_tensor **out);
/* out = mask ? value : x (mask broadcast to x). */
kdx_status kdx_masked_fill(const kdx_tensor *x, const kdx_tensor *mask, double value, kdx_tensor **out);
/* Broadcast shape of two shapes. Errors: KDX_ESHAPE naming fname. */
kdx_status kdx_broadcast_shape(const char *fname, int na, const int64_t *sa, int nb, const int64_t *sb,
                               int *nout, int64_t *sout);

/* ---- reductions ---------------------------------------------------------------- */

typedef enum kdx_redop {
    KDX_RED_SUM, KDX_RED_MEAN, KDX_RED_PROD, KDX_RED_LOGSUMEXP,
    KDX_RED_AMAX, KDX_RED_AMIN, KDX_RED_NORM1, KDX_RED_NORM2, KDX_RED_NORMINF,
    KDX_RED_COUNT
} kdx_redop;

/* Reduces over dims[0..ndims-1] (ndims == 0: all dims), keeping them as size 1
   when keepdim. Sums of int64 stay int64; mean/logsumexp/norms of int64 give float32. */
kdx_status kdx_reduce(kdx_redop op, const kdx_tensor *x, const int *dims, int ndims, int keepdim,
                      kdx_tensor **out);
/* Variance with Bessel's correction (correction = 1 unbiased, 0 biased). */
kdx_status kdx_var(const kdx_tensor *x, const int *dims, int ndims, double correction, int keepdim,
                   kdx_tensor **out);
/* Standard deviation: sqrt of kdx_var. */
kdx_status kdx_std(const kdx_tensor *x, const int *dims, int ndims, double correction, int keepdim,
                   kdx_tensor **out);
/* Max over dim: values and 0-based int64 indices (first occurrence; NaN wins).
   indices may be NULL. */
kdx_status kdx_max(const kdx_tensor *x, int dim, int keepdim, kdx_tensor **values, kdx_tensor **indices);
/* Min over dim, as kdx_max. */
kdx_status kdx_min(const kdx_tensor *x, int dim, int keepdim, kdx_tensor **values, kdx_tensor **indices);
/* Index of the max over dim; over the flattened tensor when all is nonzero. */
kdx_status kdx_argmax(const kdx_tensor *x, int dim, int all, int keepdim, kdx_tensor **out);
/* Index of the min, as kdx_argmax. */
kdx_status kdx_argmin(const kdx_tensor *x, int dim, int all, int keepdim, kdx_tensor **out);
/* Cumulative sum along dim (same shape). */
kdx_status kdx_cumsum(const kdx_tensor *x, int dim, kdx_tensor **out);

/* ---- linear algebra (OpenBLAS) ------------------------------------------------- */

/* torch.matmul semantics: 1-D, 2-D, and batched N-D with broadcast batch dims.
   Transposed 2-D views go to BLAS as transpose flags, not copies. Both inputs
   must be float32 or both float64. */
kdx_status kdx_matmul(const kdx_tensor *a, const kdx_tensor *b, kdx_tensor **out);
/* Inner product of two 1-D tensors (0-d result). */
kdx_status kdx_dot(const kdx_tensor *a, const kdx_tensor *b, kdx_tensor **out);
/* Outer product of two 1-D tensors. */
kdx_status kdx_outer(const kdx_tensor *a, const kdx_tensor *b, kdx_tensor **out);
/* beta * c + alpha * (a @ b), with c broadcast to [n, m]. */
kdx_status kdx_addmm(const kdx_tensor *c, const kdx_tensor *a, const kdx_tensor *b, double beta,
                     double alpha, kdx_tensor **out);

/* ---- indexing, joining ------------------------------------------------------------- */

/* Shifts an int64 index tensor from base to 0-based and checks every value
   lies in [base, base+size) (negative values count from the end when
   allow_negative). Messages use the caller's numbering. */
kdx_status kdx_index_rebase(const char *fname, const kdx_tensor *idx, int64_t base, int64_t size,
                            int allow_negative, kdx_tensor **out);
/* Entries idx (1-D int64) of x along dim. */
kdx_status kdx_index_select(const kdx_tensor *x, int dim, const kdx_tensor *idx, kdx_tensor **out);
/* out[i][j][k] = x[idx[i][j][k]][j][k] (dim 0), as torch.gather. */
kdx_status kdx_gather(const kdx_tensor *x, int dim, const kdx_tensor *idx, kdx_tensor **out);
/* x[idx[i][j]][j] = src[i][j] (dim 0), in place, as torch.Tensor.scatter_. */
kdx_status kdx_scatter_(kdx_tensor *x, int dim, const kdx_tensor *idx, const kdx_tensor *src);
/* x[idx[i][j]][j] += src[i][j] (dim 0), in place, as torch.Tensor.scatter_add_. */
kdx_status kdx_scatter_add_(kdx_tensor *x, int dim, const kdx_tensor *idx, const kdx_tensor *src);
/* x.index_add_(dim, idx, src * alpha), in place. */
kdx_status kdx_index_add_(kdx_tensor *x, int dim, const kdx_tensor *idx, const kdx_tensor *src, double alpha);
/* x + src * alpha added at the entries idx of dim: the out-of-place index_add. */
kdx_status kdx_index_add(const kdx_tensor *x, int dim, const kdx_tensor *idx, const kdx_tensor *src, double alpha,
                         kdx_tensor **out);
/* x with src added at idx along dim: the out-of-place scatter_add. */
kdx_status kdx_scatter_add(const kdx_tensor *x, int dim, const kdx_tensor *idx, const kdx_tensor *src,
                           kdx_tensor **out);
/* One-hot int64 encoding of idx (values in [0, n)), a new last dim of size n. */
kdx_status kdx_one_hot(const kdx_tensor *idx, int64_t n, kdx_tensor **out);
/* Concatenates n tensors along dim (shapes equal elsewhere; mixed dtypes promote). */
kdx_status kdx_cat(const kdx_tensor *const *ts, int n, int dim, kdx_tensor **out);
/* Stacks n same-shaped tensors along a new dim. */
kdx_status kdx_stack(const kdx_tensor *const *ts, int n, int dim, kdx_tensor **out);
/* Views of size split_size along dim (the last may be smaller). Writes up to
   cap views into outs and their number into *n; with outs == NULL only counts. */
kdx_status kdx_split(const kdx_tensor *t, int64_t split_size, int dim, kdx_tensor **outs, int cap, int *n);
/* chunks views along dim, as torch.chunk (fewer when the size is small). */
kdx_status kdx_chunk(const kdx_tensor *t, int chunks, int dim, kdx_tensor **outs, int cap, int *n);

/* ---- neural-network kernels (forward; NCHW) ------------------------------------------ */

/* Softmax along dim, stable (max subtracted). */
kdx_status kdx_softmax(const kdx_tensor *x, int dim, kdx_tensor **out);
/* log(softmax) along dim, computed as x - max - log(sum(exp(x - max))). */
kdx_status kdx_log_softmax(const kdx_tensor *x, int dim, kdx_tensor **out);

typedef struct kdx_conv_opts {
    int64_t stride[2], padding[2], dilation[2];
    int64_t groups;
} kdx_conv_opts;
/* Defaults: stride 1, padding 0, dilation 1, groups 1. */
kdx_conv_opts kdx_conv_opts_default(void);
/* 2-D convolution (cross-correlation) of x [N,C,H,W] with w [O,C/groups,kh,kw]
   and optional bias [O] (NULL for none); o NULL means the defaults. */
kdx_status kdx_conv2d(const kdx_tensor *x, const kdx_tensor *w, const kdx_tensor *bias,
                      const kdx_conv_opts *o, kdx_tensor **out);
/* Sliding kh x kw blocks of x [N,C,H,W] as columns, as torch.nn.functional.unfold:
   out [N, C*kh*kw, L], L the number of block positions. o: stride, padding,
   dilation (groups unused; NULL: the defaults). Differentiable (gradient: fold). */
kdx_status kdx_unfold(const kdx_tensor *x, int64_t kh, int64_t kw, const kdx_conv_opts *o, kdx_tensor **out);
/* The adjoint of kdx_unfold, as torch.nn.functional.fold: columns [N, C*kh*kw, L]
   summed back into out [N, C, oh, ow], overlapping blocks adding up. */
kdx_status kdx_fold(const kdx_tensor *col, int64_t oh, int64_t ow, int64_t kh, int64_t kw, const kdx_conv_opts *o,
                    kdx_tensor **out);

typedef struct kdx_pool_opts {
    int64_t kernel[2], stride[2], padding[2], dilation[2];
    int ceil_mode;
    int count_include_pad; /* avg_pool2d only */
} kdx_pool_opts;
/* kernel k, stride k, padding 0, dilation 1, floor mode, count_include_pad 1. */
kdx_pool_opts kdx_pool_opts_default(int64_t kh, int64_t kw);
/* Max pooling of [N,C,H,W] (or [C,H,W]); indices (may be NULL) are int64
   flat positions h*W+w of each max in its input plane, as PyTorch. */
kdx_status kdx_max_pool2d(const kdx_tensor *x, const kdx_pool_opts *o, kdx_tensor **out, kdx_tensor **indices);
/* Average pooling of [N,C,H,W] (or [C,H,W]). */
kdx_status kdx_avg_pool2d(const kdx_tensor *x, const kdx_pool_opts *o, kdx_tensor **out);
/* Adaptive average pooling to oh x ow, as PyTorch's bins. */
kdx_status kdx_adaptive_avg_pool2d(const kdx_tensor *x, int64_t oh, int64_t ow, kdx_tensor **out);

typedef enum kdx_interp_mode { KDX_INTERP_NEAREST, KDX_INTERP_BILINEAR } kdx_interp_mode;
/* Resizes the last two dims of [N,C,H,W] (or [C,H,W]) to oh x ow. scale_h,
   scale_w > 0 are the user's scale factors: as in PyTorch, the source step is
   then 1/scale rather than in/out (0: derive it from the sizes). */
kdx_status kdx_interpolate(const kdx_tensor *x, int64_t oh, int64_t ow, kdx_interp_mode mode,
                           int align_corners, double scale_h, double scale_w, kdx_tensor **out);

typedef enum kdx_pad_mode { KDX_PAD_CONSTANT, KDX_PAD_REFLECT, KDX_PAD_REPLICATE } kdx_pad_mode;
/* Pads the last npads/2 dims: pads = {last_lo, last_hi, prev_lo, prev_hi, ...}
   as torch.nn.functional.pad. Negative pads crop (constant mode). */
kdx_status kdx_pad(const kdx_tensor *x, const int64_t *pads, int npads, kdx_pad_mode mode, double value,
                   kdx_tensor **out);
/* Inverted dropout: out = x * mask with mask 0 (prob p) or 1/(1-p). mask
   (may be NULL) receives that scaled mask, x's shape and dtype. */
kdx_status kdx_dropout(const kdx_tensor *x, double p, kdx_generator *g, kdx_tensor **out, kdx_tensor **mask);
/* Batch norm over dim 1 of [N,C,...]. training: normalise with the batch's
   statistics and update running_mean/var in place (unbiased var) when given;
   otherwise use the running statistics. weight, bias, running_* may be NULL.
   save_mean/save_invstd (may be NULL) receive the [C] statistics used. */
kdx_status kdx_batch_norm(const kdx_tensor *x, kdx_tensor *running_mean, kdx_tensor *running_var,
                          const kdx_tensor *weight, const kdx_tensor *bias, int training, double momentum,
                          double eps, kdx_tensor **out, kdx_tensor **save_mean, kdx_tensor **save_invstd);
/* How kdx_batch_norm_sync sums numbers over the processes of a distributed
   run: fn(ud, v, n) replaces v[0..n-1] by their sums over all processes. */
typedef struct kdx_sum {
    kdx_status (*fn)(void *ud, double *v, int64_t n);
    void *ud;
} kdx_sum;
/* Batch norm in training mode with the statistics of the global batch
   (SyncBatchNorm): per-channel sums of all processes combined through sum
   (NULL: this process alone, = kdx_batch_norm training) in the forward pass
   and in its gradient, which is exact for a loss that is each process's mean
   over its rows, averaged by rows (kdx.dist's reducer). Every process must
   call it together; sum must outlive the graph. Second derivatives are not
   supported. */
kdx_status kdx_batch_norm_sync(const kdx_tensor *x, kdx_tensor *running_mean, kdx_tensor *running_var,
                               const kdx_tensor *weight, const kdx_tensor *bias, double momentum, double eps,
                               const kdx_sum *sum, kdx_tensor **out);
/* Layer norm over the last nnorm dims; weight/bias (may be NULL) have those dims' shape. */
kdx_status kdx_layer_norm(const kdx_tensor *x, int nnorm, const kdx_tensor *weight, const kdx_tensor *bias,
                          double eps, kdx_tensor **out);
/* Rows of weight [V,D] picked by int64 idx (any shape): out [..., D]. */
kdx_status kdx_embedding(const kdx_tensor *weight, const kdx_tensor *idx, kdx_tensor **out);

/* ---- augmentation ---------------------------------------------------------------- */
/* Batched data augmentation (op_augment.c) on x [N,C,H,W] float32/float64, or
   one image [C,H,W] (a batch of one). Random ops draw every sample's
   parameters from g (NULL: the default generator) serially in sample order,
   then apply them in parallel: a seed gives the same result at any thread
   count. The optional [out] parameter tensors (may be NULL) return what was
   drawn, in the form the fixed-parameter twin takes. Not differentiable:
   KDX_ESTATE if x requires grad while grad mode is on. */

/* Crops size (NULL or 0: x's H x W) from x zero-padded by pad {h, w} (NULL: 0;
   pad value fill) at offsets [N,2] int64 (top, left) in the padded image. */
kdx_status kdx_augment_crop(const kdx_tensor *x, const kdx_tensor *offsets, const int64_t pad[2],
                            const int64_t size[2], double fill, kdx_tensor **out);
/* torchvision's RandomCrop(size, padding, fill): per sample, top uniform in
   0..H+2*pad_h-size_h, then left likewise; [out] *offsets: int64 [N,2]. */
kdx_status kdx_augment_random_crop(const kdx_tensor *x, const int64_t pad[2], const int64_t size[2], double fill,
                                   kdx_generator *g, kdx_tensor **out, kdx_tensor **offsets);
/* Mirrors the samples whose mask [N] entry is nonzero (mask NULL: all) left to right. */
kdx_status kdx_augment_hflip(const kdx_tensor *x, const kdx_tensor *mask, kdx_tensor **out);
/* Mirrors each sample with probability p; [out] *mask: int64 [N] of 0/1. */
kdx_status kdx_augment_random_hflip(const kdx_tensor *x, double p, kdx_generator *g, kdx_tensor **out,
                                    kdx_tensor **mask);

/* Ranges for kdx_augment_random_affine: degrees {lo, hi}, translate as fractions
   {of W, of H}, scale {lo, hi}, and the value of pixels mapped from outside. */
typedef struct kdx_affine_opts {
    double degrees[2], translate[2], scale[2], fill;
} kdx_affine_opts;
/* No rotation, no translation, scale 1, fill 0. */
kdx_affine_opts kdx_affine_opts_default(void);
/* torchvision's F.affine on tensors (bilinear, no shear): params [N,4] = angle
   (degrees, clockwise on screen, about the centre), tx, ty (pixels, right and
   down), scale; outside pixels blend toward fill as torchvision does. */
kdx_status kdx_augment_affine(const kdx_tensor *x, const kdx_tensor *params, double fill, kdx_tensor **out);
/* torchvision's RandomAffine: per sample angle, tx, ty (rounded to whole
   pixels), scale, uniform in o's ranges; [out] *params: float64 [N,4]. */
kdx_status kdx_augment_random_affine(const kdx_tensor *x, const kdx_affine_opts *o, kdx_generator *g,
                                     kdx_tensor **out, kdx_tensor **params);
/* x + std * N(0, 1), each sample's noise from its own generator seeded from g. */
kdx_status kdx_augment_noise(const kdx_tensor *x, double std, kdx_generator *g, kdx_tensor **out);

/* Options of kdx_augment_random_erase (torchvision's RandomErasing): probability
   p, area fraction scale {lo, hi}, aspect ratio h/w {lo, hi}; value holds 1 or C
   numbers, or nvalue == 0 for standard-normal noise. */
typedef struct kdx_erase_opts {
    double p, scale[2], ratio[2];
    const double *value;
    int nvalue;
} kdx_erase_opts;
/* p 0.5, scale {0.02, 0.33}, ratio {0.3, 3.3}, value 0. */
kdx_erase_opts kdx_erase_opts_default(void);
/* Fills boxes [N,4] int64 (top, left, h, w; h or w 0: none) with value (1 or
   C numbers; nvalue 0: standard-normal noise drawn from g). */
kdx_status kdx_augment_erase(const kdx_tensor *x, const kdx_tensor *boxes, const double *value, int nvalue,
                             kdx_generator *g, kdx_tensor **out);
/* RandomErasing with its 10 attempts per sample; [out] *boxes: int64 [N,4], zeros where nothing was erased. */
kdx_status kdx_augment_random_erase(const kdx_tensor *x, const kdx_erase_opts *o, kdx_generator *g,
                                    kdx_tensor **out, kdx_tensor **boxes);
/* (x - mean[c]) / std[c] per channel; n is 1 (all channels) or C. */
kdx_status kdx_augment_normalize(const kdx_tensor *x, const double *mean, const double *std, int n,
                                 kdx_tensor **out);

/* ---- distillation losses ------------------------------------------------------- */
/* Each returns a new 0-d tensor in [out] *loss, differentiable (to any order)
   in every float input. Student and teacher tensors must share a dtype;
   logits are [B,C]; labels are int64 [B] class indices, 0-based. "Batch
   mean" is the sum over the batch divided by B. docs/distill_losses.md has
   the formulas, defaults and the reference each follows. */

/* Hinton KD: T^2 * KL(softmax(t/T) || softmax(s/T)) summed over classes, batch mean. */
kdx_status kdx_loss_kd(const kdx_tensor *s, const kdx_tensor *t, double T, kdx_tensor **loss);
/* Cross entropy to the teacher's soft targets, -sum softmax(t/T) log softmax(s/T), batch mean; no T^2. */
kdx_status kdx_loss_soft_ce(const kdx_tensor *s, const kdx_tensor *t, double T, kdx_tensor **loss);
/* Decoupled KD: T^2 (alpha TCKD + beta NCKD), batch mean; C >= 2. */
kdx_status kdx_loss_dkd(const kdx_tensor *s, const kdx_tensor *t, const kdx_tensor *y, double alpha, double beta,
                        double T, kdx_tensor **loss);
/* Mean over all elements of (softmax(s/T) - softmax(t/T))^2. */
kdx_status kdx_loss_consistency(const kdx_tensor *s, const kdx_tensor *t, double T, kdx_tensor **loss);
/* Teacher-free KD: KL(softmax(q/T) || softmax(s)), batch mean, q the virtual teacher of labels y. */
kdx_status kdx_loss_tf_kd(const kdx_tensor *s, const kdx_tensor *y, double T, double correct_prob, kdx_tensor **loss);
/* FitNets hint: mean of (fs - ft)^2 over all elements; fs and ft of one shape. */
kdx_status kdx_loss_hint(const kdx_tensor *fs, const kdx_tensor *ft, kdx_tensor **loss);
/* Attention transfer on [B,C,H,W] maps (p >= 1): mean of (a_s - a_t)^2, a = normalize(mean_c |f|^p). */
kdx_status kdx_loss_at(const kdx_tensor *fs, const kdx_tensor *ft, double p, kdx_tensor **loss);
/* Similarity preserving: ||G_t - G_s||_F^2 / B^2, G = row-normalised F F^T of the flattened batch. */
kdx_status kdx_loss_sp(const kdx_tensor *fs, const kdx_tensor *ft, kdx_tensor **loss);
/* Relational KD: w_distance * distance term + w_angle * angle term (smooth L1); B >= 2. */
kdx_status kdx_loss_rkd(const kdx_tensor *es, const kdx_tensor *et, double w_distance, double w_angle,
                        kdx_tensor **loss);
/* Probabilistic knowledge transfer: KL of row-normalised cosine kernels, mean over B^2 entries (eps: 1e-7). */
kdx_status kdx_loss_pkt(const kdx_tensor *es, const kdx_tensor *et, double eps, kdx_tensor **loss);
/* Neural selectivity transfer: squared MMD with the kernel (x.y)^2 between normalised channel maps. */
kdx_status kdx_loss_nst(const kdx_tensor *fs, const kdx_tensor *ft, kdx_tensor **loss);
/* Correlation congruence (RepDistiller): mean_i sum_k d[i,k] d[i+1,k], d = |es - et|; B >= 2. */
kdx_status kdx_loss_cc(const kdx_tensor *es, const kdx_tensor *et, kdx_tensor **loss);
/* Label-smoothed targets [B,C] of dtype dt: 1 - smoothing + smoothing/C at y, smoothing/C elsewhere. */
kdx_status kdx_distill_label_smoothing(const kdx_tensor *y, int64_t C, double smoothing, kdx_dtype dt,
                                       kdx_tensor **out);
/* The virtual teacher [B,C]: correct_prob at y, (1 - correct_prob)/(C-1) elsewhere (C >= 2). */
kdx_status kdx_distill_virtual_teacher(const kdx_tensor *y, int64_t C, double correct_prob, kdx_dtype dt,
                                       kdx_tensor **out);
/* Targets from teacher logits t [B,C] (never recorded): soft: (1-smoothing) softmax(t/T) + smoothing/C;
   hard: argmax int64 [B], or its label_smoothing when smoothing > 0. [out] *mask: [B] 0/1 in t's dtype,
   1 where max softmax(t/T) >= threshold. */
kdx_status kdx_distill_pseudo_labels(const kdx_tensor *t, int soft, double T, double threshold, double smoothing,
                                     kdx_tensor **targets, kdx_tensor **mask);

/* ---- attribution (explanations) ----------------------------------------------------------- */

/* The model as a callback: *y = f(x) for a batch x [B, ...], with y [B] or
   [B, classes] (a new reference). Gradient methods call it with recording on
   and x requiring grad. A failure returns a status with kdx_fail's message. */
typedef kdx_status (*kdx_forward_fn)(void *ud, const kdx_tensor *x, kdx_tensor **y);
typedef struct kdx_model {
    kdx_forward_fn forward;
    void *ud;
} kdx_model;

/* Saliency: d f_target / d x per sample (|.| when abs_value), or, with
   times_input, x * d f / d x. target: int64 0-based classes [N] or one class
   (NULL when the model returns [N]). At most batch_size rows per call. */
kdx_status kdx_attr_saliency(const kdx_model *m, const kdx_tensor *x, const kdx_tensor *target, int abs_value,
                             int times_input, int64_t batch_size, kdx_tensor **out);

typedef enum kdx_ig_method {
    KDX_IG_GAUSS_LEGENDRE, KDX_IG_RIEMANN_LEFT, KDX_IG_RIEMANN_RIGHT, KDX_IG_RIEMANN_MIDDLE, KDX_IG_RIEMANN_TRAPEZOID
} kdx_ig_method;
/* Quadrature nodes alphas[0..n-1] on [0, 1] and weights summing to 1. */
kdx_status kdx_ig_quadrature(kdx_ig_method method, int n, double *alphas, double *weights);
/* Integrated gradients along the straight path from baseline (NULL: zeros;
   broadcast to x) to x, with `steps` quadrature points, evaluated at most
   batch_size path points per model call. delta (may be NULL) receives the
   completeness gap sum(attr) - (f(x) - f(baseline)) per sample [N]. */
kdx_status kdx_attr_integrated_gradients(const kdx_model *m, const kdx_tensor *x, const kdx_tensor *baseline,
                                         const kdx_tensor *target, int steps, kdx_ig_method method,
                                         int64_t batch_size, kdx_tensor **out, kdx_tensor **delta);

/* DeepLift, rescale rule applied per operation: the model runs on [x; baseline] rows and every
   elementwise nonlinear op passes back (f(u) - f(u0)) / (u - u0) instead of f'(u); attr =
   (x - baseline) * multipliers. baseline NULL: zeros; broadcast to x. batch_size >= 2 rows per call
   (half x, half baseline). delta (may be NULL): sum(attr) - (f(x) - f(baseline)) per sample [N]. */
kdx_status kdx_attr_deeplift(const kdx_model *m, const kdx_tensor *x, const kdx_tensor *baseline,
                             const kdx_tensor *target, int64_t batch_size, kdx_tensor **out, kdx_tensor **delta);
/* Guided backprop: the input gradient with every ReLU passing only positive gradients where its input is positive. */
kdx_status kdx_attr_guided_backprop(const kdx_model *m, const kdx_tensor *x, const kdx_tensor *target,
                                    int64_t batch_size, kdx_tensor **out);
/* Deconvolution (deconvnet): the input gradient with every ReLU's backward replaced by relu(gradient). */
kdx_status kdx_attr_deconvolution(const kdx_model *m, const kdx_tensor *x, const kdx_tensor *target,
                                  int64_t batch_size, kdx_tensor **out);
/* An attribution method as a callback for the noise tunnel: *attr = its
   attributions (x's shape and dtype, a new reference) for a batch x [B, ...]
   whose row r is a copy of sample ids[r] (int64 [B], 0-based), so the
   callback can pick each row's target. A failure returns kdx_fail's status. */
typedef kdx_status (*kdx_attr_fn)(void *ud, const kdx_tensor *x, const kdx_tensor *ids, kdx_tensor **attr);
typedef struct kdx_attr_method {
    kdx_attr_fn attribute;
    void *ud;
} kdx_attr_method;
typedef enum kdx_nt_type { KDX_NT_SMOOTHGRAD, KDX_NT_SMOOTHGRAD_SQ, KDX_NT_VARGRAD } kdx_nt_type;
/* Noise tunnel: the method at `samples` noisy copies x_i + N(0, s_i^2) of each sample, with
   s_i = stdev * (max - min of x_i), or stdev itself when absolute; returns the mean of the
   attributions (smoothgrad), of their squares (smoothgrad_sq) or their variance (vargrad).
   Noise is drawn from a generator seeded with seed, copy k of sample i being row i*samples+k;
   at most batch_size rows per call of the method. */
kdx_status kdx_attr_noise_tunnel(const kdx_attr_method *am, const kdx_tensor *x, kdx_nt_type type, int samples,
                                 double stdev, int absolute, uint64_t seed, int64_t batch_size, kdx_tensor **out);
/* GradientShap (expected gradients, as Captum): for each of `samples` draws per sample, a row of
   baselines [B, ...] and alpha ~ U(0,1), x~ = x + N(0, stdev^2); attr = mean of
   grad f(b + alpha (x~ - b)) * (x~ - b). delta (may be NULL): sum(attr) - (f(x) - mean_b f(b)) [N]. */
kdx_status kdx_attr_gradient_shap(const kdx_model *m, const kdx_tensor *x, const kdx_tensor *baselines,
                                  const kdx_tensor *target, int samples, double stdev, uint64_t seed,
                                  int64_t batch_size, kdx_tensor **out, kdx_tensor **delta);

/* A model with a named layer, for the layer attributions: runs the model on x [B, ...] (x may
   require grad; recording is on) and returns its outputs *y ([B] or [B, classes]) and the
   layer's output *act [B, ...], both new references in the graph. When replace is not NULL the
   layer's output is replaced by replace (the layer's shape for this batch) before the rest of
   the model runs. A failure returns a status with kdx_fail's message. */
typedef kdx_status (*kdx_layer_forward_fn)(void *ud, const kdx_tensor *x, const kdx_tensor *replace, kdx_tensor **y,
                                           kdx_tensor **act);
typedef struct kdx_layer_model {
    kdx_layer_forward_fn forward;
    void *ud;
} kdx_layer_model;
typedef enum kdx_cam_kind { KDX_CAM_GRADCAM, KDX_CAM_GRADCAM_PP } kdx_cam_kind;
/* Grad-CAM (weights = spatial mean of d f / d A) or Grad-CAM++ (as pytorch-grad-cam) of the
   layer's output A [N, K, ...]: sum_k w_k A_k as [N, 1, ...], ReLU'd when relu, and resized
   bilinearly to out_h x out_w when both are > 0 (4-D layers). */
kdx_status kdx_attr_gradcam(const kdx_layer_model *lm, const kdx_tensor *x, const kdx_tensor *target,
                            kdx_cam_kind kind, int relu, int64_t out_h, int64_t out_w, int64_t batch_size,
                            kdx_tensor **out);
/* The layer's output [N, ...], or with times_grad its product with d f / d (layer output). */
kdx_status kdx_attr_layer_activation(const kdx_layer_model *lm, const kdx_tensor *x, const kdx_tensor *target,
                                     int times_grad, int64_t batch_size, kdx_tensor **out);
/* Integrated gradients on the layer's output: the path from the layer's output at baseline
   (NULL: zeros) to that at x, applied by replacing the layer's output. delta (may be NULL):
   sum(attr) - (f(x) - f(baseline)) [N]. */
kdx_status kdx_attr_layer_integrated_gradients(const kdx_layer_model *lm, const kdx_tensor *x,
                                               const kdx_tensor *baseline, const kdx_tensor *target, int steps,
                                               kdx_ig_method method, int64_t batch_size, kdx_tensor **out,
                                               kdx_tensor **delta);
/* Layer conductance (Dhamdhere et al., as Captum): sum over steps + 1 points of the input path of
   (A(alpha_{k+1}) - A(alpha_k)) * d f / d A (alpha_k). delta as layer integrated gradients. */
kdx_status kdx_attr_layer_conductance(const kdx_layer_model *lm, const kdx_tensor *x, const kdx_tensor *baseline,
                                      const kdx_tensor *target, int steps, kdx_ig_method method, int64_t batch_size,
                                      kdx_tensor **out, kdx_tensor **delta);
/* Layer-wise relevance propagation (LRP) over a chain of layers. */
typedef enum kdx_lrp_type {
    KDX_LRP_LINEAR, KDX_LRP_CONV2D, KDX_LRP_BATCHNORM, KDX_LRP_RELU, KDX_LRP_MAXPOOL2D,
    KDX_LRP_AVGPOOL2D, KDX_LRP_FLATTEN, KDX_LRP_IDENTITY /* Dropout (as in eval), Identity */,
    KDX_LRP_ADAPTIVE_AVGPOOL2D
} kdx_lrp_type;
/* LRP rules; AUTO lets the composite choose. */
typedef enum kdx_lrp_rule {
    KDX_LRP_RULE_AUTO, KDX_LRP_RULE_EPSILON, KDX_LRP_RULE_GAMMA, KDX_LRP_RULE_ZPLUS, KDX_LRP_RULE_ZBOX,
    KDX_LRP_RULE_FLAT, KDX_LRP_RULE_WSQUARE, KDX_LRP_RULE_NORM, KDX_LRP_RULE_GRADIENT, KDX_LRP_RULE_PASS,
    KDX_LRP_RULE_FOLDED /* a BatchNorm merged into the layer before it */
} kdx_lrp_rule;
/* Rule presets, as Zennit's composites of the same names. */
typedef enum kdx_lrp_composite { KDX_LRP_EPSILON_PLUS, KDX_LRP_EPSILON_GAMMA_BOX, KDX_LRP_EPSILON_PLUS_FLAT } kdx_lrp_composite;
/* One layer of the chain: weight/bias for Linear, Conv2d, BatchNorm (bias,
   BatchNorm's weight may be NULL); running statistics and eps for BatchNorm;
   conv for Conv2d, pool for the pools, output_size for AdaptiveAvgPool2d,
   flatten dims (0-based, negative from the end) for Flatten. name (may be
   NULL) is used in messages. */
typedef struct kdx_lrp_layer {
    kdx_lrp_type type;
    kdx_lrp_rule rule;
    const char *name;
    const kdx_tensor *weight, *bias, *running_mean, *running_var;
    double eps;
    kdx_conv_opts conv;
    kdx_pool_opts pool;
    int64_t output_size[2];
    int flatten_start, flatten_end;
} kdx_lrp_layer;
/* Options of kdx_attr_lrp: epsilon of the epsilon rule, stabilizer of the
   other rules' denominators (Zennit's 1e-6), gamma of the gamma rule, z^B
   input bounds low/high (broadcast to one sample; needed only when a layer
   uses the zbox rule), at most batch_size rows per pass. */
typedef struct kdx_lrp_opts {
    kdx_lrp_composite composite;
    double epsilon, stabilizer, gamma;
    const kdx_tensor *low, *high;
    int64_t batch_size;
} kdx_lrp_opts;
/* The rule's name ("epsilon", "zplus", ...). */
const char *kdx_lrp_rule_name(kdx_lrp_rule r);
/* Folds an eval-mode BatchNorm (mean, var, eps, affine bn_w, bn_b, both may be
   NULL) into the Linear/Conv2d before it (w [O, ...], b [O] or NULL):
   w' = w * s, b' = (b - mean) * s + bn_b with s = bn_w / sqrt(var + eps).
   [out] *w_out, *b_out: new tensors; the inputs are not changed. */
kdx_status kdx_lrp_fold_batchnorm(const kdx_tensor *w, const kdx_tensor *b, const kdx_tensor *mean,
                                  const kdx_tensor *var, const kdx_tensor *bn_w, const kdx_tensor *bn_b, double eps,
                                  kdx_tensor **w_out, kdx_tensor **b_out);
/* LRP of the target output of the chain layers[0..n-1] at x. [out] *out:
   relevance of x's shape; *sums (may be NULL): [n + 1, N], row l the relevance
   summed over each sample at the input of layer l (row n: at the output);
   rules (may be NULL): n entries, the rule each layer used. */
kdx_status kdx_attr_lrp(const kdx_lrp_layer *layers, int n, const kdx_tensor *x, const kdx_tensor *target,
                        const kdx_lrp_opts *o, kdx_tensor **out, kdx_tensor **sums, kdx_lrp_rule *rules);
/* Occlusion (Captum): each window position (window[d] per sample dim, moved by
   strides[d], NULL: 1) set to the baseline; an element gets the mean over the
   windows covering it of f(x) - f(occluded x) (0 if none covers it). */
kdx_status kdx_attr_occlusion(const kdx_model *m, const kdx_tensor *x, const int64_t *window, const int64_t *strides,
                              const kdx_tensor *baseline, const kdx_tensor *target, int64_t batch_size, kdx_tensor **out);
/* Feature ablation (Captum): every element of group g gets f(x) - f(x with g := baseline); feature_mask as kdx__attr_groups (NULL: each element). */
kdx_status kdx_attr_feature_ablation(const kdx_model *m, const kdx_tensor *x, const kdx_tensor *feature_mask,
                                     const kdx_tensor *baseline, const kdx_tensor *target, int64_t batch_size,
                                     kdx_tensor **out);
/* Shapley value sampling (Captum): mean marginal contribution of each feature group over n_samples permutations from g. */
kdx_status kdx_attr_shapley_sampling(const kdx_model *m, const kdx_tensor *x, const kdx_tensor *feature_mask,
                                     const kdx_tensor *baseline, const kdx_tensor *target, int n_samples,
                                     kdx_generator *g, int64_t batch_size, kdx_tensor **out);
/* Pairwise Shapley interaction indices [N, M, M] (Grabisch & Roubens), samples coalitions per pair; diagonal: Shapley values from samples permutations. */
kdx_status kdx_attr_shapley_interactions(const kdx_model *m, const kdx_tensor *x, const kdx_tensor *feature_mask,
                                         const kdx_tensor *baseline, const kdx_tensor *target, int samples,
                                         kdx_generator *g, int64_t batch_size, kdx_tensor **out);

/* A score of full model outputs [N] or [N, C] (higher is better), for permutation importance. */
typedef kdx_status (*kdx_score_fn)(void *ud, const kdx_tensor *out, double *score);
typedef enum kdx_score_kind { KDX_SCORE_ACCURACY, KDX_SCORE_NEG_LOG_LOSS, KDX_SCORE_NEG_MSE } kdx_score_kind;
/* Built-in scores: accuracy and neg_log_loss (outputs are logits) of [N, C] against int64 0-based labels; -MSE of [N] against y. */
kdx_status kdx_explain_score(kdx_score_kind kind, const kdx_tensor *out, const kdx_tensor *y, double *score);
/* Permutation importance (sklearn) of X [N, M]: importances [nfeatures, repeats] = score(X) - score(X, column shuffled); column j's shuffles from a generator seeded from (one draw of g, j). features NULL: all. */
kdx_status kdx_explain_permutation_importance(const kdx_model *m, const kdx_tensor *X, kdx_score_fn score, void *ud,
                                              const int64_t *features, int64_t nfeatures, int repeats,
                                              kdx_generator *g, int64_t batch_size, kdx_tensor **importances,
                                              double *baseline);
/* The partial-dependence grid of column j of X [N, M] (float64): its unique values if fewer than G, else G points from the plo to the phi quantile. */
kdx_status kdx_explain_pd_grid(const kdx_tensor *X, int64_t j, int64_t grid_resolution, double plo, double phi,
                               kdx_tensor **out);
/* Partial dependence and ICE (sklearn, brute) of 1 or 2 features: grids[nf] (float64; grid_in NULL or grid_in[t] NULL: kdx_explain_pd_grid, else a copy of the 1-d grid_in[t]), average [G...], individual [N, G...]. */
kdx_status kdx_explain_partial_dependence(const kdx_model *m, const kdx_tensor *X, const int64_t *features, int nf,
                                          int64_t grid_resolution, double plo, double phi,
                                          const kdx_tensor *const *grid_in, const kdx_tensor *target,
                                          int64_t batch_size, kdx_tensor **grids, kdx_tensor **average,
                                          kdx_tensor **individual);
/* Friedman's H^2 [npairs] of feature pairs (pairs[2q], pairs[2q+1]) from centred PDs at up to `samples` data rows. */
kdx_status kdx_explain_h_statistic(const kdx_model *m, const kdx_tensor *X, const int64_t *pairs, int64_t npairs,
                                   int64_t samples, kdx_generator *g, const kdx_tensor *target, int64_t batch_size,
                                   kdx_tensor **out);
/* ---- surrogate explanations: KernelSHAP, LIME, SLIC, their regression ---- */

/* Weighted least squares / ridge in float64: min sum w (y - b0 - X beta)^2 +
   alpha |beta|^2 (b0 only with intercept, unpenalised), subject to a . beta = c
   when a is given. X [R, P], y [R], w [R] (NULL: ones), a [P] (NULL: no
   constraint). [out] *coef [P] float64 (new reference); *b0 and *r2 (the
   weighted R^2, as sklearn's score) may be NULL. Errors: KDX_ESTATE if singular. */
kdx_status kdx_linreg(const kdx_tensor *X, const kdx_tensor *y, const kdx_tensor *w, double alpha, int intercept,
                      const kdx_tensor *a, double c, kdx_tensor **coef, double *b0, double *r2);
/* KernelSHAP with one baseline (NULL: zeros, broadcast): Shapley values of the
   features of mask (NULL: every element; int64 0-based ids of one sample's
   shape or x's), from `samples` coalitions per sample (0: all 2^M - 2 when
   M <= 12, else 2M + 2048; all of them whenever samples >= 2^M - 2), paired
   with their complements when paired. [out] *out x's shape (each element its
   feature's value); *info (may be NULL) [N, 3] float64: f(baseline), f(x) and
   the efficiency gap sum(phi) - (f(x) - f(baseline)). g NULL: the default generator. */
kdx_status kdx_attr_kernel_shap(const kdx_model *m, const kdx_tensor *x, const kdx_tensor *baseline,
                                const kdx_tensor *mask, const kdx_tensor *target, int64_t samples, int paired,
                                kdx_generator *g, int64_t batch_size, kdx_tensor **out, kdx_tensor **info);
typedef enum kdx_lime_distance { KDX_LIME_EUCLIDEAN, KDX_LIME_COSINE } kdx_lime_distance;
typedef enum kdx_lime_selection {
    KDX_LIME_SELECT_NONE, KDX_LIME_SELECT_HIGHEST_WEIGHTS, KDX_LIME_SELECT_FORWARD, KDX_LIME_SELECT_AUTO
} kdx_lime_selection;
/* LIME's options: samples per input (the first one x itself), kernel width
   (<= 0: 0.75 sqrt(M)), distance of a binary sample to all-ones, ridge alpha,
   num_features (0: all) and how they are selected. */
typedef struct kdx_lime_opts {
    int64_t samples;
    double kernel_width;
    kdx_lime_distance distance;
    double alpha;
    int64_t num_features;
    kdx_lime_selection selection;
} kdx_lime_opts;
/* LIME with binary interpretable features (present = x, absent = baseline;
   mask and baseline as kdx_attr_kernel_shap): a weighted ridge fit of the
   outputs on Bernoulli(0.5) samples with kernel sqrt(exp(-d^2 / width^2)).
   [out] *out x's shape (each element its feature's coefficient, 0 when not
   selected); *info (may be NULL) [N, 3] float64: intercept, weighted R^2,
   the fit's prediction at x. */
kdx_status kdx_attr_lime(const kdx_model *m, const kdx_tensor *x, const kdx_tensor *baseline, const kdx_tensor *mask,
                         const kdx_tensor *target, const kdx_lime_opts *o, kdx_generator *g, int64_t batch_size,
                         kdx_tensor **out, kdx_tensor **info);
/* SLIC superpixels (Achanta et al. 2012) of images [N, C, H, W] (float; C = 3
   in [0, 1] is taken as sRGB and clustered in CIELAB, other C as is), about
   n_segments of them on a grid, with `compactness`, at most max_iter
   iterations, optional Gaussian smoothing sigma (0: none) and small segments
   merged into a neighbour. [out] *out int64 [N, H, W] 0-based labels,
   consecutive per image. */
kdx_status kdx_slic(const kdx_tensor *images, int64_t n_segments, double compactness, int max_iter, double sigma,
                    kdx_tensor **out);
/* ---- surrogates: a readable model fitted to a teacher (surrogate_*.c) ---------------------- */

/* Split quality of a surrogate tree: Gini 1 - sum p^2 or entropy -sum p log2 p. */
typedef enum kdx_tree_criterion { KDX_TREE_GINI, KDX_TREE_ENTROPY } kdx_tree_criterion;
/* CART options, as scikit-learn's DecisionTreeClassifier: max_depth < 0 is
   unlimited; max_features <= 0 searches every feature (then no randomness),
   else that many features drawn per node with a generator seeded by seed. */
typedef struct kdx_tree_options {
    int64_t max_depth, min_samples_split, min_samples_leaf, max_features;
    kdx_tree_criterion criterion;
    uint64_t seed;
} kdx_tree_options;
/* A fitted tree as flat arrays over its M nodes in pre-order (0 the root):
   feature int64 [M] (0-based; -1 at a leaf), threshold float64 [M] (x <=
   threshold goes left), left/right int64 [M] (-1 at a leaf), value float64
   [M, C] (the node's class distribution), impurity float64 [M], n_samples
   int64 [M], weighted_n float64 [M]. Each pointer owns one reference. */
typedef struct kdx_tree {
    kdx_tensor *feature, *threshold, *left, *right, *value, *impurity, *n_samples, *weighted_n;
} kdx_tree;
/* Releases a tree's arrays and sets them to NULL. */
void kdx_tree_clear(kdx_tree *t);
/* Fits a CART tree to x [N, F] (float) and targets y: int64 0-based classes
   [N] (n_classes of them, or max + 1 if larger) or probabilities float [N, C]
   (soft labels; each row normalised); weight (NULL: ones) float [N] >= 0.
   [out] *out: new arrays. Errors: KDX_ESHAPE, KDX_EDTYPE, KDX_EINVAL, KDX_ENOMEM. */
kdx_status kdx_surrogate_tree_fit(const kdx_tensor *x, const kdx_tensor *y, const kdx_tensor *weight,
                                  int64_t n_classes, const kdx_tree_options *o, kdx_tree *out);
/* The leaf (0-based node id) each row of x [N, F] ends in. [out] *leaf: int64 [N]. */
kdx_status kdx_surrogate_tree_apply(const kdx_tree *t, const kdx_tensor *x, kdx_tensor **leaf);

/* Sparse multinomial logistic regression options: l1 penalty, iteration cap,
   tolerance on the gradient mapping's max norm, whether to fit an intercept. */
typedef struct kdx_linear_options {
    double l1, tol;
    int64_t max_iter;
    int fit_intercept;
} kdx_linear_options;
/* Minimises sum_i w_i CE(y_i, softmax(W x_i + b)) / sum_i w_i + l1 * sum |W|
   (FISTA with backtracking and restarts, float64) for x [N, F] and y as in
   kdx_surrogate_tree_fit. [out] *coef float64 [C, F], *intercept float64 [C];
   n_iter (may be NULL) the iterations run. */
kdx_status kdx_surrogate_linear_fit(const kdx_tensor *x, const kdx_tensor *y, const kdx_tensor *weight,
                                    int64_t n_classes, const kdx_linear_options *o, kdx_tensor **coef,
                                    kdx_tensor **intercept, int64_t *n_iter);
/* The objective that kdx_surrogate_linear_fit minimises, at coef [C, F] and intercept [C]. */
kdx_status kdx_surrogate_linear_objective(const kdx_tensor *x, const kdx_tensor *y, const kdx_tensor *weight,
                                          const kdx_tensor *coef, const kdx_tensor *intercept, double l1,
                                          double *out);
/* ---- attribution metrics (attr_metrics.c, attr_similarity.c) ---- */

/* Per-sample similarity of two attributions (flattened; SSIM on maps). */
typedef enum kdx_sim_kind {
    KDX_SIM_SPEARMAN, KDX_SIM_PEARSON, KDX_SIM_KENDALL, KDX_SIM_TOPK, KDX_SIM_COSINE, KDX_SIM_SSIM
} kdx_sim_kind;
/* Similarity of a and b ([N, ...], same shape; SSIM: [N, H, W] or [N, 1, H, W], H, W >= 11) per
   sample: param is top-k's k (count >= 1 or fraction in (0, 1)) or SSIM's data range (<= 0:
   max - min of each pair). [out] *out float64 [N]; NaN where undefined (constant rows). */
kdx_status kdx_attr_similarity(kdx_sim_kind kind, const kdx_tensor *a, const kdx_tensor *b, double param,
                               kdx_tensor **out);

/* An explanation method as a callback: *attr = its attributions for rows x [B, ...] that
   belong to samples ids (int64 [B], 0-based), a new reference. */
typedef kdx_status (*kdx_explain_fn)(void *ud, const kdx_tensor *x, const kdx_tensor *ids, kdx_tensor **attr);
typedef struct kdx_explainer {
    kdx_explain_fn explain;
    void *ud;
} kdx_explainer;
/* A perturbation for infidelity: *noise = I for rows x of samples ids, *perturbed the input
   to evaluate (left NULL: x - I). New references. */
typedef kdx_status (*kdx_perturb_fn)(void *ud, const kdx_tensor *x, const kdx_tensor *ids, kdx_tensor **noise,
                                     kdx_tensor **perturbed);
typedef struct kdx_perturber {
    kdx_perturb_fn perturb;
    void *ud;
} kdx_perturber;
/* What every model-running metric shares: target (0-based classes or one class, NULL for a
   model returning [N]), baseline (NULL: zeros; broadcast to x), rows per model call, seed, and
   softmax (1: the target's probability instead of the raw output). */
typedef struct kdx_metric_opts {
    const kdx_tensor *target;
    const kdx_tensor *baseline;
    int64_t batch_size;
    uint64_t seed;
    int softmax;
} kdx_metric_opts;
/* Deletion (insertion = 0) or insertion curve: features (elements of attr, which is x's shape
   or broadcasts to it per sample) in descending attribution are set to the baseline (deletion)
   or taken from x into the baseline (insertion), steps equal chunks. [out] *curves [N, steps+1],
   *auc [N] (trapezoid on [0, 1]), float64. */
kdx_status kdx_metric_deletion(const kdx_model *m, const kdx_tensor *x, const kdx_tensor *attr,
                               const kdx_metric_opts *o, int steps, int insertion, kdx_tensor **curves,
                               kdx_tensor **auc);
/* Infidelity (Yeh et al., Captum): E_I[(I . attr - (f(x) - f(x - I)))^2] over n_samples
   perturbations I ~ N(0, noise_std^2) per element, or from p (may be NULL); normalize rescales
   attr by the least-squares beta first. [out] *out float64 [N]. */
kdx_status kdx_metric_infidelity(const kdx_model *m, const kdx_tensor *x, const kdx_tensor *attr,
                                 const kdx_metric_opts *o, const kdx_perturber *p, double noise_std, int n_samples,
                                 int normalize, kdx_tensor **out);
/* Max-sensitivity (Captum sensitivity_max): max over n_samples points x + U(-radius, radius)
   of ||e(x') - attr|| / ||attr|| (Frobenius; a zero norm divides by 1); attr NULL: e(x).
   [out] *out float64 [N]. */
kdx_status kdx_metric_max_sensitivity(const kdx_explainer *e, const kdx_tensor *x, const kdx_tensor *attr,
                                      const kdx_metric_opts *o, double radius, int n_samples, kdx_tensor **out);
/* Faithfulness correlation (Bhatt et al., Quantus): Pearson over nr_runs random subsets S of
   subset_size features of sum_{S} attr and f(x) - f(x with S at the baseline). [out] [N]. */
kdx_status kdx_metric_faithfulness_correlation(const kdx_model *m, const kdx_tensor *x, const kdx_tensor *attr,
                                               const kdx_metric_opts *o, int64_t subset_size, int nr_runs,
                                               kdx_tensor **out);
/* Completeness gap sum(attr) - (f(x) - f(baseline)) per sample. [out] *out float64 [N]. */
kdx_status kdx_metric_completeness(const kdx_model *m, const kdx_tensor *x, const kdx_tensor *attr,
                                   const kdx_metric_opts *o, kdx_tensor **out);
/* Sparseness (Gini index, Quantus): sorted v = |a| (abs) / max (normalise) + 1e-7,
   sum_i (2i - n - 1) v_i / (n sum v). [out] *out float64 [N]. */
kdx_status kdx_metric_sparseness(const kdx_tensor *attr, int abs_value, int normalise, kdx_tensor **out);
/* Complexity: entropy (natural log) of |a| / sum |a| per sample (0 for a zero row). [out] [N]. */
kdx_status kdx_metric_complexity(const kdx_tensor *attr, kdx_tensor **out);
/* Cascading randomisation (Adebayo et al.): layers 0..nlayers-1 (params[i] belongs to layer
   layer_of[i]) are redrawn in that order, U(-1/sqrt(fan_in), 1/sqrt(fan_in)) from seed,
   cumulatively; after each the explanation is recomputed and compared with attr (NULL: e(x))
   by sim (on |.| when abs_value). Row 0 compares the unchanged model. Parameters are restored
   on every path. [out] *out float64 [nlayers + 1, N]. */
kdx_status kdx_metric_randomization(const kdx_explainer *e, const kdx_tensor *x, const kdx_tensor *attr,
                                    const kdx_metric_opts *o, kdx_tensor *const *params, const int *layer_of,
                                    int nparams, int nlayers, kdx_sim_kind sim, double sim_param, int abs_value,
                                    kdx_tensor **out);

/* ---- autograd ------------------------------------------------------------------ */

/* Whether ops on this thread record the graph (on by default). */
int kdx_grad_enabled(void);
/* Turns recording on or off for this thread; returns the previous setting. */
int kdx_set_grad_enabled(int on);
/* 1 if t takes part in autograd (a leaf marked so, or a result of one). */
int kdx_tensor_requires_grad(const kdx_tensor *t);
/* Marks a leaf as a variable to differentiate with respect to. Errors:
   KDX_EDTYPE for int64; KDX_ESTATE to unmark a non-leaf. */
kdx_status kdx_tensor_set_requires_grad(kdx_tensor *t, int flag);
/* 1 if t was not made by a recorded op. */
int kdx_tensor_is_leaf(const kdx_tensor *t);
/* The gradient accumulated into a leaf by kdx_backward (borrowed; NULL if none). */
kdx_tensor *kdx_tensor_grad(const kdx_tensor *t);
/* Replaces t's gradient (g retained; NULL clears it). */
void kdx_tensor_set_grad(kdx_tensor *t, kdx_tensor *g);
/* Name of the op that made t ("mul", "conv2d", ...), or NULL for a leaf. */
const char *kdx_tensor_grad_fn_name(const kdx_tensor *t);
/* Counter of in-place writes to t's storage. */
int64_t kdx_tensor_version(const kdx_tensor *t);
/* A view of t's data outside the graph. [out]: new reference. */
kdx_status kdx_detach(const kdx_tensor *t, kdx_tensor **out);
/* Called by kdx_backward_hooked: first once with leaf NULL when the graph is
   known (kdx_backward_reaches then answers), then for each leaf whose
   gradient has received the last contribution of the pass (its .grad is
   final). Must not run autograd. */
typedef void (*kdx_grad_ready_fn)(void *ud, kdx_tensor *leaf);
/* During a kdx_backward_hooked pass on this thread: 1 if the pass reaches leaf (it may get a gradient). */
int kdx_backward_reaches(const kdx_tensor *leaf);
/* kdx_backward (no create_graph) calling ready(ud, leaf) for each leaf as soon
   as its gradient is complete, while the rest of the pass still runs: what
   data-parallel training needs to send gradients early. A leaf reached only
   through nodes that pass no gradient is not reported. Not for leaves that
   other threads differentiate at the same time. */
kdx_status kdx_backward_hooked(kdx_tensor *root, const kdx_tensor *grad, int retain_graph, kdx_grad_ready_fn ready,
                               void *ud);
/* Accumulates d(root)/d(leaf) into every leaf's gradient. grad (may be NULL
   for a one-element root) is d(loss)/d(root). With create_graph the pass is
   recorded (and the graph retained). */
kdx_status kdx_backward(kdx_tensor *root, const kdx_tensor *grad, int retain_graph, int create_graph);
/* grads[j] = sum_i d(outputs[i])/d(inputs[j]) weighted by grad_outputs[i]
   (NULL or NULL entries: ones, for one-element outputs), without touching any
   .grad. With create_graph the results are themselves differentiable.
   allow_unused: inputs the outputs do not depend on get zeros instead of an
   error. [out] grads[0..nin-1]: new references. */
kdx_status kdx_grad(const kdx_tensor *const *outputs, int nout, const kdx_tensor *const *grad_outputs,
                    const kdx_tensor *const *inputs, int nin, int retain_graph, int create_graph, int allow_unused,
                    kdx_tensor **grads);

/* ---- data readers ---------------------------------------------------------------- */

/* Reads an IDX file (MNIST's format), plain or gzip-compressed. Integer
   data become int64 (float32 with as_float), f32/f64 data keep their type.
   Errors: KDX_EIO (cannot open), KDX_EFORMAT (bad magic, truncated, extra data). */
kdx_status kdx_read_idx(const char *path, int as_float, kdx_tensor **out);

/* ---- images ------------------------------------------------------------------------ */

/* Reads a PNG (8- or 16-bit), JPEG, BMP, TGA, GIF (first frame) or another
   format stb_image knows into a new float32 [C,H,W] in [0,1], C the channels
   as stored: 1 gray, 2 gray+alpha, 3 RGB, 4 RGBA (a GIF decodes as RGBA).
   Errors: KDX_EIO (cannot open or read), KDX_EFORMAT (empty, not an image,
   corrupt or truncated: stb's reason in the message), KDX_ENOMEM; messages name the file. */
kdx_status kdx_read_image(const char *path, kdx_tensor **out);
/* As kdx_read_image for n bytes in memory; name (may be NULL) stands for them in messages. */
kdx_status kdx_decode_image(const void *data, size_t n, const char *name, kdx_tensor **out);
/* Writes float t [C,H,W] (C = 1..4) or [H,W] as an 8-bit PNG: values clamped
   to [0,1] and rounded to k/255 (NaN gives 0), so an 8-bit image read back is
   exact. Atomic (temporary file, fsync, rename). Errors: KDX_EDTYPE,
   KDX_ESHAPE (no 1..4 channels, or a side outside [1, 65535]), KDX_EIO. */
kdx_status kdx_write_png(const char *path, const kdx_tensor *t);
/* As kdx_write_png, a baseline JPEG at quality 1..100 (an alpha channel is
   dropped). Errors: also KDX_EINVAL for a quality out of range. */
kdx_status kdx_write_jpg(const char *path, const kdx_tensor *t, int quality);

/* ---- csv ------------------------------------------------------------------------ */

/* How kdx_read_csv numbers the classes of a label column (classes are 0-based in C). */
typedef enum kdx_csv_order {
    KDX_CSV_SORTED = 0, /* by value: numerically when every label is an integer, else bytewise */
    KDX_CSV_FIRST       /* in the order each value first appears in the file */
} kdx_csv_order;

/* kdx_csv_opts.label_column for a file without a label column. */
#define KDX_CSV_NO_LABEL (-2147483647 - 1)

/* Options of kdx_read_csv; start from kdx_csv_opts_default(). */
typedef struct kdx_csv_opts {
    char delimiter;              /* field separator, ',' by default; not '"', CR, LF or NUL */
    int header;                  /* 1 (default): the first line read names the columns */
    int64_t skip;                /* lines skipped before the header or the first row (0) */
    const char *label_name;      /* the label column by header name; NULL: use label_column */
    int label_column;            /* 0-based, negative from the end (-1, the last, by default);
                                    KDX_CSV_NO_LABEL for none */
    kdx_csv_order order;         /* class numbering when classes is NULL (KDX_CSV_SORTED) */
    const char *const *classes;  /* NULL, or the nclasses label values in class order: */
    int nclasses;                /* any other value in the file is then an error */
} kdx_csv_opts;

/* A parsed CSV file: a float64 matrix of the numeric columns, the label
   column as class indices and the names of both. */
typedef struct kdx_csv kdx_csv;

/* Delimiter ',', a header, no skipped lines, the last column as label, sorted classes. */
kdx_csv_opts kdx_csv_opts_default(void);
/* Reads a CSV file, plain or gzip-compressed. Lines end in LF, CRLF or CR;
   empty lines are ignored; a UTF-8 byte-order mark is skipped; fields may be
   quoted ("a ""b"", c"), spaces around a field are dropped. Every column but
   the label must hold numbers (decimal, exponent, nan, inf; no empty cells);
   the label column may hold any text. o NULL means the defaults. Messages
   number lines and columns from 1, as text editors do. [out] *out: free with
   kdx_csv_free. Errors: KDX_EIO (cannot open), KDX_EFORMAT (a bad cell,
   ragged row, bad quoting, invalid UTF-8 in a name, no rows, corrupt gzip:
   named by line and column), KDX_EINDEX (no such label column), KDX_EINVAL
   (bad options), KDX_ENOMEM. */
kdx_status kdx_read_csv(const char *path, const kdx_csv_opts *o, kdx_csv **out);
/* Frees a parsed file and its references to its tensors (NULL is fine). */
void kdx_csv_free(kdx_csv *c);
/* The numeric columns, float64 [rows, features] (borrowed; retain to keep it). */
kdx_tensor *kdx_csv_features(const kdx_csv *c);
/* The label column as 0-based int64 class indices [rows] (borrowed), or NULL without a label column. */
kdx_tensor *kdx_csv_labels(const kdx_csv *c);
/* Header name of numeric column j (0 <= j < features), or NULL (no header, out of range). */
const char *kdx_csv_feature_name(const kdx_csv *c, int j);
/* The label column's 0-based position in the file, or -1 without one. */
int kdx_csv_label_column(const kdx_csv *c);
/* The label column's header name, or NULL (no header or no label column). */
const char *kdx_csv_label_name(const kdx_csv *c);
/* Number of classes (0 without a label column). */
int kdx_csv_class_count(const kdx_csv *c);
/* The label text of class k (0-based), or NULL out of range. */
const char *kdx_csv_class_name(const kdx_csv *c, int k);

/* ---- optimizer steps (in place, outside the graph; PyTorch's update rules) --------------- */

/* SGD: d = grad (+ weight_decay*param); with momentum, buf = first ? d :
   momentum*buf + (1-dampening)*d and d = nesterov ? d + momentum*buf : buf;
   param -= lr*d. buf may be NULL when momentum is 0. */
kdx_status kdx_sgd_step(kdx_tensor *param, const kdx_tensor *grad, kdx_tensor *buf, double lr, double momentum,
                        double dampening, double weight_decay, int nesterov, int maximize, int first);
/* Adam (decoupled = 0: L2 weight decay) or AdamW (decoupled = 1) at step
   >= 1; max_sq (may be NULL) turns on AMSGrad. */
kdx_status kdx_adam_step(kdx_tensor *param, const kdx_tensor *grad, kdx_tensor *exp_avg, kdx_tensor *exp_avg_sq,
                         kdx_tensor *max_sq, int64_t step, double lr, double beta1, double beta2, double eps,
                         double weight_decay, int decoupled, int maximize);
/* RMSprop; buf (momentum) and grad_avg (centered) may be NULL. */
kdx_status kdx_rmsprop_step(kdx_tensor *param, const kdx_tensor *grad, kdx_tensor *square_avg, kdx_tensor *buf,
                            kdx_tensor *grad_avg, double lr, double alpha, double eps, double weight_decay,
                            double momentum, int maximize);

/* ---- checkpoints (safetensors) ------------------------------------------------ */

/* Writes n tensors under names[i] and nmeta string pairs as __metadata__ to a
   safetensors file. Tensors go in the reference writer's order (int64, then
   float64, then float32; by name within a dtype), contiguous, little-endian.
   Atomic: the data goes to a temporary file in path's directory, is fsynced
   and renamed over path; on failure path is untouched and the temporary is
   removed. Errors: KDX_EINVAL (duplicate or reserved names, invalid UTF-8),
   KDX_EIO (with the system's reason), KDX_ENOMEM. */
kdx_status kdx_save_safetensors(const char *path, int n, const char *const *names, const kdx_tensor *const *tensors,
                                int nmeta, const char *const *meta_keys, const char *const *meta_values);

/* The tensors and metadata of a loaded safetensors file. */
typedef struct kdx_safetensors kdx_safetensors;

/* Reads and validates a whole safetensors file. F32, F64, I64 load as they
   are; I32, I16, I8, U32, U16, U8, BOOL become int64; F16, BF16 become
   float32. [out] *out: free with kdx_safetensors_free. Errors: KDX_EIO (cannot
   open or read), KDX_EFORMAT (corrupt, truncated or unsupported content),
   KDX_ENOMEM; messages name the file. */
kdx_status kdx_load_safetensors(const char *path, kdx_safetensors **out);
/* Frees a loaded file and its references to the tensors (NULL is fine). */
void kdx_safetensors_free(kdx_safetensors *st);
/* Number of tensors in st. */
int kdx_safetensors_count(const kdx_safetensors *st);
/* Name of tensor i (0 <= i < count; sorted bytewise), or NULL out of range. */
const char *kdx_safetensors_name(const kdx_safetensors *st, int i);
/* Tensor i, borrowed: retain it to keep it after kdx_safetensors_free. */
kdx_tensor *kdx_safetensors_tensor(const kdx_safetensors *st, int i);
/* The dtype tensor i had in the file ("F32", "BF16", "BOOL", ...). */
const char *kdx_safetensors_file_dtype(const kdx_safetensors *st, int i);
/* Index of the tensor called name, or -1. */
int kdx_safetensors_find(const kdx_safetensors *st, const char *name);
/* Number of __metadata__ entries. */
int kdx_safetensors_meta_count(const kdx_safetensors *st);
/* Key of metadata entry i (sorted bytewise), or NULL out of range. */
const char *kdx_safetensors_meta_key(const kdx_safetensors *st, int i);
/* Value of metadata entry i, or NULL out of range. */
const char *kdx_safetensors_meta_value(const kdx_safetensors *st, int i);

#ifdef __cplusplus
}
#endif
#endif /* KDX_H */
