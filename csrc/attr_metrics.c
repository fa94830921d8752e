/* attr_metrics.c — how good an attribution is, by running the model:
 * deletion/insertion curves, infidelity, max-sensitivity, faithfulness
 * correlation, completeness and the cascading randomisation check (the
 * model-free sparseness and complexity live in attr_similarity.c).
 *
 * The metrics that run the model build perturbed copies of x row by row in
 * float64 (row r belongs to one sample), and evaluate them in chunks of at
 * most batch_size rows through the kdx_model callback — one memory bound for
 * all of them. Random draws are made row by row in row order from a local
 * generator, so results depend on the seed and not on batch_size.
 *
 * A "feature" is one element of attr; attr has x's shape or broadcasts to it
 * per sample (a map [N, 1, H, W] for images [N, C, H, W]), and a feature
 * covers every element of x it broadcasts over. */
#include "attr_metrics.h"

#include <math.h>
#include <string.h>

/* ---- evaluating rows ---- */

/* out[0..B) = the selected outputs (probabilities with o->softmax) for a chunk
   xb whose rows belong to samples ids. */
static kdx_status chunk_outputs(const char *fname, const kdx_model *m, const kdx_metric_opts *o, const kdx_tensor *xb,
                                const kdx_tensor *ids, int64_t N, double *out)
{
    kdx_tensor *y = NULL, *p = NULL, *rt = NULL, *sel = NULL, *sd = NULL;
    int was = kdx_set_grad_enabled(0);
    kdx_status s = kdx__attr_call(fname, m, xb, &y);
    if (s == KDX_OK && o->softmax) {
        if (y->ndim != 2)
            s = kdx_fail(KDX_ESHAPE, "%s: softmax needs model outputs [N, classes], got %s", fname, kdx__shp(y));
        else
            s = kdx_softmax(y, 1, &p);
    } else if (s == KDX_OK) {
        p = kdx_tensor_retain(y);
    }
    if (s == KDX_OK) s = kdx__attr_row_targets(fname, o->target, N, ids, &rt);
    if (s == KDX_OK) s = kdx__select_target(fname, p, rt, 0, &sel);
    kdx_set_grad_enabled(was);
    if (s == KDX_OK) s = kdx__f64(sel, &sd);
    if (s == KDX_OK) memcpy(out, kdx_tensor_data(sd), (size_t)kdx_tensor_numel(sd) * sizeof(double));
    KDX_RELEASE(y, p, rt, sel, sd);
    return s;
}

/* Writes row r (x's per-sample shape, float64) and says which sample it belongs to. */
typedef void (*fill_fn)(void *ud, int64_t r, double *row, int64_t *sample);

/* A float64 buffer [n, x's per-sample shape] and int64 ids [n]. */
static kdx_status new_chunk(const char *fname, const kdx_tensor *x, int64_t n, kdx_tensor **rowsd, kdx_tensor **ids)
{
    int64_t shape[KDX_MAX_DIMS];
    memcpy(shape, x->shape, sizeof shape);
    shape[0] = n;
    KDX_TRY(kdx__new_raw(fname, KDX_DTYPE_F64, x->ndim, shape, rowsd));
    kdx_status s = kdx__new_raw(fname, KDX_DTYPE_I64, 1, &n, ids);
    if (s != KDX_OK) {
        kdx_tensor_release(*rowsd);
        *rowsd = NULL;
    }
    return s;
}

/* The model's selected output for rows 0..R-1 made by fill, batch_size rows
   per call: out[r]. fill is called in row order. */
static kdx_status eval_rows(const char *fname, const kdx_model *m, const kdx_metric_opts *o, const kdx_tensor *x,
                            int64_t R, fill_fn fill, void *ud, double *out)
{
    int64_t N = x->shape[0], P = kdx_tensor_numel(x) / N, chunk = kdx__min64(o->batch_size, R);
    kdx_status s = KDX_OK;
    for (int64_t lo = 0; lo < R && s == KDX_OK; lo += chunk) {
        int64_t n = kdx__min64(chunk, R - lo);
        kdx_tensor *rd = NULL, *ids = NULL, *xb = NULL;
        s = new_chunk(fname, x, n, &rd, &ids);
        if (s == KDX_OK) {
            double *buf = kdx_tensor_data(rd);
            int64_t *id = kdx_tensor_data(ids);
            for (int64_t j = 0; j < n; j++) fill(ud, lo + j, buf + j * P, id + j);
            bool was = kdx__grad_pause();
            s = kdx_to(rd, x->dtype, &xb);
            kdx__grad_restore(was);
        }
        if (s == KDX_OK) s = chunk_outputs(fname, m, o, xb, ids, N, out + lo);
        KDX_RELEASE(rd, ids, xb);
    }
    return s;
}

/* Row r is sample r of x itself (or of the baseline). */
typedef struct {
    const double *src;
    int64_t P;
} plain_rows;

static void fill_plain(void *ud, int64_t r, double *row, int64_t *sample)
{
    plain_rows *p = ud;
    memcpy(row, p->src + r * p->P, (size_t)p->P * sizeof(double));
    *sample = r;
}

/* f(rows of src) for the N samples. */
static kdx_status eval_plain(const char *fname, const kdx_model *m, const kdx_metric_opts *o, const kdx_tensor *x,
                             const double *src, double *out)
{
    int64_t N = x->shape[0];
    plain_rows p = {src, kdx_tensor_numel(x) / N};
    return eval_rows(fname, m, o, x, N, fill_plain, &p, out);
}

/* ---- inputs ---- */

/* Refuses more perturbed rows than any buffer here could index. */
static kdx_status check_rows(const char *fname, int64_t N, int64_t per)
{
    if (per > 0 && N > ((int64_t)1 << 40) / per)
        return kdx_fail(KDX_EINVAL, "%s: %lld samples x %lld perturbations are too many rows", fname, (long long)N,
                        (long long)per);
    return KDX_OK;
}

/* Common checks; *xd, *bd: float64 copies of x and the baseline broadcast to x. */
static kdx_status prepare(const char *fname, const kdx_model *m, const kdx_tensor *x, const kdx_metric_opts *o,
                          kdx_tensor **xd, kdx_tensor **bd)
{
    if (!o) return kdx_fail(KDX_EINVAL, "%s: options are NULL", fname);
    KDX_TRY(kdx__attr_check(fname, m, x, o->batch_size));
    kdx_tensor *be = NULL;
    kdx_status s = kdx__f64(x, xd);
    if (s == KDX_OK && o->baseline) s = kdx__check_float(fname, "baseline", o->baseline);
    if (s == KDX_OK && o->baseline) s = kdx_expand(o->baseline, x->ndim, x->shape, &be);
    if (s == KDX_OK && bd) s = be ? kdx_clone(be, bd) : kdx_zeros(KDX_DTYPE_F64, x->ndim, x->shape, bd);
    if (s == KDX_OK && bd && be && (*bd)->dtype != KDX_DTYPE_F64) {
        kdx_tensor *t = *bd;
        *bd = NULL;
        s = kdx__f64(t, bd);
        kdx_tensor_release(t);
    }
    kdx_tensor_release(be);
    if (s != KDX_OK) {
        kdx_tensor_release(*xd);
        *xd = NULL;
    }
    return s;
}

/* fmap[p] = the feature (element of attr's sample) that covers element p of
   x's sample; *d = features per sample; *ad = attr as float64. */
static kdx_status feature_map(const char *fname, const kdx_tensor *x, const kdx_tensor *attr, int64_t **fmap,
                              int64_t *d, kdx_tensor **ad)
{
    KDX_TRY(kdx__check_float(fname, "attr", attr));
    bool ok = attr->ndim == x->ndim && attr->shape[0] == x->shape[0];
    for (int k = 1; ok && k < x->ndim; k++) ok = attr->shape[k] == x->shape[k] || attr->shape[k] == 1;
    if (!ok)
        return kdx_fail(KDX_ESHAPE, "%s: attr %s must have x's shape %s or broadcast to it per sample", fname,
                        kdx__shp(attr), kdx__shp(x));
    int64_t N = x->shape[0], P = kdx_tensor_numel(x) / N;
    *d = kdx_tensor_numel(attr) / N;
    int64_t *map = kdx__malloc_raw((size_t)P * sizeof *map);
    if (!map) return kdx_fail(KDX_ENOMEM, "%s: out of memory", fname);
    int64_t astride[KDX_MAX_DIMS], idx[KDX_MAX_DIMS] = {0};
    kdx__contig_strides(attr->ndim, attr->shape, astride);
    for (int64_t p = 0; p < P; p++) {
        int64_t f = 0;
        for (int k = 1; k < x->ndim; k++) f += attr->shape[k] == 1 ? 0 : idx[k] * astride[k];
        map[p] = f;
        for (int k = x->ndim - 1; k >= 1; k--) { /* next multi-index, last dim fastest */
            if (++idx[k] < x->shape[k]) break;
            idx[k] = 0;
        }
    }
    kdx_status s = kdx__f64(attr, ad);
    if (s != KDX_OK) {
        kdx__free(map, (size_t)P * sizeof *map);
        return s;
    }
    *fmap = map;
    return KDX_OK;
}

static kdx_status new_f64(const char *fname, int ndim, const int64_t *shape, kdx_tensor **out, double **data)
{
    KDX_TRY(kdx__new(fname, KDX_DTYPE_F64, ndim, shape, out));
    *data = kdx_tensor_data(*out);
    return KDX_OK;
}

/* ---- deletion / insertion ---- */

typedef struct {
    const double *x, *b;
    const int64_t *fmap, *rank; /* rank[i*d + f]: position of feature f of sample i in descending attr */
    int64_t P, d;
    int steps, insertion;
} causal_rows;

static void fill_causal(void *ud, int64_t r, double *row, int64_t *sample)
{
    causal_rows *c = ud;
    int64_t i = r / (c->steps + 1), k = r % (c->steps + 1);
    int64_t nk = (int64_t)((double)k * (double)c->d / c->steps); /* features moved after k steps; all at the end */
    if (k == c->steps) nk = c->d;
    const double *x = c->x + i * c->P, *b = c->b + i * c->P;
    const int64_t *rank = c->rank + i * c->d;
    for (int64_t p = 0; p < c->P; p++) {
        int moved = rank[c->fmap[p]] < nk;
        row[p] = (moved != c->insertion) ? b[p] : x[p];
    }
    *sample = i;
}

kdx_status kdx_metric_deletion(const kdx_model *m, const kdx_tensor *x, const kdx_tensor *attr,
                               const kdx_metric_opts *o, int steps, int insertion, kdx_tensor **curves,
                               kdx_tensor **auc)
{
    const char *fname = insertion ? "insertion" : "deletion";
    if (steps < 1 || steps > 100000) return kdx_fail(KDX_EINVAL, "%s: steps must be in [1, 100000], got %d", fname, steps);
    kdx_tensor *xd = NULL, *bd = NULL, *ad = NULL, *cv = NULL, *au = NULL;
    KDX_TRY(check_rows(fname, x && x->ndim ? x->shape[0] : 0, (int64_t)steps + 1));
    KDX_TRY(prepare(fname, m, x, o, &xd, &bd));
    int64_t N = x->shape[0], P = kdx_tensor_numel(x) / N, d = 0, *fmap = NULL, *rank = NULL, *tmp = NULL;
    kdx_status s = feature_map(fname, x, attr, &fmap, &d, &ad);
    if (s == KDX_OK) {
        rank = kdx__malloc_raw((size_t)(N * d + 2 * d) * sizeof *rank);
        if (!rank) s = kdx_fail(KDX_ENOMEM, "%s: out of memory", fname);
    }
    if (s == KDX_OK) {
        int64_t *idx = rank + N * d;
        tmp = idx + d;
        const double *a = kdx_tensor_data(ad);
        for (int64_t i = 0; i < N; i++) {
            kdx__argsort(a + i * d, d, 1, idx, tmp);
            for (int64_t j = 0; j < d; j++) rank[i * d + idx[j]] = j;
        }
    }
    int64_t cshape[2] = {N, (int64_t)steps + 1};
    double *c = NULL, *u = NULL;
    if (s == KDX_OK) s = new_f64(fname, 2, cshape, &cv, &c);
    if (s == KDX_OK) s = new_f64(fname, 1, &N, &au, &u);
    if (s == KDX_OK) {
        causal_rows cr = {kdx_tensor_data(xd), kdx_tensor_data(bd), fmap, rank, P, d, steps, insertion};
        s = eval_rows(fname, m, o, x, N * (steps + 1), fill_causal, &cr, c);
    }
    if (s == KDX_OK)
        for (int64_t i = 0; i < N; i++) {
            double area = 0;
            for (int k = 0; k < steps; k++) area += (c[i * (steps + 1) + k] + c[i * (steps + 1) + k + 1]) / 2;
            u[i] = area / steps;
        }
    if (rank) kdx__free(rank, (size_t)(N * d + 2 * d) * sizeof *rank);
    if (fmap) kdx__free(fmap, (size_t)P * sizeof *fmap);
    KDX_RELEASE(xd, bd, ad);
    if (s != KDX_OK) {
        KDX_RELEASE(cv, au);
        return s;
    }
    *curves = cv;
    *auc = au;
    return KDX_OK;
}

/* ---- completeness ---- */

kdx_status kdx_metric_completeness(const kdx_model *m, const kdx_tensor *x, const kdx_tensor *attr,
                                   const kdx_metric_opts *o, kdx_tensor **out)
{
    const char *fname = "completeness";
    kdx_tensor *xd = NULL, *bd = NULL, *ad = NULL, *r = NULL;
    KDX_TRY(prepare(fname, m, x, o, &xd, &bd));
    int64_t N = x->shape[0];
    double *g = NULL, *fb = NULL;
    kdx_status s = kdx__check_float(fname, "attr", attr);
    if (s == KDX_OK && (attr->ndim < 1 || attr->shape[0] != N))
        s = kdx_fail(KDX_ESHAPE, "%s: attr %s must be a batch of %lld samples", fname, kdx__shp(attr), (long long)N);
    if (s == KDX_OK) s = kdx__f64(attr, &ad);
    if (s == KDX_OK) s = new_f64(fname, 1, &N, &r, &g);
    if (s == KDX_OK) {
        fb = kdx__malloc_raw((size_t)N * sizeof *fb);
        if (!fb) s = kdx_fail(KDX_ENOMEM, "%s: out of memory", fname);
    }
    if (s == KDX_OK) s = eval_plain(fname, m, o, x, kdx_tensor_data(xd), g);
    if (s == KDX_OK) s = eval_plain(fname, m, o, x, kdx_tensor_data(bd), fb);
    if (s == KDX_OK) {
        int64_t da = kdx_tensor_numel(ad) / N;
        const double *a = kdx_tensor_data(ad);
        for (int64_t i = 0; i < N; i++) {
            double sum = 0;
            for (int64_t j = 0; j < da; j++) sum += a[i * da + j];
            g[i] = sum - (g[i] - fb[i]);
        }
    }
    if (fb) kdx__free(fb, (size_t)N * sizeof *fb);
    KDX_RELEASE(xd, bd, ad);
    if (s != KDX_OK) {
        kdx_tensor_release(r);
        return s;
    }
    *out = r;
    return KDX_OK;
}

/* ---- infidelity ---- */

/* dots[r] = sum_p I_p * attr[fmap[p]] for the chunk's rows; fwd the outputs at the perturbed rows. */
static kdx_status infidelity_chunk(const char *fname, const kdx_model *m, const kdx_metric_opts *o,
                                   const kdx_tensor *x, const double *xs, const double *a, const int64_t *fmap,
                                   int64_t d, const kdx_perturber *pt, kdx_generator *g, double std, int S,
                                   int64_t lo, int64_t n, double *dots, double *fwd)
{
    int64_t N = x->shape[0], P = kdx_tensor_numel(x) / N;
    kdx_tensor *rd = NULL, *ids = NULL, *noise = NULL, *nd = NULL, *pert = NULL, *pb = NULL, *xb = NULL;
    kdx_status s = new_chunk(fname, x, n, &rd, &ids);
    if (s != KDX_OK) return s;
    double *row = kdx_tensor_data(rd);
    int64_t *id = kdx_tensor_data(ids);
    for (int64_t j = 0; j < n; j++) {
        id[j] = (lo + j) / S;
        memcpy(row + j * P, xs + id[j] * P, (size_t)P * sizeof(double));
    }
    bool was = kdx__grad_pause();
    if (pt) {
        s = kdx_to(rd, x->dtype, &xb);
        if (s == KDX_OK) s = pt->perturb(pt->ud, xb, ids, &noise, &pert);
        if (s == KDX_OK && (!noise || kdx_tensor_numel(noise) != n * P))
            s = kdx_fail(KDX_ESHAPE, "%s: the perturbation must return noise of the rows' shape %s, got %s", fname,
                         kdx__shp(xb), noise ? kdx__shp(noise) : "nothing");
        if (s == KDX_OK) s = kdx__f64(noise, &nd);
        if (s == KDX_OK && !pert) {
            kdx_tensor *nr = NULL; /* noise of the rows' shape, in x's dtype */
            s = kdx_reshape(nd, xb->ndim, xb->shape, &pb);
            if (s == KDX_OK) s = kdx_to(pb, x->dtype, &nr);
            if (s == KDX_OK) s = kdx_binary(KDX_BIN_SUB, xb, nr, &pert);
            KDX_RELEASE(pb, nr);
            pb = NULL;
        }
        if (s == KDX_OK && kdx_tensor_numel(pert) != n * P)
            s = kdx_fail(KDX_ESHAPE, "%s: the perturbed input must have the rows' shape %s, got %s", fname, kdx__shp(xb),
                         kdx__shp(pert));
        if (s == KDX_OK && pert->dtype != x->dtype) {
            s = kdx_to(pert, x->dtype, &pb);
            KDX_RELEASE(pert);
            pert = pb, pb = NULL;
        }
        if (s == KDX_OK && !kdx__same_shape(pert, xb)) {
            s = kdx_reshape(pert, xb->ndim, xb->shape, &pb);
            KDX_RELEASE(pert);
            pert = pb, pb = NULL;
        }
    } else {
        s = kdx__new_raw(fname, KDX_DTYPE_F64, rd->ndim, rd->shape, &nd);
        if (s == KDX_OK) {
            double *I = kdx_tensor_data(nd);
            for (int64_t q = 0; q < n * P; q++) {
                I[q] = std * kdx_generator_normal(g);
                row[q] -= I[q]; /* the rows become x - I */
            }
            s = kdx_to(rd, x->dtype, &pert);
        }
    }
    kdx__grad_restore(was);
    if (s == KDX_OK) {
        const double *I = kdx_tensor_data(nd);
        for (int64_t j = 0; j < n; j++) {
            double sum = 0;
            const double *aj = a + id[j] * d;
            for (int64_t p = 0; p < P; p++) sum += I[j * P + p] * aj[fmap[p]];
            dots[j] = sum;
        }
        s = chunk_outputs(fname, m, o, pert, ids, N, fwd);
    }
    KDX_RELEASE(rd, ids, noise, nd, pert, pb, xb);
    return s;
}

kdx_status kdx_metric_infidelity(const kdx_model *m, const kdx_tensor *x, const kdx_tensor *attr,
                                 const kdx_metric_opts *o, const kdx_perturber *p, double noise_std, int n_samples,
                                 int normalize, kdx_tensor **out)
{
    const char *fname = "infidelity";
    if (n_samples < 1) return kdx_fail(KDX_EINVAL, "%s: n_perturb_samples must be >= 1, got %d", fname, n_samples);
    if (!p && !(noise_std >= 0 && isfinite(noise_std)))
        return kdx_fail(KDX_EINVAL, "%s: noise_std must be >= 0, got %g", fname, noise_std);
    kdx_tensor *xd = NULL, *ad = NULL, *r = NULL;
    KDX_TRY(check_rows(fname, x && x->ndim ? x->shape[0] : 0, n_samples));
    KDX_TRY(prepare(fname, m, x, o, &xd, NULL));
    int64_t N = x->shape[0], P = kdx_tensor_numel(x) / N, d = 0, *fmap = NULL, R = N * n_samples;
    double *res = NULL, *mem = NULL;
    kdx_generator *g = NULL;
    kdx_status s = feature_map(fname, x, attr, &fmap, &d, &ad);
    if (s == KDX_OK) s = new_f64(fname, 1, &N, &r, &res);
    if (s == KDX_OK) {
        mem = kdx__malloc_raw((size_t)(N + 2 * R) * sizeof *mem);
        if (!mem) s = kdx_fail(KDX_ENOMEM, "%s: out of memory", fname);
    }
    if (s == KDX_OK && !p) s = kdx_generator_new(o->seed, &g);
    double *fx = mem, *dots = mem + N, *fwd = mem + N + R;
    if (s == KDX_OK) s = eval_plain(fname, m, o, x, kdx_tensor_data(xd), fx);
    for (int64_t lo = 0; lo < R && s == KDX_OK; lo += o->batch_size) {
        int64_t n = kdx__min64(o->batch_size, R - lo);
        s = infidelity_chunk(fname, m, o, x, kdx_tensor_data(xd), kdx_tensor_data(ad), fmap, d, p, g, noise_std,
                             n_samples, lo, n, dots + lo, fwd + lo);
    }
    if (s == KDX_OK)
        for (int64_t i = 0; i < N; i++) {
            double num = 0, den = 0, beta = 1, acc = 0;
            for (int k = 0; k < n_samples; k++) {
                double dt = dots[i * n_samples + k], df = fx[i] - fwd[i * n_samples + k];
                num += dt * df, den += dt * dt;
            }
            if (normalize) beta = den > 0 ? num / den : 0; /* Captum's safe division */
            for (int k = 0; k < n_samples; k++) {
                double e = beta * dots[i * n_samples + k] - (fx[i] - fwd[i * n_samples + k]);
                acc += e * e;
            }
            res[i] = acc / n_samples;
        }
    kdx_generator_free(g);
    if (mem) kdx__free(mem, (size_t)(N + 2 * R) * sizeof *mem);
    if (fmap) kdx__free(fmap, (size_t)P * sizeof *fmap);
    KDX_RELEASE(xd, ad);
    if (s != KDX_OK) {
        kdx_tensor_release(r);
        return s;
    }
    *out = r;
    return KDX_OK;
}

/* ---- explanations of many rows ---- */

/* Runs e on a chunk xb [n, ...] of samples ids; copies its float64 values to
   dst (n * da of them; *da set from the first chunk when 0, with its per-row
   shape in eshape/endim). */
static kdx_status explain_chunk(const char *fname, const kdx_explainer *e, const kdx_tensor *xb,
                                const kdx_tensor *ids, int64_t *da, int *endim, int64_t *eshape, double *dst,
                                int64_t cap)
{
    kdx_tensor *ea = NULL, *ed = NULL;
    int64_t n = xb->shape[0];
    kdx_status s = e->explain(e->ud, xb, ids, &ea);
    if (s != KDX_OK) return s; /* the callback set the message */
    if (!ea) return kdx_fail(KDX_ESTATE, "%s: the explanation returned no tensor", fname);
    if (ea->ndim < 1 || ea->shape[0] != n)
        s = kdx_fail(KDX_ESHAPE, "%s: the explanation returned %s for %lld rows", fname, kdx__shp(ea), (long long)n);
    if (s == KDX_OK && *da == 0) {
        *da = kdx_tensor_numel(ea) / n;
        *endim = ea->ndim;
        memcpy(eshape, ea->shape, sizeof(int64_t) * (size_t)ea->ndim);
        if (*da < 1) s = kdx_fail(KDX_ESHAPE, "%s: the explanation returned %s", fname, kdx__shp(ea));
        if (s == KDX_OK && *da > cap) s = kdx_fail(KDX_ESHAPE, "%s: the explanation returned %s, larger than expected", fname, kdx__shp(ea));
    } else if (s == KDX_OK && kdx_tensor_numel(ea) != n * *da) {
        s = kdx_fail(KDX_ESHAPE, "%s: the explanation returned %s, %lld values per row expected", fname, kdx__shp(ea),
                     (long long)*da);
    }
    if (s == KDX_OK) s = kdx__f64(ea, &ed);
    if (s == KDX_OK) memcpy(dst, kdx_tensor_data(ed), (size_t)(n * *da) * sizeof(double));
    KDX_RELEASE(ea, ed);
    return s;
}

/* The explanation of every sample of x, batch_size rows per call: a float64
   tensor [N, ...] (the explanation's per-row shape). */
static kdx_status explain_all(const char *fname, const kdx_explainer *e, const kdx_tensor *x, int64_t batch_size,
                              int64_t cap, kdx_tensor **out)
{
    int64_t N = x->shape[0], da = 0, eshape[KDX_MAX_DIMS];
    int endim = 0;
    double *buf = NULL;
    kdx_tensor *r = NULL;
    kdx_status s = KDX_OK;
    if ((uint64_t)cap > SIZE_MAX / sizeof(double) / (uint64_t)N) return kdx_fail(KDX_ENOMEM, "%s: too large", fname);
    buf = kdx__malloc_raw((size_t)(N * cap) * sizeof *buf);
    if (!buf) return kdx_fail(KDX_ENOMEM, "%s: out of memory", fname);
    for (int64_t lo = 0; lo < N && s == KDX_OK; lo += batch_size) {
        int64_t n = kdx__min64(batch_size, N - lo);
        kdx_tensor *xb = NULL, *ids = NULL;
        s = kdx_narrow(x, 0, lo, n, &xb);
        if (s == KDX_OK) s = kdx__new_raw(fname, KDX_DTYPE_I64, 1, &n, &ids);
        if (s == KDX_OK) {
            int64_t *id = kdx_tensor_data(ids);
            for (int64_t j = 0; j < n; j++) id[j] = lo + j;
            s = explain_chunk(fname, e, xb, ids, &da, &endim, eshape, buf + lo * (da ? da : 0), cap);
        }
        KDX_RELEASE(xb, ids);
    }
    if (s == KDX_OK) {
        eshape[0] = N;
        s = kdx_from_data(KDX_DTYPE_F64, endim, eshape, buf, &r);
    }
    kdx__free(buf, (size_t)(N * cap) * sizeof *buf);
    if (s != KDX_OK) return s;
    *out = r;
    return KDX_OK;
}

/* Largest explanation per row accepted where none is given to size buffers:
   as many values as x has per sample, or attr's. */
static int64_t expl_cap(const kdx_tensor *x, const kdx_tensor *attr)
{
    int64_t N = x->shape[0];
    return attr ? kdx_tensor_numel(attr) / N : kdx_tensor_numel(x) / N;
}

/* ---- max-sensitivity ---- */

kdx_status kdx_metric_max_sensitivity(const kdx_explainer *e, const kdx_tensor *x, const kdx_tensor *attr,
                                      const kdx_metric_opts *o, double radius, int n_samples, kdx_tensor **out)
{
    const char *fname = "max_sensitivity";
    if (!e || !e->explain) return kdx_fail(KDX_EINVAL, "%s: explanation is NULL", fname);
    if (!o) return kdx_fail(KDX_EINVAL, "%s: options are NULL", fname);
    KDX_TRY(kdx__check_float(fname, "x", x));
    if (x->ndim < 1 || x->shape[0] < 1) return kdx_fail(KDX_ESHAPE, "%s: x must be a batch [N, ...], got %s", fname, kdx__shp(x));
    if (o->batch_size < 1) return kdx_fail(KDX_EINVAL, "%s: batch_size must be >= 1, got %lld", fname, (long long)o->batch_size);
    if (n_samples < 1) return kdx_fail(KDX_EINVAL, "%s: n_perturb_samples must be >= 1, got %d", fname, n_samples);
    if (!(radius >= 0 && isfinite(radius))) return kdx_fail(KDX_EINVAL, "%s: radius must be >= 0, got %g", fname, radius);
    if (attr) {
        KDX_TRY(kdx__check_float(fname, "attr", attr));
        if (attr->ndim < 1 || attr->shape[0] != x->shape[0])
            return kdx_fail(KDX_ESHAPE, "%s: attr %s must be a batch of %lld samples", fname, kdx__shp(attr),
                            (long long)x->shape[0]);
    }
    KDX_TRY(check_rows(fname, x->shape[0], n_samples));
    int64_t N = x->shape[0], P = kdx_tensor_numel(x) / N, R = N * n_samples, cap = expl_cap(x, attr);
    kdx_tensor *xd = NULL, *a0 = NULL, *r = NULL;
    kdx_generator *g = NULL;
    double *res = NULL, *eb = NULL;
    kdx_status s = kdx__f64(x, &xd);
    if (s == KDX_OK) s = attr ? kdx__f64(attr, &a0) : explain_all(fname, e, x, o->batch_size, cap, &a0);
    int64_t da = s == KDX_OK ? kdx_tensor_numel(a0) / N : 0;
    if (s == KDX_OK) s = new_f64(fname, 1, &N, &r, &res);
    if (s == KDX_OK) s = kdx_generator_new(o->seed, &g);
    int64_t chunk = kdx__min64(o->batch_size, R);
    if (s == KDX_OK) {
        eb = kdx__malloc_raw((size_t)(chunk * da) * sizeof *eb);
        if (!eb) s = kdx_fail(KDX_ENOMEM, "%s: out of memory", fname);
    }
    const double *xs = s == KDX_OK ? kdx_tensor_data(xd) : NULL, *a = s == KDX_OK ? kdx_tensor_data(a0) : NULL;
    double *norm0 = NULL;
    if (s == KDX_OK) {
        norm0 = kdx__malloc_raw((size_t)N * sizeof *norm0);
        if (!norm0) s = kdx_fail(KDX_ENOMEM, "%s: out of memory", fname);
    }
    for (int64_t i = 0; s == KDX_OK && i < N; i++) {
        double q = 0;
        for (int64_t j = 0; j < da; j++) q += a[i * da + j] * a[i * da + j];
        norm0[i] = q > 0 ? sqrt(q) : 1; /* Captum divides by 1 where the explanation is 0 */
    }
    for (int64_t lo = 0; lo < R && s == KDX_OK; lo += chunk) {
        int64_t n = kdx__min64(chunk, R - lo), got = da, eshape[KDX_MAX_DIMS];
        int endim = 0;
        kdx_tensor *rd = NULL, *ids = NULL, *xb = NULL;
        s = new_chunk(fname, x, n, &rd, &ids);
        if (s == KDX_OK) {
            double *row = kdx_tensor_data(rd);
            int64_t *id = kdx_tensor_data(ids);
            for (int64_t j = 0; j < n; j++) {
                id[j] = (lo + j) / n_samples;
                for (int64_t p = 0; p < P; p++)
                    row[j * P + p] = xs[id[j] * P + p] + radius * (2 * kdx_generator_uniform(g) - 1);
            }
            bool was = kdx__grad_pause();
            s = kdx_to(rd, x->dtype, &xb);
            kdx__grad_restore(was);
        }
        if (s == KDX_OK) s = explain_chunk(fname, e, xb, ids, &got, &endim, eshape, eb, da);
        if (s == KDX_OK) {
            const int64_t *id = kdx_tensor_data(ids);
            for (int64_t j = 0; j < n; j++) {
                int64_t i = id[j];
                double q = 0;
                for (int64_t k = 0; k < da; k++) {
                    double v = eb[j * da + k] - a[i * da + k];
                    q += v * v;
                }
                res[i] = fmax(res[i], sqrt(q) / norm0[i]);
            }
        }
        KDX_RELEASE(rd, ids, xb);
    }
    if (norm0) kdx__free(norm0, (size_t)N * sizeof *norm0);
    kdx_generator_free(g);
    if (eb) kdx__free(eb, (size_t)(chunk * da) * sizeof *eb);
    KDX_RELEASE(xd, a0);
    if (s != KDX_OK) {
        kdx_tensor_release(r);
        return s;
    }
    *out = r;
    return KDX_OK;
}

/* ---- faithfulness correlation ---- */

typedef struct {
    const double *x, *b, *a;
    const int64_t *fmap;
    int64_t P, d, k;
    int runs;
    kdx_generator *g;
    int64_t *perm;
    unsigned char *mark;
    double *sums; /* sums[r]: attribution of the subset of row r */
} faith_rows;

static void fill_faith(void *ud, int64_t r, double *row, int64_t *sample)
{
    faith_rows *f = ud;
    int64_t i = r / f->runs, d = f->d;
    const double *a = f->a + i * d, *x = f->x + i * f->P, *b = f->b + i * f->P;
    for (int64_t j = 0; j < d; j++) f->perm[j] = j, f->mark[j] = 0;
    double sum = 0;
    for (int64_t j = 0; j < f->k; j++) { /* the first k of a Fisher-Yates shuffle: a subset without repeats */
        int64_t t = j + (int64_t)kdx_generator_below(f->g, (uint64_t)(d - j)), v = f->perm[t];
        f->perm[t] = f->perm[j], f->perm[j] = v;
        f->mark[v] = 1;
        sum += a[v];
    }
    f->sums[r] = sum;
    for (int64_t p = 0; p < f->P; p++) row[p] = f->mark[f->fmap[p]] ? b[p] : x[p];
    *sample = i;
}

kdx_status kdx_metric_faithfulness_correlation(const kdx_model *m, const kdx_tensor *x, const kdx_tensor *attr,
                                               const kdx_metric_opts *o, int64_t subset_size, int nr_runs,
                                               kdx_tensor **out)
{
    const char *fname = "faithfulness_correlation";
    if (nr_runs < 2) return kdx_fail(KDX_EINVAL, "%s: nr_runs must be >= 2, got %d", fname, nr_runs);
    kdx_tensor *xd = NULL, *bd = NULL, *ad = NULL, *r = NULL;
    KDX_TRY(check_rows(fname, x && x->ndim ? x->shape[0] : 0, nr_runs));
    KDX_TRY(prepare(fname, m, x, o, &xd, &bd));
    int64_t N = x->shape[0], P = kdx_tensor_numel(x) / N, d = 0, *fmap = NULL, R = N * nr_runs;
    kdx_generator *g = NULL;
    double *res = NULL, *mem = NULL;
    size_t nb = 0;
    kdx_status s = feature_map(fname, x, attr, &fmap, &d, &ad);
    if (s == KDX_OK && (subset_size < 1 || subset_size > d))
        s = kdx_fail(KDX_EINVAL, "%s: subset_size must be in [1, %lld] (the features per sample), got %lld", fname,
                     (long long)d, (long long)subset_size);
    if (s == KDX_OK) s = new_f64(fname, 1, &N, &r, &res);
    if (s == KDX_OK) {
        nb = (size_t)(N + 3 * R) * sizeof(double) + (size_t)d * (sizeof(int64_t) + 1);
        mem = kdx__malloc_raw(nb);
        if (!mem) s = kdx_fail(KDX_ENOMEM, "%s: out of memory", fname);
    }
    if (s == KDX_OK) s = kdx_generator_new(o->seed, &g);
    double *fx = mem, *sums = mem + N, *fwd = mem + N + R, *delta = mem + N + 2 * R;
    if (s == KDX_OK) s = eval_plain(fname, m, o, x, kdx_tensor_data(xd), fx);
    if (s == KDX_OK) {
        int64_t *perm = (int64_t *)(mem + N + 3 * R);
        faith_rows fr = {kdx_tensor_data(xd), kdx_tensor_data(bd), kdx_tensor_data(ad), fmap, P, d, subset_size,
                         nr_runs, g, perm, (unsigned char *)(perm + d), sums};
        s = eval_rows(fname, m, o, x, R, fill_faith, &fr, fwd);
    }
    if (s == KDX_OK) {
        for (int64_t q = 0; q < R; q++) delta[q] = fx[q / nr_runs] - fwd[q];
        s = kdx__sim_rows(fname, KDX_SIM_PEARSON, sums, delta, N, nr_runs, 0, 0, 0, res);
    }
    kdx_generator_free(g);
    if (mem) kdx__free(mem, nb);
    if (fmap) kdx__free(fmap, (size_t)P * sizeof *fmap);
    KDX_RELEASE(xd, bd, ad);
    if (s != KDX_OK) {
        kdx_tensor_release(r);
        return s;
    }
    *out = r;
    return KDX_OK;
}

/* ---- cascading randomisation ---- */

/* Row `row` of out: sim(ref, e) per sample, on |.| when abs_value. */
static kdx_status compare(const char *fname, const kdx_tensor *ref, const kdx_tensor *e, kdx_sim_kind sim,
                          double param, int abs_value, double *out, double *scratch)
{
    int64_t N = ref->shape[0], da = kdx_tensor_numel(ref) / N, H = 0, W = 0;
    if (kdx_tensor_numel(e) != N * da)
        return kdx_fail(KDX_ESHAPE, "%s: the explanation returned %s, attr is %s", fname, kdx__shp(e), kdx__shp(ref));
    if (sim == KDX_SIM_SSIM) {
        if (!(ref->ndim == 3 || (ref->ndim == 4 && ref->shape[1] == 1)))
            return kdx_fail(KDX_ESHAPE, "%s: ssim needs maps [N, H, W] or [N, 1, H, W], got %s", fname, kdx__shp(ref));
        H = ref->shape[ref->ndim - 2], W = ref->shape[ref->ndim - 1];
    }
    const double *a = kdx_tensor_data(ref), *b = kdx_tensor_data(e);
    if (abs_value) {
        for (int64_t q = 0; q < N * da; q++) scratch[q] = fabs(a[q]), scratch[N * da + q] = fabs(b[q]);
        a = scratch, b = scratch + N * da;
    }
    return kdx__sim_rows(fname, sim, a, b, N, da, H, W, param, out);
}

/* Redraws the parameters of layer l: U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in
   from the layer's weight of most dims (numel / out features), as PyTorch's
   default Linear/Conv initialisation; 1 when the layer has only vectors. */
static kdx_status redraw_layer(const char *fname, kdx_tensor *const *params, const int *layer_of, int nparams, int l,
                               kdx_generator *g)
{
    int64_t fan_in = 1;
    int best = 0;
    for (int i = 0; i < nparams; i++)
        if (layer_of[i] == l && params[i]->ndim > best && params[i]->ndim >= 2 && params[i]->shape[0] > 0) {
            best = params[i]->ndim;
            fan_in = kdx__max64(1, kdx_tensor_numel(params[i]) / params[i]->shape[0]);
        }
    double bound = 1 / sqrt((double)fan_in);
    for (int i = 0; i < nparams; i++)
        if (layer_of[i] == l) {
            kdx_status s = kdx_uniform_(params[i], g, -bound, bound);
            if (s != KDX_OK) return kdx_fail(s, "%s: cannot redraw parameter %d (a view that shares memory?)", fname, i + 1);
        }
    return KDX_OK;
}

kdx_status kdx_metric_randomization(const kdx_explainer *e, const kdx_tensor *x, const kdx_tensor *attr,
                                    const kdx_metric_opts *o, kdx_tensor *const *params, const int *layer_of,
                                    int nparams, int nlayers, kdx_sim_kind sim, double sim_param, int abs_value,
                                    kdx_tensor **out)
{
    const char *fname = "randomization_check";
    if (!e || !e->explain) return kdx_fail(KDX_EINVAL, "%s: explanation is NULL", fname);
    if (!o) return kdx_fail(KDX_EINVAL, "%s: options are NULL", fname);
    KDX_TRY(kdx__check_float(fname, "x", x));
    if (x->ndim < 1 || x->shape[0] < 1) return kdx_fail(KDX_ESHAPE, "%s: x must be a batch [N, ...], got %s", fname, kdx__shp(x));
    if (o->batch_size < 1) return kdx_fail(KDX_EINVAL, "%s: batch_size must be >= 1, got %lld", fname, (long long)o->batch_size);
    if (nlayers < 1 || nparams < 1 || !params || !layer_of)
        return kdx_fail(KDX_EINVAL, "%s: the model has no layers with parameters", fname);
    for (int i = 0; i < nparams; i++) {
        if (!params[i]) return kdx_fail(KDX_EINVAL, "%s: parameter %d is NULL", fname, i + 1);
        KDX_TRY(kdx__check_float(fname, "parameter", params[i]));
        if (layer_of[i] < 0 || layer_of[i] >= nlayers)
            return kdx_fail(KDX_EINVAL, "%s: parameter %d belongs to layer %d of %d", fname, i + 1, layer_of[i], nlayers);
    }
    if (attr) {
        KDX_TRY(kdx__check_float(fname, "attr", attr));
        if (attr->ndim < 1 || attr->shape[0] != x->shape[0])
            return kdx_fail(KDX_ESHAPE, "%s: attr %s must be a batch of %lld samples", fname, kdx__shp(attr),
                            (long long)x->shape[0]);
    }
    int64_t N = x->shape[0], cap = expl_cap(x, attr), oshape[2] = {(int64_t)nlayers + 1, N};
    kdx_tensor **saved = kdx__malloc((size_t)nparams * sizeof *saved);
    if (!saved) return kdx_fail(KDX_ENOMEM, "%s: out of memory", fname);
    kdx_tensor *ref = NULL, *cur = NULL, *r = NULL;
    kdx_generator *g = NULL;
    double *res = NULL, *scratch = NULL;
    size_t nscr = (size_t)(2 * N * cap) * sizeof(double);
    bool was = kdx__grad_pause();
    kdx_status s = KDX_OK;
    for (int i = 0; i < nparams && s == KDX_OK; i++) s = kdx_clone(params[i], &saved[i]);
    kdx__grad_restore(was);
    if (s == KDX_OK) s = new_f64(fname, 2, oshape, &r, &res);
    if (s == KDX_OK) s = kdx_generator_new(o->seed, &g);
    if (s == KDX_OK) {
        scratch = kdx__malloc_raw(nscr);
        if (!scratch) s = kdx_fail(KDX_ENOMEM, "%s: out of memory", fname);
    }
    if (s == KDX_OK) s = explain_all(fname, e, x, o->batch_size, cap, &cur);
    if (s == KDX_OK) s = attr ? kdx__f64(attr, &ref) : kdx_reshape(cur, cur->ndim, cur->shape, &ref);
    if (s == KDX_OK) s = compare(fname, ref, cur, sim, sim_param, abs_value, res, scratch);
    for (int l = 0; l < nlayers && s == KDX_OK; l++) {
        was = kdx__grad_pause();
        s = redraw_layer(fname, params, layer_of, nparams, l, g);
        kdx__grad_restore(was);
        kdx_tensor_release(cur);
        cur = NULL;
        if (s == KDX_OK) s = explain_all(fname, e, x, o->batch_size, cap, &cur);
        if (s == KDX_OK) s = compare(fname, ref, cur, sim, sim_param, abs_value, res + (int64_t)(l + 1) * N, scratch);
    }
    /* The user's model comes back unchanged whatever happened above. */
    was = kdx__grad_pause();
    for (int i = 0; i < nparams; i++)
        if (saved[i]) {
            kdx_status c = kdx_copy_(params[i], saved[i]);
            if (c != KDX_OK && s == KDX_OK) s = c;
            kdx_tensor_release(saved[i]);
        }
    kdx__grad_restore(was);
    kdx__free(saved, (size_t)nparams * sizeof *saved);
    if (scratch) kdx__free(scratch, nscr);
    kdx_generator_free(g);
    KDX_RELEASE(ref, cur);
    if (s != KDX_OK) {
        kdx_tensor_release(r);
        return s;
    }
    *out = r;
    return KDX_OK;
}
