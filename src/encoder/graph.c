/*
 * graph.c - the encoder graph: builder with shape inference and validation,
 * and the executor (plans which nodes the requested outputs need, frees each
 * intermediate value after its last consumer, runs ops.c kernels).
 * Saving and loading live in graph_io.c.
 */
#include "graph_impl.h"
#include "cpu.h"
#include "ops.h"
#include "ops_bf16.h"

#include <stdlib.h>
#include <string.h>

/* Bounds that keep every size computation in int and size_t range. */
enum { MAX_DIM = 1 << 16, MAX_VALUE_FLOATS = 1 << 28, MAX_NODES = 1 << 16 };

static void copy_name(char *dst, const char *src)
{
    snprintf(dst, ENC_NAME_LEN, "%s", src ? src : "");
}

/* ------------------------------------------------------------- workspace */

/* Value buffers of a run come from a workspace of blocks that outlives the
 * run: returned to the C allocator, big buffers would go back to the kernel
 * and be faulted in, zero-filled, page by page on the next run (thousands
 * of faults per InceptionV3 image). A run takes the graph's idle workspace
 * (or starts an empty one), allocates best-fit from its free blocks, and
 * hands it back at the end; one over WS_KEEP_BYTES is freed instead. */
enum { WS_KEEP_BYTES = 512 << 20 };

typedef struct enc_ws enc_ws;

typedef struct ws_block {
    float *p;
    size_t floats;
    bool used;
} ws_block;

struct enc_ws {
    ws_block *b;
    int n, cap;
    size_t floats;
};

static void ws_destroy(enc_ws *ws)
{
    if (!ws) return;
    for (int i = 0; i < ws->n; i++) imcap_free(ws->b[i].p);
    free(ws->b);
    free(ws);
}

/* The smallest free block of at least count floats (and not more than
 * twice that), else a new block. */
float *enc_ws_alloc(enc_ws *ws, size_t count)
{
    int best = -1;
    for (int i = 0; i < ws->n; i++)
        if (!ws->b[i].used && ws->b[i].floats >= count && ws->b[i].floats / 2 <= count &&
            (best < 0 || ws->b[i].floats < ws->b[best].floats))
            best = i;
    if (best >= 0) {
        ws->b[best].used = true;
        return ws->b[best].p;
    }
    if (ws->n == ws->cap) {
        int nc = ws->cap ? ws->cap * 2 : 32;
        ws_block *q = realloc(ws->b, (size_t)nc * sizeof *q);
        if (!q) {
            imcap_fail(IMCAP_E_NOMEM, "out of memory growing a workspace");
            return NULL;
        }
        ws->b = q;
        ws->cap = nc;
    }
    float *p = imcap_alloc(count, sizeof(float));
    if (!p) return NULL;
    ws->b[ws->n++] = (ws_block){p, count, true};
    ws->floats += count;
    return p;
}

void enc_ws_release(enc_ws *ws, float *p)
{
    if (!p) return;
    for (int i = ws->n - 1; i >= 0; i--)
        if (ws->b[i].p == p) {
            ws->b[i].used = false;
            return;
        }
}

enc_ws *enc_ws_take(const enc_graph *g)
{
    pthread_mutex_lock(&g->pack->mu);
    enc_ws *ws = g->pack->ws;
    g->pack->ws = NULL;
    pthread_mutex_unlock(&g->pack->mu);
    if (!ws && !(ws = calloc(1, sizeof *ws))) imcap_fail(IMCAP_E_NOMEM, "%s: out of memory for a workspace", g->name);
    return ws;
}

void enc_ws_give_back(const enc_graph *g, enc_ws *ws)
{
    for (int i = 0; i < ws->n; i++) ws->b[i].used = false;
    pthread_mutex_lock(&g->pack->mu);
    if (!g->pack->ws && ws->floats * sizeof(float) <= WS_KEEP_BYTES) {
        g->pack->ws = ws;
        ws = NULL;
    }
    pthread_mutex_unlock(&g->pack->mu);
    ws_destroy(ws);
}

/* ----------------------------------------------------------------- builder */

enc_graph *enc_graph_new(const char *name)
{
    enc_graph *g = calloc(1, sizeof *g);
    enc_pack *pk = calloc(1, sizeof *pk);
    if (!g || !pk || pthread_mutex_init(&pk->mu, NULL) != 0) {
        free(g);
        free(pk);
        imcap_fail(IMCAP_E_NOMEM, "out of memory creating an encoder graph");
        return NULL;
    }
    g->pack = pk;
    copy_name(g->name, name);
    g->input = -1;
    return g;
}

void enc_graph_free(enc_graph *g)
{
    if (!g) return;
    free(g->nodes);
    free(g->values);
    free(g->params);
    free(g->param_ext);
    imcap_free(g->pbuf);
    free(g->outputs);
    if (g->on_free) g->on_free(g->on_free_ctx);
    for (int i = 0; i < g->pack->n; i++) {
        imcap_free(g->pack->w[i]);
        imcap_free(g->pack->wu[i]);
    }
    for (int i = 0; i < g->pack->nb; i++) imcap_free(g->pack->wb[i]);
    free(g->pack->wb);
    ws_destroy(g->pack->ws);
    free(g->pack->w);
    free(g->pack->wu);
    free(g->path);
    enc_qgraph_free(g->q);
    free(g->q_missing);
    pthread_mutex_destroy(&g->pack->mu);
    free(g->pack);
    free(g);
}

static bool grow(void **p, int *cap, int need, size_t elem)
{
    if (need <= *cap) return true;
    int nc = *cap ? *cap * 2 : 16;
    while (nc < need) nc *= 2;
    void *q = realloc(*p, (size_t)nc * elem);
    if (!q) {
        imcap_fail(IMCAP_E_NOMEM, "out of memory growing the encoder graph");
        return false;
    }
    *p = q;
    *cap = nc;
    return true;
}

static int add_value(enc_graph *g, const char *name, int h, int w, int c)
{
    if (!grow((void **)&g->values, &g->cap_values, g->n_values + 1, sizeof *g->values)) return -1;
    enc_value *v = &g->values[g->n_values];
    copy_name(v->name, name);
    v->h = h;
    v->w = w;
    v->c = c;
    return g->n_values++;
}

static bool shape_ok(int h, int w, int c)
{
    return h >= 1 && w >= 1 && c >= 1 && h <= MAX_DIM && w <= MAX_DIM && c <= MAX_DIM &&
           (int64_t)h * w * c <= MAX_VALUE_FLOATS;
}

int enc_graph_add_input(enc_graph *g, const char *name, int h, int w, int c)
{
    if (g->input >= 0) {
        imcap_fail(IMCAP_E_ARG, "%s: the graph already has an input", g->name);
        return -1;
    }
    if (!shape_ok(h, w, c)) {
        imcap_fail(IMCAP_E_ARG, "%s: bad input shape %dx%dx%d", g->name, h, w, c);
        return -1;
    }
    g->input = add_value(g, name, h, w, c);
    return g->input;
}

static int add_param_common(enc_graph *g, const char *name, int n_dims, const int *shape, size_t *count)
{
    if (n_dims < 1 || n_dims > 4) {
        imcap_fail(IMCAP_E_ARG, "%s: parameter '%s' has %d dims (1..4 allowed)", g->name, name, n_dims);
        return -1;
    }
    size_t n = 1;
    for (int i = 0; i < n_dims; i++) {
        if (shape[i] < 1 || shape[i] > MAX_VALUE_FLOATS || !imcap_mul_size(n, (size_t)shape[i], &n) ||
            n > MAX_VALUE_FLOATS) {
            imcap_fail(IMCAP_E_ARG, "%s: parameter '%s' has a bad shape (dim %d = %d)", g->name, name, i,
                       shape[i]);
            return -1;
        }
    }
    if (!grow((void **)&g->params, &g->cap_params, g->n_params + 1, sizeof *g->params)) return -1;
    g->has_checksum = false;
    enc_param *p = &g->params[g->n_params];
    memset(p, 0, sizeof *p);
    copy_name(p->name, name);
    p->n_dims = n_dims;
    for (int i = 0; i < n_dims; i++) p->shape[i] = shape[i];
    p->count = n;
    *count = n;
    return g->n_params;
}

int enc_graph_add_param(enc_graph *g, const char *name, int n_dims, const int *shape, const float *data)
{
    size_t n;
    if (g->param_ext) {
        imcap_fail(IMCAP_E_ARG, "%s: cannot add copied parameters to a loaded graph", g->name);
        return -1;
    }
    if (!data) {
        imcap_fail(IMCAP_E_ARG, "%s: parameter '%s' has no data", g->name, name);
        return -1;
    }
    int id = add_param_common(g, name, n_dims, shape, &n);
    if (id < 0) return -1;
    /* Each parameter starts on a 64-byte boundary of the one buffer. */
    size_t off = (g->pbuf_len + 15) & ~(size_t)15, need = off + n;
    if (need > g->pbuf_cap) {
        size_t nc = g->pbuf_cap ? g->pbuf_cap * 2 : 1 << 16;
        while (nc < need) nc *= 2;
        float *q = imcap_alloc(nc, sizeof(float));
        if (!q) return -1;
        if (g->pbuf_len) memcpy(q, g->pbuf, g->pbuf_len * sizeof(float));
        imcap_free(g->pbuf);
        g->pbuf = q;
        g->pbuf_cap = nc;
    }
    memcpy(g->pbuf + off, data, n * sizeof(float));
    if (off > g->pbuf_len) memset(g->pbuf + g->pbuf_len, 0, (off - g->pbuf_len) * sizeof(float));
    g->pbuf_len = need;
    g->params[id].offset = off;
    return g->n_params++;
}

int enc_graph_add_param_view(enc_graph *g, const char *name, int n_dims, const int *shape, const float *data)
{
    size_t n;
    if (g->pbuf) {
        imcap_fail(IMCAP_E_ARG, "%s: cannot mix viewed and copied parameters", g->name);
        return -1;
    }
    int id = add_param_common(g, name, n_dims, shape, &n);
    if (id < 0) return -1;
    const float **q = realloc(g->param_ext, (size_t)g->cap_params * sizeof *q);
    if (!q) {
        imcap_fail(IMCAP_E_NOMEM, "out of memory growing the encoder graph");
        return -1;
    }
    g->param_ext = q;
    g->param_ext[id] = data;
    g->params[id].offset = 0;
    return g->n_params++;
}

const float *enc_graph_param_data(const enc_graph *g, int id)
{
    if (id < 0 || id >= g->n_params) return NULL;
    return g->param_ext ? g->param_ext[id] : g->pbuf + g->params[id].offset;
}

const enc_param *enc_graph_param(const enc_graph *g, int id)
{
    return id >= 0 && id < g->n_params ? &g->params[id] : NULL;
}

int enc_graph_n_params(const enc_graph *g) { return g->n_params; }
int enc_graph_n_nodes(const enc_graph *g) { return g->n_nodes; }
int enc_graph_n_values(const enc_graph *g) { return g->n_values; }
int enc_graph_input(const enc_graph *g) { return g->input; }

const enc_node *enc_graph_node(const enc_graph *g, int i)
{
    return i >= 0 && i < g->n_nodes ? &g->nodes[i] : NULL;
}

static const char *op_names[] = {"CONV2D", "DWCONV2D", "DENSE", "ADD", "CONCAT", "AVGPOOL",
                                 "MAXPOOL", "GAP", "SOFTMAX", "ACT", "AFFINE", "PAD"};

const char *enc_op_name(enc_op op)
{
    return (unsigned)op < sizeof op_names / sizeof *op_names ? op_names[op] : "?";
}

/* Output size along one axis; -1 if the window does not fit. */
static int out_size(int in, int k, int s, enc_pad pad)
{
    if (pad == ENC_PAD_SAME) return (in + s - 1) / s;
    if (in < k) return -1;
    return (in - k) / s + 1;
}

/* Checks a parameter's shape against dims (n values, -1 = any). */
static bool param_is(const enc_graph *g, int id, int n, const int *dims)
{
    if (id < 0 || id >= g->n_params) return false;
    const enc_param *p = &g->params[id];
    if (p->n_dims != n) return false;
    for (int i = 0; i < n; i++)
        if (dims[i] >= 0 && p->shape[i] != dims[i]) return false;
    return true;
}

static void shape_str(const enc_graph *g, int id, char *buf, size_t n)
{
    if (id < 0 || id >= g->n_params) {
        snprintf(buf, n, "(no parameter %d)", id);
        return;
    }
    const enc_param *p = &g->params[id];
    int k = snprintf(buf, n, "'%s' [", p->name);
    for (int i = 0; i < p->n_dims && k > 0 && (size_t)k < n; i++)
        k += snprintf(buf + k, n - (size_t)k, i ? ",%d" : "%d", p->shape[i]);
    if (k > 0 && (size_t)k < n) snprintf(buf + k, n - (size_t)k, "]");
}

#define NODE_FAIL(...)                                                                             \
    do {                                                                                           \
        char msg_[400];                                                                            \
        snprintf(msg_, sizeof msg_, __VA_ARGS__);                                                  \
        imcap_fail(IMCAP_E_FORMAT, "%s: node %d '%s' (%s): %s", g->name, g->n_nodes, nd.name,     \
                   enc_op_name(nd.op), msg_);                                                      \
        return -1;                                                                                 \
    } while (0)

int enc_graph_add_node(enc_graph *g, const enc_node *node, const char *out_name)
{
    enc_node nd = *node;
    nd.name[ENC_NAME_LEN - 1] = 0;
    char ps[160];
    if (g->n_nodes >= MAX_NODES) NODE_FAIL("too many nodes");
    if ((unsigned)nd.op > ENC_PAD) NODE_FAIL("unknown op %d", (int)nd.op);
    if ((unsigned)nd.act > ENC_ACT_SIGMOID) NODE_FAIL("unknown activation %d", (int)nd.act);
    if ((unsigned)nd.pad > ENC_PAD_SAME) NODE_FAIL("unknown padding %d", (int)nd.pad);
    int want_in = nd.op == ENC_ADD ? 2 : nd.op == ENC_CONCAT ? -1 : 1;
    if (want_in > 0 && nd.n_inputs != want_in) NODE_FAIL("%d inputs, expected %d", nd.n_inputs, want_in);
    if (nd.n_inputs < 1 || nd.n_inputs > ENC_MAX_INPUTS) NODE_FAIL("%d inputs (1..%d allowed)", nd.n_inputs,
                                                                 ENC_MAX_INPUTS);
    for (int i = 0; i < nd.n_inputs; i++)
        if (nd.inputs[i] < 0 || nd.inputs[i] >= g->n_values)
            NODE_FAIL("input %d refers to value %d, not defined yet", i, nd.inputs[i]);
    for (int i = nd.n_inputs; i < ENC_MAX_INPUTS; i++) nd.inputs[i] = -1;
    const enc_value *x = &g->values[nd.inputs[0]];
    int h = x->h, w = x->w, c = x->c, oh = h, ow = w, oc = c;
    bool windowed = nd.op == ENC_CONV2D || nd.op == ENC_DWCONV2D || nd.op == ENC_AVGPOOL || nd.op == ENC_MAXPOOL;
    bool uses_weight = nd.op == ENC_CONV2D || nd.op == ENC_DWCONV2D || nd.op == ENC_DENSE || nd.op == ENC_AFFINE;
    bool uses_bias = uses_weight;
    if (!uses_weight && nd.weight != -1) NODE_FAIL("takes no weight (got parameter %d)", nd.weight);
    if (!uses_bias && nd.bias != -1) NODE_FAIL("takes no bias (got parameter %d)", nd.bias);
    if (uses_weight && (nd.weight < 0 || nd.weight >= g->n_params)) NODE_FAIL("weight parameter %d missing", nd.weight);
    if (nd.bias < -1 || nd.bias >= g->n_params) NODE_FAIL("bias parameter %d missing", nd.bias);
    if (nd.op == ENC_PAD) {
        if (nd.kh < 0 || nd.sh < 0 || nd.kw < 0 || nd.sw < 0 || nd.kh > MAX_DIM || nd.sh > MAX_DIM ||
            nd.kw > MAX_DIM || nd.sw > MAX_DIM)
            NODE_FAIL("bad padding %d/%d rows, %d/%d columns", nd.kh, nd.sh, nd.kw, nd.sw);
        oh = h + nd.kh + nd.sh;
        ow = w + nd.kw + nd.sw;
        nd.pad = ENC_PAD_VALID;
    } else if (windowed) {
        if (nd.op == ENC_CONV2D || nd.op == ENC_DWCONV2D) {
            const enc_param *wp = &g->params[nd.weight];
            if (wp->n_dims < 3) NODE_FAIL("weight %s has too few dims", (shape_str(g, nd.weight, ps, sizeof ps), ps));
            if (nd.kh == 0 && nd.kw == 0) {
                nd.kh = wp->shape[0];
                nd.kw = wp->shape[1];
            }
        }
        if (nd.sh == 0 && nd.sw == 0) nd.sh = nd.sw = 1;
        if (nd.kh < 1 || nd.kw < 1 || nd.kh > MAX_DIM || nd.kw > MAX_DIM) NODE_FAIL("bad window %dx%d", nd.kh, nd.kw);
        if (nd.sh < 1 || nd.sw < 1 || nd.sh > MAX_DIM || nd.sw > MAX_DIM) NODE_FAIL("bad strides %dx%d", nd.sh, nd.sw);
        oh = out_size(h, nd.kh, nd.sh, nd.pad);
        ow = out_size(w, nd.kw, nd.sw, nd.pad);
        if (oh < 1 || ow < 1) NODE_FAIL("window %dx%d does not fit the %dx%d input with VALID padding", nd.kh, nd.kw, h, w);
    } else {
        nd.kh = nd.kw = nd.sh = nd.sw = 0;
        nd.pad = ENC_PAD_VALID;
    }
    switch (nd.op) {
    case ENC_CONV2D: {
        int dims[4] = {nd.kh, nd.kw, c, -1};
        if (!param_is(g, nd.weight, 4, dims))
            NODE_FAIL("weight %s is not [%d,%d,%d,Cout]", (shape_str(g, nd.weight, ps, sizeof ps), ps), nd.kh, nd.kw, c);
        oc = g->params[nd.weight].shape[3];
        break;
    }
    case ENC_DWCONV2D: {
        const enc_param *wp = &g->params[nd.weight];
        int total = wp->n_dims == 3 ? wp->shape[2] : wp->n_dims == 4 ? wp->shape[2] * wp->shape[3] : -1;
        if (nd.mult == 0 && total > 0 && total % c == 0) nd.mult = total / c;
        int d3[3] = {nd.kh, nd.kw, c * nd.mult}, d4[4] = {nd.kh, nd.kw, c, nd.mult};
        if (nd.mult < 1 || !(param_is(g, nd.weight, 3, d3) || param_is(g, nd.weight, 4, d4)))
            NODE_FAIL("weight %s is not [%d,%d,%d*%d]", (shape_str(g, nd.weight, ps, sizeof ps), ps), nd.kh, nd.kw, c,
                      nd.mult);
        oc = c * nd.mult;
        break;
    }
    case ENC_DENSE: {
        int dims[2] = {c, -1};
        if (!param_is(g, nd.weight, 2, dims))
            NODE_FAIL("weight %s is not [%d,Cout]", (shape_str(g, nd.weight, ps, sizeof ps), ps), c);
        oc = g->params[nd.weight].shape[1];
        break;
    }
    case ENC_AFFINE: {
        int dims[1] = {c};
        if (!param_is(g, nd.weight, 1, dims))
            NODE_FAIL("scale %s is not [%d]", (shape_str(g, nd.weight, ps, sizeof ps), ps), c);
        break;
    }
    case ENC_ADD: {
        const enc_value *y = &g->values[nd.inputs[1]];
        if (y->h != h || y->w != w || y->c != c)
            NODE_FAIL("adds %dx%dx%d '%s' and %dx%dx%d '%s'", h, w, c, x->name, y->h, y->w, y->c, y->name);
        break;
    }
    case ENC_CONCAT: {
        int64_t sum = 0;
        for (int i = 0; i < nd.n_inputs; i++) {
            const enc_value *y = &g->values[nd.inputs[i]];
            if (y->h != h || y->w != w)
                NODE_FAIL("input %d '%s' is %dx%d, input 0 is %dx%d", i, y->name, y->h, y->w, h, w);
            sum += y->c;
        }
        if (sum > MAX_DIM) NODE_FAIL("%lld channels", (long long)sum);
        oc = (int)sum;
        break;
    }
    case ENC_GAP: oh = ow = 1; break;
    default: break;
    }
    if (nd.op != ENC_DWCONV2D) nd.mult = 0;
    if (nd.bias >= 0) {
        int dims[1] = {oc};
        if (!param_is(g, nd.bias, 1, dims))
            NODE_FAIL("bias %s is not [%d]", (shape_str(g, nd.bias, ps, sizeof ps), ps), oc);
    }
    if (!shape_ok(oh, ow, oc)) NODE_FAIL("output shape %dx%dx%d out of range", oh, ow, oc);
    if (!grow((void **)&g->nodes, &g->cap_nodes, g->n_nodes + 1, sizeof *g->nodes)) return -1;
    int out = add_value(g, out_name ? out_name : nd.name, oh, ow, oc);
    if (out < 0) return -1;
    nd.output = out;
    g->nodes[g->n_nodes++] = nd;
    g->has_checksum = false;
    return out;
}

imcap_status enc_graph_set_output(enc_graph *g, const char *name, int value_id)
{
    if (!name || !*name || strlen(name) >= ENC_NAME_LEN)
        return imcap_fail(IMCAP_E_ARG, "%s: bad output name", g->name);
    if (value_id < 0 || value_id >= g->n_values)
        return imcap_fail(IMCAP_E_ARG, "%s: output '%s' refers to value %d of %d", g->name, name, value_id,
                          g->n_values);
    for (int i = 0; i < g->n_outputs; i++)
        if (!strcmp(g->outputs[i].name, name)) {
            g->outputs[i].value = value_id;
            return IMCAP_OK;
        }
    if (!grow((void **)&g->outputs, &g->cap_outputs, g->n_outputs + 1, sizeof *g->outputs)) return IMCAP_E_NOMEM;
    copy_name(g->outputs[g->n_outputs].name, name);
    g->outputs[g->n_outputs].value = value_id;
    g->n_outputs++;
    return IMCAP_OK;
}

int enc_graph_n_outputs(const enc_graph *g) { return g->n_outputs; }

const char *enc_graph_output_name(const enc_graph *g, int i)
{
    return i >= 0 && i < g->n_outputs ? g->outputs[i].name : NULL;
}

void enc_graph_set_preproc(enc_graph *g, const enc_preproc *p)
{
    g->pre = *p;
    g->has_pre = true;
    g->has_checksum = false;
}

const enc_preproc *enc_graph_preproc(const enc_graph *g) { return g->has_pre ? &g->pre : NULL; }

static int stored_output(const enc_graph *g, const char *name)
{
    for (int i = 0; i < g->n_outputs; i++)
        if (!strcmp(g->outputs[i].name, name)) return g->outputs[i].value;
    return -1;
}

/* The spatial map the "embedding" output pools: the input of its global
 * average pool (GAP, or an average pool whose one window covers the whole
 * map), or -1. */
static int pooled_map(const enc_graph *g)
{
    int e = stored_output(g, "embedding");
    if (e <= 0) return -1;
    const enc_node *nd = &g->nodes[e - 1]; /* node i makes value i+1 */
    const enc_value *x = &g->values[nd->inputs[0]], *y = &g->values[e];
    bool whole = nd->op == ENC_AVGPOOL && y->h == 1 && y->w == 1 && nd->kh == x->h && nd->kw == x->w &&
                 nd->pad == ENC_PAD_VALID;
    if ((nd->op != ENC_GAP && !whole) || nd->act != ENC_ACT_NONE) return -1;
    return nd->inputs[0];
}

int enc_graph_output(const enc_graph *g, const char *name)
{
    int v = stored_output(g, name);
    if (v < 0 && !strcmp(name, "grid")) v = pooled_map(g);
    return v;
}

const enc_value *enc_graph_value(const enc_graph *g, int id)
{
    return id >= 0 && id < g->n_values ? &g->values[id] : NULL;
}

const char *enc_graph_name(const enc_graph *g) { return g->name; }

/* ---------------------------------------------------------------- running */

static size_t value_floats(const enc_graph *g, int id)
{
    const enc_value *v = &g->values[id];
    return (size_t)v->h * v->w * v->c;
}

ops_win enc_graph_node_win(const enc_graph *g, const enc_node *nd, int n)
{
    const enc_value *x = &g->values[nd->inputs[0]], *y = &g->values[nd->output];
    ops_win w = {n, x->h, x->w, x->c, y->h, y->w, y->c, nd->kh, nd->kw, nd->sh, nd->sw, 0, 0, nd->mult};
    if (nd->pad == ENC_PAD_SAME) {
        int th = (y->h - 1) * nd->sh + nd->kh - x->h, tw = (y->w - 1) * nd->sw + nd->kw - x->w;
        w.pt = th > 0 ? th / 2 : 0;
        w.pl = tw > 0 ? tw / 2 : 0;
    }
    return w;
}

/* W of a CONV2D or DENSE node as the GEMM's [k][n]. */
static void weight_dims(const enc_graph *g, const enc_node *nd, int *k, int *n)
{
    const enc_param *wp = &g->params[nd->weight];
    *n = wp->shape[wp->n_dims - 1];
    *k = (int)(wp->count / (size_t)*n);
}

/* Work of pack_weights, run on the worker threads: item 0 recomputes the
 * file's checksum (when there is one to verify), item i > 0 packs node
 * first + i - 1 into the buffers allocated for it. */
typedef struct pack_ctx {
    const enc_graph *g;
    int first;
    bool verify;
} pack_ctx;

static void pack_task(void *vctx, size_t i0, size_t i1, int tid)
{
    const pack_ctx *t = vctx;
    const enc_graph *g = t->g;
    for (size_t i = i0; i < i1; i++) {
        if (i == 0) {
            if (t->verify) g->pack->computed = enc_graph_compute_checksum(g);
            continue;
        }
        int id = t->first + (int)i - 1;
        const enc_node *nd = &g->nodes[id];
        if (!g->pack->w[id]) continue;
        const float *w = enc_graph_param_data(g, nd->weight);
        int k, n;
        weight_dims(g, nd, &k, &n);
        ops_pack_weights(k, n, w, g->pack->w[id]);
        if (g->pack->wu[id]) ops_winograd_pack(g->values[nd->inputs[0]].c, n, w, g->pack->wu[id]);
    }
}

/* Packs the weights of nodes added since the last run (see enc_pack); the
 * first run of a loaded graph also checks its weights against the file's
 * checksum, so a damaged weight fails loudly instead of skewing outputs.
 * Both are spread over the worker threads (the checksum is one item). */
static imcap_status pack_weights(const enc_graph *g)
{
    enc_pack *pk = g->pack;
    imcap_status st = IMCAP_OK;
    pthread_mutex_lock(&pk->mu);
    bool verify = pk->verified == 0 && g->has_checksum && g->path;
    if (pk->n < g->n_nodes && pk->cap < g->n_nodes) {
        float **q = realloc(pk->w, (size_t)g->n_nodes * sizeof *q), **qu = q ? realloc(pk->wu, (size_t)g->n_nodes * sizeof *qu) : NULL;
        if (q) pk->w = q;
        if (qu) pk->wu = qu;
        if (!q || !qu) st = imcap_fail(IMCAP_E_NOMEM, "%s: out of memory packing weights", g->name);
        else pk->cap = g->n_nodes;
    }
    int first = pk->n, i = first;
    for (; st == IMCAP_OK && i < g->n_nodes; i++) {
        const enc_node *nd = &g->nodes[i];
        pk->w[i] = pk->wu[i] = NULL;
        if ((nd->op != ENC_CONV2D && nd->op != ENC_DENSE) || ops_gemm_is_openblas()) continue;
        int k, n;
        weight_dims(g, nd, &k, &n);
        ops_win win = enc_graph_node_win(g, nd, 1);
        bool wino = nd->op == ENC_CONV2D && ops_winograd_ok(&win);
        pk->w[i] = imcap_alloc(ops_packed_floats(k, n), sizeof(float));
        pk->wu[i] = wino ? imcap_alloc(ops_winograd_floats(win.c, n), sizeof(float)) : NULL;
        if (!pk->w[i] || (wino && !pk->wu[i]))
            st = imcap_fail(IMCAP_E_NOMEM, "%s: out of memory packing the weights of '%s'", g->name, nd->name);
    }
    if (st != IMCAP_OK) {
        for (int j = first; j < i; j++) {
            imcap_free(pk->w[j]);
            imcap_free(pk->wu[j]);
        }
    } else if (verify || first < g->n_nodes) {
        pack_ctx t = {g, first, verify};
        ops_parallel((size_t)(g->n_nodes - first) + 1, 1, pack_task, &t);
        pk->n = g->n_nodes;
        if (verify) pk->verified = pk->computed == g->checksum ? 1 : -1;
    }
    if (st == IMCAP_OK && pk->verified < 0)
        st = imcap_fail(IMCAP_E_FORMAT, "%s: weights checksum mismatch (stored %08x, computed %08x): the file is damaged",
                        g->path, g->checksum, pk->computed);
    pthread_mutex_unlock(&pk->mu);
    return st;
}

/* The bf16 weights of the nodes added since the last bf16 run. */
static imcap_status pack_bf16(const enc_graph *g)
{
    enc_pack *pk = g->pack;
    imcap_status st = IMCAP_OK;
    pthread_mutex_lock(&pk->mu);
    if (pk->nb < g->n_nodes) {
        uint16_t **q = realloc(pk->wb, (size_t)g->n_nodes * sizeof *q);
        if (!q) st = imcap_fail(IMCAP_E_NOMEM, "%s: out of memory packing bf16 weights", g->name);
        else pk->wb = q;
    }
    for (; st == IMCAP_OK && pk->nb < g->n_nodes; pk->nb++) {
        const enc_node *nd = &g->nodes[pk->nb];
        pk->wb[pk->nb] = NULL;
        if (nd->op != ENC_CONV2D && nd->op != ENC_DENSE) continue;
        int k, n;
        weight_dims(g, nd, &k, &n);
        uint16_t *wb = imcap_alloc(ops_bf16_packed(k, n), sizeof(uint16_t));
        if (!wb) {
            st = imcap_fail(IMCAP_E_NOMEM, "%s: out of memory packing the bf16 weights of '%s'", g->name, nd->name);
            break;
        }
        ops_bf16_pack(k, n, enc_graph_param_data(g, nd->weight), wb);
        pk->wb[pk->nb] = wb;
    }
    pthread_mutex_unlock(&pk->mu);
    return st;
}

static void run_node(const enc_graph *g, const enc_node *nd, int n, float *const *buf, float *scratch)
{
    const float *x = buf[nd->inputs[0]];
    float *y = buf[nd->output];
    const enc_value *xv = &g->values[nd->inputs[0]], *yv = &g->values[nd->output];
    const float *w = nd->weight >= 0 ? enc_graph_param_data(g, nd->weight) : NULL;
    const float *b = nd->bias >= 0 ? enc_graph_param_data(g, nd->bias) : NULL;
    int id = (int)(nd - g->nodes);
    /* NULL on the OpenBLAS path */
    const float *wp = id < g->pack->n ? g->pack->w[id] : NULL, *wu = id < g->pack->n ? g->pack->wu[id] : NULL;
    size_t pix = (size_t)n * yv->h * yv->w, count = pix * (size_t)yv->c;
    bool act_done = false;
    const uint16_t *wb = enc_graph_precision(g) == ENC_PREC_BF16 && id < g->pack->nb ? g->pack->wb[id] : NULL;
    if (wb && (nd->op == ENC_CONV2D || nd->op == ENC_DENSE)) {
        ops_win win = enc_graph_node_win(g, nd, n);
        int k, nn;
        weight_dims(g, nd, &k, &nn);
        ops_gemm_bf16(x, (size_t)xv->c, nd->op == ENC_CONV2D ? &win : NULL, wb, b, nd->act, y, (int)pix, k, nn);
        return;
    }
    switch (nd->op) {
    case ENC_CONV2D: {
        ops_win win = enc_graph_node_win(g, nd, n);
        ops_conv2d(&win, x, w, wp, wu, b, nd->act, y, scratch);
        act_done = true;
        break;
    }
    case ENC_DWCONV2D: {
        ops_win win = enc_graph_node_win(g, nd, n);
        ops_dwconv2d(&win, x, w, b, nd->act, y);
        act_done = true;
        break;
    }
    case ENC_DENSE:
        ops_dense((int)pix, xv->c, yv->c, x, w, wp, b, nd->act, y);
        act_done = true;
        break;
    case ENC_ADD: ops_add(count, x, buf[nd->inputs[1]], y); break;
    case ENC_CONCAT: {
        const float *xs[ENC_MAX_INPUTS];
        int cx[ENC_MAX_INPUTS];
        for (int i = 0; i < nd->n_inputs; i++) {
            xs[i] = buf[nd->inputs[i]];
            cx[i] = g->values[nd->inputs[i]].c;
        }
        ops_concat(pix, nd->n_inputs, xs, cx, y);
        break;
    }
    case ENC_AVGPOOL: {
        ops_win win = enc_graph_node_win(g, nd, n);
        ops_avgpool(&win, x, y);
        break;
    }
    case ENC_MAXPOOL: {
        ops_win win = enc_graph_node_win(g, nd, n);
        ops_maxpool(&win, x, y);
        break;
    }
    case ENC_GAP: ops_gap(n, xv->h * xv->w, xv->c, x, y); break;
    case ENC_SOFTMAX: ops_softmax(pix, yv->c, x, y); break;
    case ENC_ACT: memcpy(y, x, count * sizeof(float)); break;
    case ENC_AFFINE: ops_affine(pix, yv->c, x, w, b, y); break;
    case ENC_PAD: ops_pad(n, xv->h, xv->w, xv->c, nd->kh, nd->kw, yv->h, yv->w, x, y); break;
    }
    if (!act_done) ops_bias_act(pix, yv->c, NULL, nd->act, y);
}

static enc_profile_fn g_profile;
static void *g_profile_user;

/* Nodes whose output is large per image run image-chunk by image-chunk
 * (run_segment): at batch 8 a MobileNet's early values (4.8 MB per image)
 * would otherwise stream through DRAM between every two ops. */
enum { SPATIAL_MIN_BYTES = 512 << 10, SEGMENT_CACHE_BYTES = 4 << 20 };

static bool is_spatial(const enc_graph *g, int i)
{
    return value_floats(g, g->nodes[i].output) * sizeof(float) >= SPATIAL_MIN_BYTES;
}

/* Runs needed nodes i..j for the batch in chunks of images. Values produced
 * and consumed inside the segment (and not requested: need 2) live per
 * chunk only; the others get whole-batch buffers in buf. */
static imcap_status run_segment(const enc_graph *g, enc_ws *ws, int i, int j, int n, const char *run,
                                const int *last, const char *need, float **buf, float *scratch)
{
    size_t maxv = 0;
    for (int k = i; k <= j; k++)
        if (run[k] && value_floats(g, g->nodes[k].output) > maxv) maxv = value_floats(g, g->nodes[k].output);
    int chunk = maxv ? (int)(SEGMENT_CACHE_BYTES / (maxv * sizeof(float))) : n;
    if (chunk < 1) chunk = 1;
    if (chunk > n) chunk = n;
    int nv = g->n_values;
    float **view = calloc((size_t)nv, sizeof(float *));
    char *internal = calloc((size_t)nv, 1);
    if (!view || !internal) {
        free(view);
        free(internal);
        return imcap_fail(IMCAP_E_NOMEM, "%s: out of memory planning a run", g->name);
    }
    imcap_status st = IMCAP_OK;
    for (int k = i; k <= j && st == IMCAP_OK; k++) {
        if (!run[k]) continue;
        int o = g->nodes[k].output;
        internal[o] = last[o] > k && last[o] <= j && need[o] != 2;
        if (!internal[o]) {
            size_t cnt = (size_t)n * value_floats(g, o);
            if (!(buf[o] = enc_ws_alloc(ws, cnt)))
                st = imcap_fail(IMCAP_E_NOMEM, "%s: out of memory for value '%s' (%zu floats)", g->name,
                                g->values[o].name, cnt);
        }
    }
    for (int c0 = 0; c0 < n && st == IMCAP_OK; c0 += chunk) {
        int nc = n - c0 < chunk ? n - c0 : chunk;
        for (int k = i; k <= j && st == IMCAP_OK; k++) {
            if (!run[k]) continue;
            const enc_node *nd = &g->nodes[k];
            int o = nd->output;
            for (int q = 0; q < nd->n_inputs; q++) {
                int v = nd->inputs[q];
                if (!internal[v]) view[v] = buf[v] + (size_t)c0 * value_floats(g, v);
            }
            if (internal[o]) {
                if (!(view[o] = enc_ws_alloc(ws, (size_t)nc * value_floats(g, o)))) {
                    st = imcap_fail(IMCAP_E_NOMEM, "%s: out of memory for value '%s'", g->name, g->values[o].name);
                    break;
                }
            } else {
                view[o] = buf[o] + (size_t)c0 * value_floats(g, o);
            }
            double t0 = g_profile ? imcap_now() : 0.0;
            run_node(g, nd, nc, view, scratch);
            if (g_profile) g_profile(g_profile_user, g, k, nc, imcap_now() - t0);
            for (int q = 0; q < nd->n_inputs; q++) {
                int v = nd->inputs[q];
                if (internal[v] && last[v] == k && view[v]) {
                    enc_ws_release(ws, view[v]);
                    view[v] = NULL;
                }
            }
        }
    }
    for (int v = 0; v < nv; v++)
        if (internal[v]) enc_ws_release(ws, view[v]);
    free(view);
    free(internal);
    return st;
}


void enc_graph_set_profiler(enc_profile_fn fn, void *user)
{
    g_profile = fn;
    g_profile_user = user;
}

void enc_graph_plan(const enc_graph *g, const int *ids, int n_ids, int *last, char *need, char *run)
{
    for (int v = 0; v < g->n_values; v++) last[v] = -1;
    for (int i = 0; i < n_ids; i++) need[ids[i]] = 2; /* 2: requested output */
    for (int i = g->n_nodes - 1; i >= 0; i--) {
        const enc_node *nd = &g->nodes[i];
        if (!need[nd->output]) continue;
        run[i] = 1;
        for (int k = 0; k < nd->n_inputs; k++) {
            if (!need[nd->inputs[k]]) need[nd->inputs[k]] = 1;
            if (last[nd->inputs[k]] < i) last[nd->inputs[k]] = i;
        }
    }
}

imcap_status enc_graph_run(const enc_graph *g, const float *input, int n, const int *ids, int n_ids,
                           float *const *outs)
{
    if (g->input < 0) return imcap_fail(IMCAP_E_ARG, "%s: the graph has no input", g->name);
    if (n < 1 || n > 4096) return imcap_fail(IMCAP_E_ARG, "%s: batch of %d images", g->name, n);
    if (n_ids < 1) return imcap_fail(IMCAP_E_ARG, "%s: no outputs requested", g->name);
    for (int i = 0; i < n_ids; i++)
        if (ids[i] < 0 || ids[i] >= g->n_values || !outs[i])
            return imcap_fail(IMCAP_E_ARG, "%s: requested output %d (value %d) is invalid", g->name, i, ids[i]);
    if (enc_graph_precision(g) == ENC_PREC_INT8) {
        imcap_status cs = cpu_check();
        return cs ? cs : enc_qgraph_run(g, input, n, ids, n_ids, outs);
    }
    int nv = g->n_values, nn = g->n_nodes;
    /* need[v]: value v must be computed; last[v]: index of the last needed node reading v. */
    int *last = malloc((size_t)nv * sizeof(int));
    char *need = calloc((size_t)nv, 1), *run = calloc((size_t)nn + 1, 1);
    float **buf = calloc((size_t)nv, sizeof(float *));
    imcap_status st = IMCAP_OK;
    if (!last || !need || !run || !buf) {
        st = imcap_fail(IMCAP_E_NOMEM, "%s: out of memory planning a run", g->name);
        goto done;
    }
    enc_graph_plan(g, ids, n_ids, last, need, run);
    if ((st = cpu_check()) != IMCAP_OK || (st = pack_weights(g)) != IMCAP_OK) goto done;
    if (enc_graph_precision(g) == ENC_PREC_BF16 && (st = pack_bf16(g)) != IMCAP_OK) goto done;
    size_t scratch_len = 0;
    for (int i = 0; i < nn; i++) {
        if (!run[i] || g->nodes[i].op != ENC_CONV2D) continue;
        ops_win win = enc_graph_node_win(g, &g->nodes[i], n);
        size_t s = ops_conv2d_scratch(&win);
        if (s > scratch_len) scratch_len = s;
    }
    enc_ws *ws = enc_ws_take(g);
    float *scratch = NULL;
    if (!ws || (scratch_len && !(scratch = enc_ws_alloc(ws, scratch_len)))) {
        if (ws) enc_ws_give_back(g, ws);
        st = IMCAP_E_NOMEM;
        goto done;
    }
    buf[g->input] = (float *)input;
    /* A requested value may be the input itself. */
    for (int i = 0; i < n_ids; i++)
        if (ids[i] == g->input) memcpy(outs[i], input, (size_t)n * value_floats(g, ids[i]) * sizeof(float));
    ops_blas_enter();
    for (int i = 0; i < nn && st == IMCAP_OK; i++) {
        if (!run[i]) continue;
        if (n > 1 && is_spatial(g, i)) {
            /* A run of nodes with large per-image values: executed image chunk
             * by chunk so each chunk's intermediates stay in cache. */
            int j = i;
            while (j + 1 < nn && (!run[j + 1] || is_spatial(g, j + 1))) j++;
            st = run_segment(g, ws, i, j, n, run, last, need, buf, scratch);
            for (int k = i; k <= j && st == IMCAP_OK; k++) {
                if (!run[k]) continue;
                int o = g->nodes[k].output;
                for (int q = 0; q < n_ids; q++)
                    if (ids[q] == o && buf[o]) memcpy(outs[q], buf[o], (size_t)n * value_floats(g, o) * sizeof(float));
            }
            /* Values whose last reader was in the segment. */
            for (int v = 0; v < nv; v++)
                if (v != g->input && buf[v] && last[v] <= j) {
                    enc_ws_release(ws, buf[v]);
                    buf[v] = NULL;
                }
            i = j;
            continue;
        }
        const enc_node *nd = &g->nodes[i];
        int o = nd->output;
        size_t cnt = (size_t)n * value_floats(g, o);
        if (!(buf[o] = enc_ws_alloc(ws, cnt))) {
            st = imcap_fail(IMCAP_E_NOMEM, "%s: out of memory for value '%s' (%zu floats)", g->name,
                            g->values[o].name, cnt);
            break;
        }
        double t0 = g_profile ? imcap_now() : 0.0;
        run_node(g, nd, n, buf, scratch);
        if (g_profile) g_profile(g_profile_user, g, i, n, imcap_now() - t0);
        for (int k = 0; k < n_ids; k++)
            if (ids[k] == o) memcpy(outs[k], buf[o], cnt * sizeof(float));
        for (int k = 0; k < nd->n_inputs; k++) {
            int v = nd->inputs[k];
            if (v != g->input && last[v] == i && buf[v]) {
                enc_ws_release(ws, buf[v]);
                buf[v] = NULL;
            }
        }
        if (last[o] < 0) {
            enc_ws_release(ws, buf[o]);
            buf[o] = NULL;
        }
    }
    ops_blas_leave();
    for (int v = 0; v < nv; v++)
        if (v != g->input) enc_ws_release(ws, buf[v]);
    enc_ws_give_back(g, ws);
done:
    free(last);
    free(need);
    free(run);
    free(buf);
    return st;
}
