/* autograd.c — the tape and the backward pass.
 *
 * Every recording op attaches a node to its output (kdx__record); a node holds
 * edges to its inputs' nodes (or to leaves), the tensors its backward needs,
 * and a backward function written with the public ops. kdx_grad walks the
 * nodes reachable from the outputs in dependency order, sums the gradients
 * flowing into each node, and calls its backward with recording on only when
 * create_graph is asked for, which is all it takes for gradients of
 * gradients. Each op's backward lives beside its forward in op_*.c. */
#include "kdx_internal.h"

#include <string.h>

/* ---- grad mode (per thread, as PyTorch's) ---- */

static _Thread_local bool grad_off;
/* The hooked backward running on this thread (0: none); pass ids come from
   one counter for all threads, so a leaf's count is never taken for another
   thread's pass. */
static _Thread_local uint32_t hook_pass;
static atomic_uint hook_passes;

int kdx_grad_enabled(void) { return !grad_off; }

int kdx_set_grad_enabled(int on)
{
    int was = !grad_off;
    grad_off = !on;
    return was;
}

bool kdx__grad_on(void) { return !grad_off; }

bool kdx__grad_pause(void)
{
    bool was = !grad_off;
    grad_off = true;
    return was;
}

void kdx__grad_restore(bool was) { grad_off = !was; }

/* ---- backward rules of the attribution methods (per thread, like grad mode) ---- */

static _Thread_local kdx__rule rule;

kdx__rule kdx__rule_set(kdx__rule r)
{
    kdx__rule was = rule;
    rule = r;
    return was;
}

kdx__rule_kind kdx__backward_rule(void) { return rule.backward && grad_off ? rule.kind : KDX__RULE_NONE; }

bool kdx__rule_saving(void) { return rule.kind == KDX__RULE_RESCALE && !rule.backward; }

int64_t kdx__rule_rows(void) { return rule.rows; }

/* ---- tensor-level flags ---- */

int kdx_tensor_requires_grad(const kdx_tensor *t) { return t->requires_grad; }
int kdx_tensor_is_leaf(const kdx_tensor *t) { return t->grad_fn == NULL; }
kdx_tensor *kdx_tensor_grad(const kdx_tensor *t) { return t->grad; }
const char *kdx_tensor_grad_fn_name(const kdx_tensor *t) { return t->grad_fn ? t->grad_fn->name : NULL; }
int64_t kdx_tensor_version(const kdx_tensor *t) { return (int64_t)atomic_load(&t->storage->version); }

kdx_status kdx_tensor_set_requires_grad(kdx_tensor *t, int flag)
{
    KDX_TRY(kdx__arg("requires_grad", "tensor", t));
    if (t->grad_fn && !flag)
        return kdx_fail(KDX_ESTATE, "requires_grad: a result of an op (not a leaf) cannot stop requiring grad; "
                                    "use detach()");
    if (flag && t->dtype == KDX_DTYPE_I64)
        return kdx_fail(KDX_EDTYPE, "requires_grad: only float tensors can require gradients, got int64");
    if (!t->grad_fn) t->requires_grad = flag != 0;
    return KDX_OK;
}

void kdx_tensor_set_grad(kdx_tensor *t, kdx_tensor *g)
{
    if (g) kdx_tensor_retain(g);
    kdx_tensor_release(t->grad);
    t->grad = g;
}

kdx_status kdx_detach(const kdx_tensor *t, kdx_tensor **out)
{
    KDX_TRY(kdx__arg("detach", "tensor", t));
    return kdx__view_of(t, t->ndim, t->shape, t->stride, t->offset, out);
}

kdx_status kdx__check_inplace(const char *fname, const kdx_tensor *t)
{
    if (t->requires_grad && !grad_off)
        return kdx_fail(KDX_ESTATE,
                        "%s: in-place change of a tensor that requires grad (%s); use the out-of-place op, "
                        "or run it under no_grad",
                        fname, t->grad_fn ? "a result of an op" : "a leaf");
    return KDX_OK;
}

/* ---- nodes ---- */

bool kdx__needs_node(int nin, const kdx_tensor *const *ins)
{
    if (grad_off) return false;
    for (int i = 0; i < nin; i++)
        if (ins[i] && ins[i]->requires_grad) return true;
    return false;
}

kdx_status kdx__record(const char *name, kdx_backward_fn bw, int nin, const kdx_tensor *const *ins, kdx_tensor **out,
                       kdx_node **node)
{
    size_t bytes = sizeof(kdx_node) + (size_t)nin * sizeof(kdx_edge);
    kdx_node *n = kdx__malloc(bytes);
    if (!n) {
        kdx_tensor_release(*out);
        *out = NULL;
        return kdx_fail(KDX_ENOMEM, "%s: out of memory recording the op for autograd", name);
    }
    atomic_init(&n->refs, 1);
    n->name = name;
    n->backward = bw;
    n->nin = nin;
    for (int i = 0; i < nin; i++) {
        const kdx_tensor *t = ins[i];
        kdx_edge *e = &n->next[i];
        if (!t) continue;
        e->ndim = t->ndim;
        memcpy(e->shape, t->shape, sizeof e->shape);
        e->dtype = t->dtype;
        if (!t->requires_grad) continue;
        if (t->grad_fn) {
            e->node = t->grad_fn;
            atomic_fetch_add(&e->node->refs, 1);
        } else {
            e->leaf = kdx_tensor_retain((kdx_tensor *)t);
        }
    }
    kdx_tensor *y = *out;
    y->requires_grad = true;
    y->grad_fn = n;
    if (node) *node = n;
    return KDX_OK;
}

void kdx__save(kdx_node *n, int i, const kdx_tensor *t)
{
    n->saved[i] = kdx_tensor_retain((kdx_tensor *)t);
    n->saved_version[i] = atomic_load(&t->storage->version);
}

kdx_status kdx__save_detached(kdx_node *n, int i, const kdx_tensor *t)
{
    kdx_tensor *d;
    KDX_TRY(kdx_detach(t, &d));
    n->saved[i] = d;
    n->saved_version[i] = atomic_load(&t->storage->version);
    return KDX_OK;
}

kdx_status kdx__saved(kdx_node *n, int i, kdx_tensor **t)
{
    if (n->released)
        return kdx_fail(KDX_ESTATE, "backward: the graph through %s was already freed by a backward pass; "
                                    "pass retain_graph=true to the first one",
                        n->name);
    kdx_tensor *s = n->saved[i];
    long v = atomic_load(&s->storage->version);
    if (v != n->saved_version[i])
        return kdx_fail(KDX_ESTATE,
                        "backward: a tensor that %s saved for its gradient was modified in place afterwards "
                        "(version %ld, saved at %ld)",
                        n->name, v, n->saved_version[i]);
    *t = s;
    return KDX_OK;
}

static void release_saved(kdx_node *n)
{
    for (int i = 0; i < KDX_NODE_SAVED; i++) {
        kdx_tensor_release(n->saved[i]);
        n->saved[i] = NULL;
    }
}

/* Nodes whose last reference went, waiting to be freed. Freeing one can free
   a whole chain behind it; a list instead of recursion keeps the C stack flat
   however long the graph. */
static _Thread_local kdx_node *doomed;
static _Thread_local bool freeing;

void kdx__node_release(kdx_node *n)
{
    if (!n || atomic_fetch_sub(&n->refs, 1) != 1) return;
    n->next_free = doomed;
    doomed = n;
    if (freeing) return;
    freeing = true;
    while (doomed) {
        kdx_node *d = doomed;
        doomed = d->next_free;
        release_saved(d);
        for (int i = 0; i < d->nin; i++) {
            kdx__node_release(d->next[i].node);
            kdx_tensor_release(d->next[i].leaf);
        }
        kdx__free(d, sizeof(kdx_node) + (size_t)d->nin * sizeof(kdx_edge));
    }
    freeing = false;
}

/* ---- reducing a gradient to an input's shape ---- */

kdx_status kdx__sum_to(kdx_tensor *g, const kdx_edge *e, kdx_tensor **out)
{
    int dims[KDX_MAX_DIMS], nd = 0, lead = g->ndim - e->ndim;
    if (lead < 0) return kdx_fail(KDX_ESHAPE, "backward: gradient %s has fewer dims than its input", kdx__shp(g));
    for (int i = 0; i < g->ndim; i++)
        if (i < lead || (e->shape[i - lead] == 1 && g->shape[i] != 1)) dims[nd++] = i;
    kdx_tensor *s = kdx_tensor_retain(g), *t;
    if (nd) {
        KDX_TRY(kdx_reduce(KDX_RED_SUM, g, dims, nd, 1, &t));
        kdx_tensor_release(s);
        s = t;
    }
    if (s->ndim != e->ndim) {
        kdx_status st = kdx_reshape(s, e->ndim, e->shape, &t);
        kdx_tensor_release(s);
        KDX_TRY(st);
        s = t;
    }
    if (s->dtype != e->dtype) {
        kdx_status st = kdx_to(s, e->dtype, &t);
        kdx_tensor_release(s);
        KDX_TRY(st);
        s = t;
    }
    *out = s;
    return KDX_OK;
}

/* ---- the backward pass ---- */

typedef struct slot {
    kdx_node *node;
    int deps;         /* gradients still to arrive from other nodes */
    bool needed;      /* leads to a gradient that was asked for */
    kdx_tensor *grad; /* sum of the gradients that arrived */
} slot;

typedef struct graph {
    slot *slots;
    int n, cap;     /* slots in discovery order */
    int *table;     /* open addressing: node -> slot index + 1 */
    int tcap;
} graph;

static size_t hash_ptr(const void *p) { return ((uintptr_t)p >> 4) * 0x9e3779b97f4a7c15ULL >> 16; }

static int find(const graph *G, const kdx_node *node)
{
    for (size_t h = hash_ptr(node) & (size_t)(G->tcap - 1);; h = (h + 1) & (size_t)(G->tcap - 1)) {
        int k = G->table[h];
        if (k == 0) return -1;
        if (G->slots[k - 1].node == node) return k - 1;
    }
}

static kdx_status grow(graph *G)
{
    int cap = G->cap ? 2 * G->cap : 64, tcap = 4 * cap;
    slot *s = kdx__malloc((size_t)cap * sizeof *s);
    int *t = kdx__malloc((size_t)tcap * sizeof *t);
    if (!s || !t) {
        kdx__free(s, (size_t)cap * sizeof *s);
        kdx__free(t, (size_t)tcap * sizeof *t);
        return kdx_fail(KDX_ENOMEM, "backward: out of memory for the graph");
    }
    if (G->n) memcpy(s, G->slots, (size_t)G->n * sizeof *s);
    kdx__free(G->slots, (size_t)G->cap * sizeof *s);
    kdx__free(G->table, (size_t)G->tcap * sizeof *t);
    G->slots = s, G->cap = cap, G->table = t, G->tcap = tcap;
    for (int i = 0; i < G->n; i++) {
        size_t h = hash_ptr(s[i].node) & (size_t)(tcap - 1);
        while (t[h]) h = (h + 1) & (size_t)(tcap - 1);
        t[h] = i + 1;
    }
    return KDX_OK;
}

/* The slot of node, added if new (*added tells). */
static kdx_status slot_of(graph *G, kdx_node *node, int *k, bool *added)
{
    *added = false;
    if (G->n && (*k = find(G, node)) >= 0) return KDX_OK;
    if (G->n + 1 > G->cap) KDX_TRY(grow(G));
    size_t h = hash_ptr(node) & (size_t)(G->tcap - 1);
    while (G->table[h]) h = (h + 1) & (size_t)(G->tcap - 1);
    G->table[h] = G->n + 1;
    G->slots[G->n] = (slot){node, 0, false, NULL};
    *k = G->n++;
    *added = true;
    return KDX_OK;
}

static void graph_free(graph *G)
{
    for (int i = 0; i < G->n; i++) kdx_tensor_release(G->slots[i].grad);
    kdx__free(G->slots, (size_t)G->cap * sizeof *G->slots);
    kdx__free(G->table, (size_t)G->tcap * sizeof *G->table);
}

/* *acc += g (out of place, so a recorded graph stays intact); takes g's reference. */
static kdx_status accumulate(kdx_tensor **acc, kdx_tensor *g)
{
    if (!*acc) {
        *acc = g;
        return KDX_OK;
    }
    kdx_tensor *s;
    kdx_status st = kdx_binary(KDX_BIN_ADD, *acc, g, &s);
    kdx_tensor_release(g);
    if (st != KDX_OK) return st;
    kdx_tensor_release(*acc);
    *acc = s;
    return KDX_OK;
}

/* Finds every node reachable from the roots and counts, for each, how many
   edges of other reachable nodes point at it. */
static kdx_status discover(graph *G, kdx_node *const *roots, int nroots)
{
    /* an explicit stack: graphs can be deeper than the C stack */
    int cap = 256, top = 0;
    kdx_node **stack = kdx__malloc((size_t)cap * sizeof *stack);
    if (!stack) return kdx_fail(KDX_ENOMEM, "backward: out of memory");
    kdx_status s = KDX_OK;
    for (int r = 0; r < nroots && s == KDX_OK; r++) {
        int k;
        bool added;
        if (!roots[r]) continue;
        s = slot_of(G, roots[r], &k, &added);
        if (s == KDX_OK && added) stack[top++] = roots[r];
        while (s == KDX_OK && top > 0) {
            kdx_node *n = stack[--top];
            for (int i = 0; i < n->nin && s == KDX_OK; i++) {
                kdx_node *m = n->next[i].node;
                if (!m) continue;
                s = slot_of(G, m, &k, &added);
                if (s != KDX_OK) break;
                G->slots[k].deps++;
                if (!added) continue;
                if (top == cap) {
                    kdx_node **bigger = kdx__malloc((size_t)cap * 2 * sizeof *stack);
                    if (!bigger) {
                        s = kdx_fail(KDX_ENOMEM, "backward: out of memory");
                        break;
                    }
                    memcpy(bigger, stack, (size_t)cap * sizeof *stack);
                    kdx__free(stack, (size_t)cap * sizeof *stack);
                    stack = bigger, cap *= 2;
                }
                stack[top++] = m;
            }
        }
    }
    kdx__free(stack, (size_t)cap * sizeof *stack);
    return s;
}

/* Which input (by index) a leaf or node is, or -1. */
static int requested_leaf(const kdx_tensor *leaf, const kdx_tensor *const *inputs, int nin, int from)
{
    for (int j = from; j < nin; j++)
        if (inputs[j] == leaf) return j;
    return -1;
}

/* Processing order: Kahn's algorithm over the discovered dependency counts. */
static kdx_status order_of(graph *G, int *order)
{
    int *deps = kdx__malloc((size_t)(G->n ? G->n : 1) * sizeof *deps);
    if (!deps) return kdx_fail(KDX_ENOMEM, "backward: out of memory");
    int head = 0, tail = 0;
    for (int i = 0; i < G->n; i++) {
        deps[i] = G->slots[i].deps;
        if (deps[i] == 0) order[tail++] = i;
    }
    while (head < tail) {
        kdx_node *n = G->slots[order[head++]].node;
        for (int e = 0; e < n->nin; e++) {
            if (!n->next[e].node) continue;
            int k = find(G, n->next[e].node);
            if (--deps[k] == 0) order[tail++] = k;
        }
    }
    kdx__free(deps, (size_t)(G->n ? G->n : 1) * sizeof *deps);
    return KDX_OK;
}

/* Runs one node's backward and hands each input gradient on. */
static kdx_status run_node(graph *G, slot *sl, const kdx_tensor *const *inputs, int nin, kdx_tensor **grads,
                           bool to_leaves, bool create_graph)
{
    kdx_node *n = sl->node;
    size_t bytes = (size_t)(n->nin ? n->nin : 1) * (sizeof(kdx_tensor *) + sizeof(bool));
    kdx_tensor **gin = kdx__malloc(bytes); /* nin gradients, then nin flags */
    if (!gin) return kdx_fail(KDX_ENOMEM, "backward: out of memory");
    bool *want = (bool *)(gin + (n->nin ? n->nin : 1));
    bool any = false;
    for (int i = 0; i < n->nin; i++) {
        const kdx_edge *e = &n->next[i];
        want[i] = (e->node && G->slots[find(G, e->node)].needed) ||
                  (e->leaf && (to_leaves || requested_leaf(e->leaf, inputs, nin, 0) >= 0));
        any = any || want[i];
        gin[i] = NULL;
    }
    kdx_status s = KDX_OK;
    if (any) {
        if (n->released)
            s = kdx_fail(KDX_ESTATE, "backward: the graph through %s was already freed by a backward pass; "
                                     "pass retain_graph=true to the first one",
                         n->name);
        else s = n->backward(n, sl->grad, want, gin);
    }
    for (int i = 0; i < n->nin && s == KDX_OK; i++) {
        if (!gin[i] || !want[i]) continue;
        const kdx_edge *e = &n->next[i];
        kdx_tensor *g;
        s = kdx__sum_to(gin[i], e, &g);
        if (s != KDX_OK) break;
        if (e->node) {
            s = accumulate(&G->slots[find(G, e->node)].grad, g);
        } else {
            for (int j = requested_leaf(e->leaf, inputs, nin, 0); j >= 0 && s == KDX_OK;
                 j = requested_leaf(e->leaf, inputs, nin, j + 1))
                s = accumulate(&grads[j], kdx_tensor_retain(g));
            if (s == KDX_OK && to_leaves) {
                kdx_tensor *leaf = e->leaf;
                if (!leaf->grad) {
                    /* a private copy: g may share memory with other gradients */
                    kdx_tensor *c;
                    s = create_graph ? (c = kdx_tensor_retain(g), KDX_OK) : kdx_clone(g, &c);
                    if (s == KDX_OK) leaf->grad = c;
                } else if (!create_graph && !leaf->grad->requires_grad) {
                    s = kdx_binary_(KDX_BIN_ADD, leaf->grad, g);
                } else {
                    s = accumulate(&leaf->grad, kdx_tensor_retain(g));
                }
            }
            kdx_tensor_release(g);
        }
    }
    for (int i = 0; i < n->nin; i++) kdx_tensor_release(gin[i]);
    kdx__free(gin, bytes);
    return s;
}

/* The engine behind kdx_grad and kdx_backward. inputs NULL (nin 0) with
   to_leaves: accumulate into every leaf's .grad. */
static kdx_status run_backward(const kdx_tensor *const *outputs, int nout, const kdx_tensor *const *grad_outputs,
                               const kdx_tensor *const *inputs, int nin, bool to_leaves, bool retain_graph,
                               bool create_graph, kdx_tensor **grads, kdx_grad_ready_fn ready, void *ud)
{
    const char *fname = to_leaves ? "backward" : "grad";
    for (int i = 0; i < nout; i++) {
        KDX_TRY(kdx__arg(fname, "output", outputs[i]));
        if (!outputs[i]->requires_grad)
            return kdx_fail(KDX_ESTATE, "%s: output %d does not require grad and has no grad_fn", fname, i);
        const kdx_tensor *go = grad_outputs ? grad_outputs[i] : NULL;
        if (!go && kdx_tensor_numel(outputs[i]) != 1)
            return kdx_fail(KDX_ESHAPE, "%s: output %d has shape %s; a gradient can be made implicitly only for "
                                        "one-element outputs (give grad_outputs)",
                            fname, i, kdx__shp(outputs[i]));
        if (go && !kdx__same_shape(go, outputs[i]))
            return kdx_fail(KDX_ESHAPE, "%s: grad_output %d has shape %s but output %d has %s", fname, i,
                            kdx__shp(go), i, kdx__shp(outputs[i]));
    }
    for (int j = 0; j < nin; j++) {
        KDX_TRY(kdx__arg(fname, "input", inputs[j]));
        if (!inputs[j]->requires_grad)
            return kdx_fail(KDX_ESTATE, "%s: input %d does not require grad", fname, j);
    }
    graph G = {0};
    kdx_node **roots = kdx__malloc((size_t)(nout ? nout : 1) * sizeof *roots);
    int *order = NULL;
    bool was = !grad_off;
    grad_off = !create_graph;
    kdx_status s = roots ? KDX_OK : kdx_fail(KDX_ENOMEM, "%s: out of memory", fname);
    for (int i = 0; i < nout && s == KDX_OK; i++) roots[i] = outputs[i]->grad_fn;
    if (s == KDX_OK) s = discover(&G, roots, nout);
    if (s == KDX_OK) {
        order = kdx__malloc((size_t)(G.n ? G.n : 1) * sizeof *order);
        s = order ? order_of(&G, order) : kdx_fail(KDX_ENOMEM, "%s: out of memory", fname);
    }
    /* Hooked: how many edges of the graph reach each leaf; the leaf is ready
       when the last of them has been processed. */
    uint32_t outer_pass = hook_pass;
    if (ready && s == KDX_OK) {
        do hook_pass = atomic_fetch_add(&hook_passes, 1) + 1; while (hook_pass == 0); /* 0 means none */
        for (int i = 0; i < G.n; i++)
            for (int e = 0; e < G.slots[i].node->nin; e++) {
                kdx_tensor *leaf = G.slots[i].node->next[e].leaf;
                if (!leaf) continue;
                if (leaf->hook_pass != hook_pass) leaf->hook_pass = hook_pass, leaf->hook_pending = 0;
                leaf->hook_pending++;
            }
        ready(ud, NULL);
    }
    /* Needed: leads to a leaf we fill, or to a requested non-leaf input. */
    for (int r = G.n - 1; r >= 0 && s == KDX_OK; r--) {
        slot *sl = &G.slots[order[r]];
        bool need = false;
        for (int j = 0; j < nin && !need; j++) need = inputs[j]->grad_fn == sl->node;
        for (int e = 0; e < sl->node->nin && !need; e++) {
            const kdx_edge *ed = &sl->node->next[e];
            need = (ed->leaf && (to_leaves || requested_leaf(ed->leaf, inputs, nin, 0) >= 0)) ||
                   (ed->node && G.slots[find(&G, ed->node)].needed);
        }
        sl->needed = need;
    }
    /* Seed the outputs' gradients. */
    for (int i = 0; i < nout && s == KDX_OK; i++) {
        kdx_tensor *g;
        if (grad_outputs && grad_outputs[i]) s = kdx_to(grad_outputs[i], outputs[i]->dtype, &g);
        else s = kdx_full(outputs[i]->dtype, outputs[i]->ndim, outputs[i]->shape, 1.0, &g);
        if (s != KDX_OK) break;
        if (outputs[i]->grad_fn) {
            s = accumulate(&G.slots[find(&G, outputs[i]->grad_fn)].grad, g);
        } else { /* the output is itself a leaf */
            for (int j = requested_leaf(outputs[i], inputs, nin, 0); j >= 0 && s == KDX_OK;
                 j = requested_leaf(outputs[i], inputs, nin, j + 1))
                s = accumulate(&grads[j], kdx_tensor_retain(g));
            if (s == KDX_OK && to_leaves) s = accumulate(&((kdx_tensor *)outputs[i])->grad, kdx_tensor_retain(g));
            kdx_tensor_release(g);
        }
    }
    for (int r = 0; r < G.n && s == KDX_OK; r++) {
        slot *sl = &G.slots[order[r]];
        for (int j = 0; j < nin; j++)
            if (inputs[j]->grad_fn == sl->node && sl->grad) s = accumulate(&grads[j], kdx_tensor_retain(sl->grad));
        if (s == KDX_OK && sl->grad && sl->needed) s = run_node(&G, sl, inputs, nin, grads, to_leaves, create_graph);
        for (int e = 0; ready && s == KDX_OK && e < sl->node->nin; e++) {
            kdx_tensor *leaf = sl->node->next[e].leaf;
            if (leaf && --leaf->hook_pending == 0 && leaf->grad) ready(ud, leaf);
        }
        kdx_tensor_release(sl->grad);
        sl->grad = NULL;
        if (!retain_graph) {
            release_saved(sl->node);
            sl->node->released = true;
        }
    }
    grad_off = !was;
    hook_pass = outer_pass;
    kdx__free(order, (size_t)(G.n ? G.n : 1) * sizeof *order);
    kdx__free(roots, (size_t)(nout ? nout : 1) * sizeof *roots);
    graph_free(&G);
    return s;
}

kdx_status kdx_backward(kdx_tensor *root, const kdx_tensor *grad, int retain_graph, int create_graph)
{
    KDX_TRY(kdx__arg("backward", "tensor", root));
    const kdx_tensor *outs[1] = {root}, *gos[1] = {grad};
    return run_backward(outs, 1, gos, NULL, 0, true, retain_graph || create_graph, create_graph, NULL, NULL, NULL);
}

int kdx_backward_reaches(const kdx_tensor *leaf)
{
    return leaf && hook_pass != 0 && leaf->hook_pass == hook_pass;
}

kdx_status kdx_backward_hooked(kdx_tensor *root, const kdx_tensor *grad, int retain_graph, kdx_grad_ready_fn ready,
                               void *ud)
{
    KDX_TRY(kdx__arg("backward", "tensor", root));
    if (!ready) return kdx_fail(KDX_EINVAL, "backward: the ready hook is NULL");
    const kdx_tensor *outs[1] = {root}, *gos[1] = {grad};
    return run_backward(outs, 1, gos, NULL, 0, true, retain_graph, false, NULL, ready, ud);
}

kdx_status kdx_grad(const kdx_tensor *const *outputs, int nout, const kdx_tensor *const *grad_outputs,
                    const kdx_tensor *const *inputs, int nin, int retain_graph, int create_graph, int allow_unused,
                    kdx_tensor **grads)
{
    if (nout <= 0 || !outputs) return kdx_fail(KDX_EINVAL, "grad: give at least one output");
    if (nin <= 0 || !inputs) return kdx_fail(KDX_EINVAL, "grad: give at least one input");
    for (int j = 0; j < nin; j++) grads[j] = NULL;
    kdx_status s = run_backward(outputs, nout, grad_outputs, inputs, nin, false, retain_graph || create_graph,
                                create_graph, grads, NULL, NULL);
    for (int j = 0; j < nin && s == KDX_OK; j++) {
        if (grads[j]) continue;
        if (!allow_unused)
            s = kdx_fail(KDX_ESTATE, "grad: input %d was not used to compute the outputs (pass allow_unused=true "
                                     "to get zeros)",
                         j);
        else s = kdx_zeros(inputs[j]->dtype, inputs[j]->ndim, inputs[j]->shape, &grads[j]);
    }
    if (s != KDX_OK)
        for (int j = 0; j < nin; j++) {
            kdx_tensor_release(grads[j]);
            grads[j] = NULL;
        }
    return s;
}
