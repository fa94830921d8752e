/* optim.c — optimizer update rules, fused and in place, with PyTorch's
   formulas and order of operations (torch/optim/{sgd,adam,rmsprop}.py, the
   single-tensor path), so that a kdx run and a PyTorch run agree to float
   rounding. A parameter is updated outside the graph: these kernels bump its
   version, as any in-place write does, but do not refuse leaves. */
#include "kdx_internal.h"

#include <math.h>
#include <string.h>

/* The tensors of one update: all contiguous, same shape, same float dtype. */
static kdx_status check_state(const char *fname, const kdx_tensor *param, const kdx_tensor *const *others,
                              const char *const *names, int n)
{
    KDX_TRY(kdx__check_float(fname, "param", param));
    if (!kdx_tensor_is_contiguous(param)) return kdx_fail(KDX_EINVAL, "%s: param must be contiguous", fname);
    for (int i = 0; i < n; i++) {
        const kdx_tensor *t = others[i];
        if (!t) continue;
        if (t->dtype != param->dtype || !kdx__same_shape(t, param) || !kdx_tensor_is_contiguous(t))
            return kdx_fail(KDX_ESHAPE, "%s: %s must be a contiguous %s tensor of shape %s, got %s %s", fname, names[i],
                            kdx_dtype_name(param->dtype), kdx__shp(param), kdx_dtype_name(t->dtype), kdx__shp(t));
    }
    return KDX_OK;
}

/* Each rule is written once over T (float or double); "S" is the scalar
   type PyTorch computes the hyper-parameters in for that dtype. */
#define SGD_LOOP(T)                                                                  \
    do {                                                                             \
        T *p = (T *)kdx__base(param), *b = buf ? (T *)kdx__base(buf) : NULL;        \
        const T *g = (const T *)kdx__base(grad);                                     \
        const T lr_ = (T)lr, wd = (T)weight_decay, mom = (T)momentum, damp = (T)(1 - dampening); \
        for (int64_t i = 0; i < n; i++) {                                            \
            T d = maximize ? -g[i] : g[i];                                           \
            if (weight_decay != 0) d = d + wd * p[i];                                \
            if (momentum != 0) {                                                     \
                b[i] = first ? d : mom * b[i] + damp * d;                            \
                d = nesterov ? d + mom * b[i] : b[i];                                \
            }                                                                        \
            p[i] = p[i] - lr_ * d;                                                   \
        }                                                                            \
    } while (0)

kdx_status kdx_sgd_step(kdx_tensor *param, const kdx_tensor *grad, kdx_tensor *buf, double lr, double momentum,
                        double dampening, double weight_decay, int nesterov, int maximize, int first)
{
    const kdx_tensor *others[2] = {grad, buf};
    const char *names[2] = {"grad", "momentum buffer"};
    KDX_TRY(kdx__arg("sgd_step", "grad", grad));
    KDX_TRY(check_state("sgd_step", param, others, names, 2));
    if (momentum != 0 && !buf) return kdx_fail(KDX_EINVAL, "sgd_step: momentum needs a buffer");
    int64_t n = kdx_tensor_numel(param);
    if (param->dtype == KDX_DTYPE_F32) SGD_LOOP(float);
    else SGD_LOOP(double);
    kdx__bump(param);
    if (buf) kdx__bump(buf);
    return KDX_OK;
}

/* m.lerp_(g, w) as PyTorch computes lerp (two forms for accuracy). */
#define LERP(a, b, w) ((w) < 0.5 ? (a) + (w) * ((b) - (a)) : (b) - ((b) - (a)) * (1 - (w)))

#define ADAM_LOOP(T)                                                                       \
    do {                                                                                   \
        T *p = (T *)kdx__base(param), *m = (T *)kdx__base(exp_avg), *v = (T *)kdx__base(exp_avg_sq); \
        T *vm = max_sq ? (T *)kdx__base(max_sq) : NULL;                                    \
        const T *g = (const T *)kdx__base(grad);                                           \
        const T w1 = (T)(1 - beta1), b2 = (T)beta2, c2 = (T)(1 - beta2), e = (T)eps;       \
        const T step_size = (T)(lr / bc1), bc2s = (T)sqrt(bc2), wd = (T)weight_decay;      \
        const T shrink = (T)(1 - lr * weight_decay);                                       \
        for (int64_t i = 0; i < n; i++) {                                                  \
            T d = maximize ? -g[i] : g[i];                                                 \
            if (weight_decay != 0) {                                                       \
                if (decoupled) p[i] = p[i] * shrink;                                       \
                else d = d + wd * p[i];                                                    \
            }                                                                              \
            m[i] = LERP(m[i], d, w1);                                                      \
            v[i] = v[i] * b2 + c2 * d * d;                                                 \
            T s = v[i];                                                                    \
            if (vm) s = vm[i] = vm[i] > v[i] ? vm[i] : v[i];                               \
            T denom = (T)sqrt(s) / bc2s + e;                                               \
            p[i] = p[i] + (-step_size * m[i]) / denom; /* addcdiv: (value * t1) / t2 */   \
        }                                                                                  \
    } while (0)

kdx_status kdx_adam_step(kdx_tensor *param, const kdx_tensor *grad, kdx_tensor *exp_avg, kdx_tensor *exp_avg_sq,
                         kdx_tensor *max_sq, int64_t step, double lr, double beta1, double beta2, double eps,
                         double weight_decay, int decoupled, int maximize)
{
    const kdx_tensor *others[4] = {grad, exp_avg, exp_avg_sq, max_sq};
    const char *names[4] = {"grad", "exp_avg", "exp_avg_sq", "max_exp_avg_sq"};
    KDX_TRY(kdx__arg("adam_step", "grad", grad));
    KDX_TRY(kdx__arg("adam_step", "exp_avg", exp_avg));
    KDX_TRY(kdx__arg("adam_step", "exp_avg_sq", exp_avg_sq));
    KDX_TRY(check_state("adam_step", param, others, names, 4));
    if (step < 1) return kdx_fail(KDX_EINVAL, "adam_step: step must be >= 1, got %lld", (long long)step);
    double bc1 = 1 - pow(beta1, (double)step), bc2 = 1 - pow(beta2, (double)step);
    int64_t n = kdx_tensor_numel(param);
    if (param->dtype == KDX_DTYPE_F32) ADAM_LOOP(float);
    else ADAM_LOOP(double);
    kdx__bump(param);
    return KDX_OK;
}

#define RMSPROP_LOOP(T)                                                                   \
    do {                                                                                  \
        T *p = (T *)kdx__base(param), *sq = (T *)kdx__base(square_avg);                   \
        T *b = buf ? (T *)kdx__base(buf) : NULL, *ga = grad_avg ? (T *)kdx__base(grad_avg) : NULL; \
        const T *g = (const T *)kdx__base(grad);                                          \
        const T a = (T)alpha, c = (T)(1 - alpha), e = (T)eps, wd = (T)weight_decay;       \
        const T lr_ = (T)lr, mom = (T)momentum;                                           \
        for (int64_t i = 0; i < n; i++) {                                                 \
            T d = maximize ? -g[i] : g[i];                                                \
            if (weight_decay != 0) d = d + wd * p[i];                                     \
            sq[i] = sq[i] * a + c * d * d;                                                \
            T avg;                                                                        \
            if (ga) {                                                                     \
                ga[i] = LERP(ga[i], d, c);                                                \
                avg = (T)sqrt(sq[i] - ga[i] * ga[i]) + e;                                 \
            } else {                                                                      \
                avg = (T)sqrt(sq[i]) + e;                                                 \
            }                                                                             \
            if (b) {                                                                      \
                b[i] = b[i] * mom + d / avg; /* addcdiv with value 1 */                   \
                p[i] = p[i] - lr_ * b[i];                                                 \
            } else {                                                                      \
                p[i] = p[i] + (-lr_ * d) / avg;                                           \
            }                                                                             \
        }                                                                                 \
    } while (0)

kdx_status kdx_rmsprop_step(kdx_tensor *param, const kdx_tensor *grad, kdx_tensor *square_avg, kdx_tensor *buf,
                            kdx_tensor *grad_avg, double lr, double alpha, double eps, double weight_decay,
                            double momentum, int maximize)
{
    const kdx_tensor *others[4] = {grad, square_avg, buf, grad_avg};
    const char *names[4] = {"grad", "square_avg", "momentum buffer", "grad_avg"};
    KDX_TRY(kdx__arg("rmsprop_step", "grad", grad));
    KDX_TRY(kdx__arg("rmsprop_step", "square_avg", square_avg));
    KDX_TRY(check_state("rmsprop_step", param, others, names, 4));
    if (momentum != 0 && !buf) return kdx_fail(KDX_EINVAL, "rmsprop_step: momentum needs a buffer");
    int64_t n = kdx_tensor_numel(param);
    if (param->dtype == KDX_DTYPE_F32) RMSPROP_LOOP(float);
    else RMSPROP_LOOP(double);
    kdx__bump(param);
    return KDX_OK;
}
