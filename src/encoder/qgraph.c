/*
 * qgraph.c - the int8 program of an encoder graph (qgraph.h): builder,
 * validation, the derived per-node constants (TFLite's multipliers, packed
 * weights, activation ranges; made by the first int8 run) and the executor.
 *
 * The constants:
 * - CONV_2D / DEPTHWISE_CONV_2D: int32 accumulation, requantized with the
 *   float scale in_scale * w_scale[c] / out_scale (qops.h, q_requant1);
 * - ADD: the runtime's qu8 add (qops.h, q_add);
 * as the runtime that made the goldens computes them (TFLite with its
 * XNNPACK delegate), checked layer by layer on both MobileNets.
 * - pools and the softmax as qops.h; fused activations clamp to
 *   CalculateActivationRangeUint8.
 */
#include "graph_impl.h"
#include "cpu.h"
#include "qops.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

enum { Q_MAX_K = 16384 };

typedef struct enc_qtensor {
    enc_qtype type;
    size_t count;
    const void *data;
    void *own;
} enc_qtensor;

/* Derived constants of one node (prepare). */
typedef struct qprep {
    q_gemm gemm;            /* CONV2D */
    q_dw dw;                /* DWCONV2D */
    q_add add;              /* ADD */
    int32_t lo, hi;         /* pools */
    void *mem;              /* everything allocated for the node */
} qprep;

struct enc_qprog {
    float *vscale;
    int32_t *vzp;
    char *vset;
    int cap_v;
    enc_qnode *nodes;
    char *nset;
    int cap_n;
    enc_qtensor *t;
    int n_t, cap_t;
    bool finished;
    int fin_nodes, fin_values; /* the graph's size when finished */
    bool has_crc;
    uint32_t crc;
    qprep *prep;            /* [n_nodes] once prepared (under g->pack->mu) */
    int n_prep;
    ops_win *wins;          /* [n_nodes], per image (n = 1) */
};

static const size_t qt_size[3] = {1, 4, 4};

void enc_qgraph_free(struct enc_qprog *q)
{
    if (!q) return;
    for (int i = 0; i < q->n_t; i++) free(q->t[i].own);
    for (int i = 0; i < q->n_prep; i++) imcap_free(q->prep[i].mem);
    free(q->t);
    free(q->prep);
    free(q->wins);
    free(q->vscale);
    free(q->vzp);
    free(q->vset);
    free(q->nodes);
    free(q->nset);
    free(q);
}

static struct enc_qprog *prog(enc_graph *g)
{
    if (!g->q && !(g->q = calloc(1, sizeof *g->q))) imcap_fail(IMCAP_E_NOMEM, "%s: out of memory", g->name);
    return g->q;
}

static bool grow_to(void **p, int *cap, int need, size_t elem, char **set)
{
    if (need <= *cap) return true;
    int nc = *cap ? *cap : 64;
    while (nc < need) nc *= 2;
    void *q = realloc(*p, (size_t)nc * elem);
    if (q) *p = q;
    char *s = q ? realloc(*set, (size_t)nc) : NULL;
    if (!q || !s) return false;
    memset(s + *cap, 0, (size_t)(nc - *cap));
    *set = s;
    *cap = nc;
    return true;
}

static int add_tensor(enc_graph *g, enc_qtype type, size_t count, const void *data, bool copy)
{
    struct enc_qprog *q = prog(g);
    if (!q) return -1;
    if ((unsigned)type > ENC_QT_F32 || count < 1 || count > ((size_t)1 << 28) || !data) {
        imcap_fail(IMCAP_E_ARG, "%s: bad int8 tensor (type %d, %zu elements)", g->name, (int)type, count);
        return -1;
    }
    if (q->n_t == q->cap_t) {
        int nc = q->cap_t ? q->cap_t * 2 : 64;
        enc_qtensor *t = realloc(q->t, (size_t)nc * sizeof *t);
        if (!t) {
            imcap_fail(IMCAP_E_NOMEM, "%s: out of memory", g->name);
            return -1;
        }
        q->t = t;
        q->cap_t = nc;
    }
    enc_qtensor *t = &q->t[q->n_t];
    memset(t, 0, sizeof *t);
    t->type = type;
    t->count = count;
    if (copy) {
        if (!(t->own = malloc(count * qt_size[type]))) {
            imcap_fail(IMCAP_E_NOMEM, "%s: out of memory", g->name);
            return -1;
        }
        memcpy(t->own, data, count * qt_size[type]);
        t->data = t->own;
    } else {
        t->data = data;
    }
    q->finished = false;
    return q->n_t++;
}

int enc_qgraph_add_tensor(enc_graph *g, enc_qtype type, size_t count, const void *data)
{
    return add_tensor(g, type, count, data, true);
}

int enc_qgraph_add_tensor_view(enc_graph *g, enc_qtype type, size_t count, const void *data)
{
    return add_tensor(g, type, count, data, false);
}

imcap_status enc_qgraph_set_value(enc_graph *g, int v, float scale, int32_t zp)
{
    struct enc_qprog *q = prog(g);
    if (!q) return IMCAP_E_NOMEM;
    if (v < 0 || v >= g->n_values) return imcap_fail(IMCAP_E_ARG, "%s: int8 quantization of value %d of %d", g->name, v, g->n_values);
    if (!grow_to((void **)&q->vscale, &q->cap_v, v + 1, sizeof *q->vscale, &q->vset)) return IMCAP_E_NOMEM;
    int cap = q->cap_v;
    int32_t *z = realloc(q->vzp, (size_t)cap * sizeof *z);
    if (!z) return imcap_fail(IMCAP_E_NOMEM, "%s: out of memory", g->name);
    q->vzp = z;
    q->vscale[v] = scale;
    q->vzp[v] = zp;
    q->vset[v] = 1;
    q->finished = false;
    return IMCAP_OK;
}

imcap_status enc_qgraph_set_node(enc_graph *g, int node, const enc_qnode *qn)
{
    struct enc_qprog *q = prog(g);
    if (!q) return IMCAP_E_NOMEM;
    if (node < 0 || node >= g->n_nodes) return imcap_fail(IMCAP_E_ARG, "%s: int8 data of node %d of %d", g->name, node, g->n_nodes);
    if (!grow_to((void **)&q->nodes, &q->cap_n, node + 1, sizeof *q->nodes, &q->nset)) return IMCAP_E_NOMEM;
    q->nodes[node] = *qn;
    q->nset[node] = 1;
    q->finished = false;
    return IMCAP_OK;
}

void enc_qgraph_disable(enc_graph *g, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    enc_qgraph_free(g->q);
    g->q = NULL;
    free(g->q_missing);
    g->q_missing = imcap_strdup(msg);
    if (g->precision == ENC_PREC_INT8) g->precision = ENC_PREC_AUTO;
}

/* ------------------------------------------------------------ validation */

static const enc_qtensor *tensor_of(const struct enc_qprog *q, int id, enc_qtype type)
{
    return id >= 0 && id < q->n_t && q->t[id].type == type ? &q->t[id] : NULL;
}

#define QFAIL(...)                                                                                 \
    do {                                                                                           \
        snprintf(why, sizeof why, __VA_ARGS__);                                                    \
        goto bad;                                                                                  \
    } while (0)

imcap_status enc_qgraph_finish(enc_graph *g)
{
    char why[400];
    struct enc_qprog *q = g->q;
    if (!q) QFAIL("no int8 data");
    for (int v = 0; v < g->n_values; v++) {
        if (v >= q->cap_v || !q->vset[v]) QFAIL("value %d '%s' has no quantization", v, g->values[v].name);
        if (!(q->vscale[v] > 0.0f) || !isfinite(q->vscale[v]) || q->vzp[v] < 0 || q->vzp[v] > 255)
            QFAIL("value %d '%s': scale %g zero point %d", v, g->values[v].name, (double)q->vscale[v], q->vzp[v]);
    }
    for (int i = 0; i < g->n_nodes; i++) {
        const enc_node *nd = &g->nodes[i];
        enc_qnode none = {-1, -1, -1, -1};
        const enc_qnode *qn = i < q->cap_n && q->nset[i] ? &q->nodes[i] : &none;
        const enc_value *x = &g->values[nd->inputs[0]], *y = &g->values[nd->output];
        int xv = nd->inputs[0], yv = nd->output;
        bool weighted = nd->op == ENC_CONV2D || nd->op == ENC_DWCONV2D;
        if (!weighted && (qn->w >= 0 || qn->wzp >= 0 || qn->ws >= 0 || qn->b >= 0))
            QFAIL("node %d '%s' (%s) has int8 tensors it does not use", i, nd->name, enc_op_name(nd->op));
        switch (nd->op) {
        case ENC_CONV2D:
        case ENC_DWCONV2D: {
            size_t oc = (size_t)y->c, count = nd->op == ENC_CONV2D ? (size_t)nd->kh * nd->kw * x->c * oc
                                                                   : (size_t)nd->kh * nd->kw * oc;
            const enc_qtensor *w = tensor_of(q, qn->w, ENC_QT_I8), *wz = tensor_of(q, qn->wzp, ENC_QT_I32),
                              *ws = tensor_of(q, qn->ws, ENC_QT_F32), *b = qn->b >= 0 ? tensor_of(q, qn->b, ENC_QT_I32) : NULL;
            if (!w || w->count != count) QFAIL("node %d '%s': int8 weights missing or not %zu values", i, nd->name, count);
            if (!wz || !ws || wz->count != ws->count || (wz->count != 1 && wz->count != oc))
                QFAIL("node %d '%s': weight zero points / scales missing or not 1 or %zu", i, nd->name, oc);
            if (qn->b >= 0 && (!b || b->count != oc)) QFAIL("node %d '%s': int32 bias is not %zu values", i, nd->name, oc);
            const int32_t *z = wz->data;
            const float *s = ws->data;
            for (size_t c = 0; c < wz->count; c++)
                if (z[c] < -128 || z[c] > 127 || !(s[c] >= 0.0f) || !isfinite(s[c]))
                    QFAIL("node %d '%s': weight zero point %d / scale %g", i, nd->name, z[c], (double)s[c]);
            if (nd->op == ENC_DWCONV2D && nd->kh * nd->kw > Q_DW_MAX_TAPS)
                QFAIL("node %d '%s': a %dx%d depthwise window, int8 supports %d taps", i, nd->name, nd->kh, nd->kw, Q_DW_MAX_TAPS);
            if (nd->op == ENC_CONV2D && (size_t)nd->kh * nd->kw * x->c > Q_MAX_K)
                QFAIL("node %d '%s': %d x %d x %d inputs per output, int8 supports %d", i, nd->name, nd->kh, nd->kw, x->c, Q_MAX_K);
            if (nd->act == ENC_ACT_SIGMOID) QFAIL("node %d '%s': fused sigmoid", i, nd->name);
            break;
        }
        case ENC_ADD: {
            q_add a;
            float bs = q->vscale[nd->inputs[1]];
            if (nd->act == ENC_ACT_SIGMOID) QFAIL("node %d '%s': fused sigmoid", i, nd->name);
            if (!q_add_init(&a, q->vscale[xv], 0, bs, 0, q->vscale[yv], 0, 0, 255))
                QFAIL("node %d '%s': ADD scale ratios %g, %g outside [2^-10, 2^8)", i, nd->name,
                      (double)(q->vscale[xv] / q->vscale[yv]), (double)(bs / q->vscale[yv]));
            break;
        }
        case ENC_AVGPOOL:
        case ENC_MAXPOOL:
        case ENC_GAP:
            if (q->vscale[xv] != q->vscale[yv] || q->vzp[xv] != q->vzp[yv])
                QFAIL("node %d '%s' (%s): input and output quantization differ", i, nd->name, enc_op_name(nd->op));
            if (nd->act == ENC_ACT_SIGMOID) QFAIL("node %d '%s': fused sigmoid", i, nd->name);
            break;
        case ENC_SOFTMAX:
            if (q->vscale[yv] != 1.0f / 256.0f || q->vzp[yv] != 0 || nd->act != ENC_ACT_NONE)
                QFAIL("node %d '%s': softmax output quantization must be 1/256, 0", i, nd->name);
            break;
        default: QFAIL("node %d '%s': %s has no int8 kernel", i, nd->name, enc_op_name(nd->op));
        }
    }
    q->finished = true;
    q->fin_nodes = g->n_nodes;
    q->fin_values = g->n_values;
    free(g->q_missing);
    g->q_missing = NULL;
    return IMCAP_OK;
bad:
    enc_qgraph_disable(g, "%s", why);
    return imcap_fail(IMCAP_E_UNSUPPORTED, "%s: no int8 execution: %s", g->name, why);
}

/* ------------------------------------------------------------ precision */

const char *enc_graph_int8_missing(const enc_graph *g)
{
    if (g->q && g->q->finished && g->q->fin_nodes == g->n_nodes && g->q->fin_values == g->n_values) return NULL;
    return g->q_missing ? g->q_missing
                        : "the encoder has no int8 program (only uint8 TFLite models converted by this version have one)";
}

imcap_status enc_graph_set_precision(enc_graph *g, enc_precision p)
{
    if ((unsigned)p > ENC_PREC_BF16) return imcap_fail(IMCAP_E_ARG, "%s: unknown precision %d", g->name, (int)p);
    if (p == ENC_PREC_BF16 && !cpu_has_avx512_bf16())
        return imcap_fail(IMCAP_E_UNSUPPORTED, "%s: bf16 precision needs a CPU with AVX512_BF16 (vdpbf16ps), which this one lacks",
                          g->name);
    const char *why = enc_graph_int8_missing(g);
    if (p == ENC_PREC_INT8 && why)
        return imcap_fail(IMCAP_E_UNSUPPORTED, "%s: %s: no int8 execution: %s", g->path ? g->path : g->name, g->name, why);
    g->precision = p;
    return IMCAP_OK;
}

/* AUTO: int8 where it is the faster (measured: BENCHMARKS.md, "int8
 * execution": the AVX-512 VNNI kernels, 1.7-2.1x the float path; the AVX2
 * int8 kernels are slower than float). Callers whose embeddings feed a
 * caption decoder ask for float (qgraph.h). */
enc_precision enc_graph_precision(const enc_graph *g)
{
    if (g->precision == ENC_PREC_BF16) return ENC_PREC_BF16;
    if (g->precision == ENC_PREC_FLOAT || enc_graph_int8_missing(g)) return ENC_PREC_FLOAT;
    if (g->precision == ENC_PREC_INT8) return ENC_PREC_INT8;
    return !strcmp(q_kernels_active()->name, "avx512-vnni") ? ENC_PREC_INT8 : ENC_PREC_FLOAT;
}

const char *enc_precision_name(enc_precision p)
{
    return p == ENC_PREC_FLOAT ? "float" : p == ENC_PREC_INT8 ? "int8" : p == ENC_PREC_BF16 ? "bf16" : "auto";
}

imcap_status enc_precision_parse(const char *s, enc_precision *p)
{
    for (int i = 0; i <= ENC_PREC_BF16; i++)
        if (s && !strcmp(s, enc_precision_name((enc_precision)i))) {
            *p = (enc_precision)i;
            return IMCAP_OK;
        }
    return imcap_fail(IMCAP_E_ARG, "precision '%s': expected int8, float, bf16 or auto", s ? s : "(null)");
}

bool enc_qgraph_value(const enc_graph *g, int v, float *scale, int32_t *zp)
{
    if (!g->q || v < 0 || v >= g->q->cap_v || !g->q->vset[v]) return false;
    *scale = g->q->vscale[v];
    *zp = g->q->vzp[v];
    return true;
}

const enc_qnode *enc_qgraph_node(const enc_graph *g, int node)
{
    return g->q && node >= 0 && node < g->q->cap_n && g->q->nset[node] ? &g->q->nodes[node] : NULL;
}

const void *enc_qgraph_tensor(const enc_graph *g, int id, enc_qtype *type, size_t *count)
{
    if (!g->q || id < 0 || id >= g->q->n_t) return NULL;
    *type = g->q->t[id].type;
    *count = g->q->t[id].count;
    return g->q->t[id].data;
}

int enc_qgraph_n_tensors(const enc_graph *g) { return g->q ? g->q->n_t : 0; }

void enc_qgraph_expect_crc(enc_graph *g, uint32_t crc)
{
    if (!g->q) return;
    g->q->crc = crc;
    g->q->has_crc = true;
}

uint32_t enc_qgraph_crc(const enc_graph *g)
{
    const struct enc_qprog *q = g->q;
    if (!q) return 0;
    uint32_t crc = imcap_crc32(0, "imcap int8", 10);
    crc = imcap_crc32(crc, q->vscale, (size_t)g->n_values * sizeof(float));
    crc = imcap_crc32(crc, q->vzp, (size_t)g->n_values * sizeof(int32_t));
    for (int i = 0; i < g->n_nodes; i++) {
        enc_qnode none = {-1, -1, -1, -1};
        const enc_qnode *qn = i < q->cap_n && q->nset[i] ? &q->nodes[i] : &none;
        int32_t ids[4] = {qn->w, qn->wzp, qn->ws, qn->b};
        crc = imcap_crc32(crc, ids, sizeof ids);
    }
    for (int i = 0; i < q->n_t; i++) {
        int32_t head[2] = {(int32_t)q->t[i].type, (int32_t)q->t[i].count};
        crc = imcap_crc32(crc, head, sizeof head);
        crc = imcap_crc32(crc, q->t[i].data, q->t[i].count * qt_size[q->t[i].type]);
    }
    return crc;
}

/* ------------------------------------------------------------ prepare */

static size_t pad16(size_t n) { return (n + 15) & ~(size_t)15; }

/* Per-column float scales as a q_requant array (pad16(oc) floats at mem),
 * output zero point and range. */
static void fill_requant(q_requant *rq, float *mem, int oc, const float *m, int32_t zy, const qprep *pp)
{
    for (size_t c = 0; c < pad16((size_t)oc); c++) mem[c] = c < (size_t)oc ? m[c] : 0.0f;
    rq->scale = mem;
    rq->zy = zy;
    rq->lo = pp->lo;
    rq->hi = pp->hi;
}

static imcap_status prepare_node(const enc_graph *g, int i, qprep *pp)
{
    const struct enc_qprog *q = g->q;
    const enc_node *nd = &g->nodes[i];
    int xv = nd->inputs[0], yv = nd->output;
    float xs = q->vscale[xv], ys = q->vscale[yv];
    int32_t xz = q->vzp[xv], yz = q->vzp[yv];
    memset(pp, 0, sizeof *pp);
    q_act_range(nd->act, ys, yz, &pp->lo, &pp->hi);
    if (nd->op == ENC_ADD) {
        int bv = nd->inputs[1];
        if (!q_add_init(&pp->add, xs, xz, q->vscale[bv], q->vzp[bv], ys, yz, pp->lo, pp->hi))
            return imcap_fail(IMCAP_E_UNSUPPORTED, "%s: node %d '%s': ADD scale ratios outside [2^-10, 2^8)", g->name, i, nd->name);
        return IMCAP_OK;
    }
    if (nd->op != ENC_CONV2D && nd->op != ENC_DWCONV2D) return IMCAP_OK;
    const enc_qnode *qn = &q->nodes[i];
    const int8_t *w = q->t[qn->w].data;
    const int32_t *wz = q->t[qn->wzp].data, *bias = qn->b >= 0 ? q->t[qn->b].data : NULL;
    const float *ws = q->t[qn->ws].data;
    bool per_tensor = q->t[qn->wzp].count == 1;
    int oc = g->values[yv].c;
    size_t np = pad16((size_t)oc);
    float *m = malloc((size_t)oc * sizeof *m);
    if (!m) return imcap_fail(IMCAP_E_NOMEM, "%s: out of memory", g->name);
    for (int c = 0; c < oc; c++) m[c] = xs * ws[per_tensor ? 0 : c] / ys;
    imcap_status st = IMCAP_OK;
    if (nd->op == ENC_CONV2D) {
        int k = nd->kh * nd->kw * g->values[xv].c;
        size_t packed = q_packed_bytes(k, oc);
        /* packed weights, then int32 zw, cterm, float scale */
        pp->mem = imcap_alloc(packed + 3 * np * sizeof(int32_t), 1);
        if (!pp->mem) {
            free(m);
            return IMCAP_E_NOMEM;
        }
        int8_t *wp = pp->mem;
        int32_t *zw = (int32_t *)(wp + packed), *ct = zw + np;
        q_pack_weights(k, oc, w, wp);
        for (size_t c = 0; c < np; c++) {
            if (c >= (size_t)oc) {
                zw[c] = ct[c] = 0;
                continue;
            }
            int32_t z = wz[per_tensor ? 0 : c];
            int64_t colsum = 0;
            for (int kk = 0; kk < k; kk++) colsum += w[(size_t)kk * (size_t)oc + c];
            zw[c] = z;
            ct[c] = (int32_t)((bias ? bias[c] : 0) - (int64_t)xz * colsum + (int64_t)k * xz * z);
        }
        q_gemm *gm = &pp->gemm;
        gm->wp = wp;
        gm->k = k;
        gm->kp = (k + 3) & ~3;
        gm->n = oc;
        gm->zw = zw;
        gm->cterm = ct;
        gm->zw_uniform = per_tensor;
        fill_requant(&gm->rq, (float *)(ct + np), oc, m, yz, pp);
    } else {
        size_t taps = (size_t)nd->kh * (size_t)nd->kw;
        /* float w - zw [taps][oc]; int32 bias; float scale */
        pp->mem = imcap_alloc((taps * (size_t)oc + 2 * np) * sizeof(int32_t), 1);
        if (!pp->mem) {
            free(m);
            return IMCAP_E_NOMEM;
        }
        float *wf = pp->mem;
        int32_t *b = (int32_t *)(wf + taps * (size_t)oc);
        for (size_t t = 0; t < taps; t++)
            for (int c = 0; c < oc; c++) wf[t * (size_t)oc + (size_t)c] = (float)(w[t * (size_t)oc + (size_t)c] - wz[per_tensor ? 0 : c]);
        for (size_t c = 0; c < np; c++) b[c] = bias && c < (size_t)oc ? bias[c] : 0;
        q_dw *d = &pp->dw;
        d->w = wf;
        d->bias = b;
        d->za = xz;
        fill_requant(&d->rq, (float *)(b + np), oc, m, yz, pp);
    }
    free(m);
    return st;
}

/* The first int8 run: checks a loaded program against its stored CRC and
 * derives every node's constants. */
static imcap_status prepare(const enc_graph *g)
{
    struct enc_qprog *q = g->q;
    imcap_status st = IMCAP_OK;
    pthread_mutex_lock(&g->pack->mu);
    if (q->n_prep == g->n_nodes) goto out;
    if (q->has_crc && enc_qgraph_crc(g) != q->crc) {
        st = imcap_fail(IMCAP_E_FORMAT, "%s: int8 program checksum mismatch (stored %08x, computed %08x): the file is damaged",
                        g->path ? g->path : g->name, q->crc, enc_qgraph_crc(g));
        goto out;
    }
    for (int i = 0; i < q->n_prep; i++) imcap_free(q->prep[i].mem);
    free(q->prep);
    free(q->wins);
    q->n_prep = 0;
    q->prep = calloc((size_t)g->n_nodes + 1, sizeof *q->prep);
    q->wins = calloc((size_t)g->n_nodes + 1, sizeof *q->wins);
    if (!q->prep || !q->wins) {
        free(q->prep);
        free(q->wins);
        q->prep = NULL;
        q->wins = NULL;
        st = imcap_fail(IMCAP_E_NOMEM, "%s: out of memory preparing the int8 program", g->name);
        goto out;
    }
    for (int i = 0; i < g->n_nodes && st == IMCAP_OK; i++) {
        q->wins[i] = enc_graph_node_win(g, &g->nodes[i], 1);
        st = prepare_node(g, i, &q->prep[i]);
        q->n_prep = i + 1;
    }
    if (st != IMCAP_OK) {
        for (int i = 0; i < q->n_prep; i++) imcap_free(q->prep[i].mem);
        free(q->prep);
        free(q->wins);
        q->prep = NULL;
        q->wins = NULL;
        q->n_prep = 0;
    }
out:
    pthread_mutex_unlock(&g->pack->mu);
    return st;
}

/* ------------------------------------------------------------ execution */

static size_t value_bytes(const enc_graph *g, int v)
{
    const enc_value *x = &g->values[v];
    return (size_t)x->h * (size_t)x->w * (size_t)x->c;
}

static imcap_status run_qnode(const enc_graph *g, int i, int n, uint8_t *const *buf, struct enc_ws *ws)
{
    const struct enc_qprog *q = g->q;
    const enc_node *nd = &g->nodes[i];
    const qprep *pp = &q->prep[i];
    ops_win win = q->wins[i];
    win.n = n;
    const uint8_t *x = buf[nd->inputs[0]];
    uint8_t *y = buf[nd->output];
    switch (nd->op) {
    case ENC_CONV2D: q_conv2d(&win, &pp->gemm, q->vzp[nd->inputs[0]], x, y); break;
    case ENC_DWCONV2D: {
        q_dw d = pp->dw;
        d.win = &win;
        float *scratch = enc_ws_alloc(ws, q_dw_scratch(&win));
        if (!scratch) return imcap_fail(IMCAP_E_NOMEM, "%s: out of memory for node '%s'", g->name, nd->name);
        q_dwconv2d(&d, x, y, scratch);
        enc_ws_release(ws, scratch);
        break;
    }
    case ENC_ADD: q_addv(&pp->add, x, buf[nd->inputs[1]], y, (size_t)n * value_bytes(g, nd->output)); break;
    case ENC_AVGPOOL: q_avgpool(&win, x, y, pp->lo, pp->hi); break;
    case ENC_MAXPOOL: q_maxpool(&win, x, y, pp->lo, pp->hi); break;
    case ENC_GAP: {
        const enc_value *xv = &g->values[nd->inputs[0]];
        ops_win gw = {n, xv->h, xv->w, xv->c, 1, 1, xv->c, xv->h, xv->w, 1, 1, 0, 0, 0};
        q_avgpool(&gw, x, y, pp->lo, pp->hi);
        break;
    }
    case ENC_SOFTMAX:
        q_softmax((size_t)n * g->values[nd->output].h * g->values[nd->output].w, g->values[nd->output].c,
                  q->vscale[nd->inputs[0]], x, y);
        break;
    default: break; /* excluded by enc_qgraph_finish */
    }
    return IMCAP_OK;
}

static void dequantize(const enc_graph *g, int v, size_t count, const uint8_t *x, float *out)
{
    float s = g->q->vscale[v];
    int32_t z = g->q->vzp[v];
    for (size_t i = 0; i < count; i++) out[i] = s * (float)((int32_t)x[i] - z);
}

imcap_status enc_qgraph_run(const enc_graph *g, const float *input, int n, const int *ids, int n_ids,
                            float *const *outs)
{
    if (enc_graph_int8_missing(g))
        return imcap_fail(IMCAP_E_UNSUPPORTED, "%s: no int8 execution: %s", g->name, enc_graph_int8_missing(g));
    if (n > 1) {
        /* Image by image: each image's values stay in cache from one node to
         * the next (a batch would stream them through memory); the only
         * batched work, the classifier's one-pixel GEMM, is small. */
        float *o1[ENC_MAX_INPUTS * 4];
        if (n_ids > (int)(sizeof o1 / sizeof o1[0])) return imcap_fail(IMCAP_E_ARG, "%s: %d outputs requested", g->name, n_ids);
        size_t isz = value_bytes(g, g->input);
        imcap_status st = IMCAP_OK;
        for (int i = 0; i < n && st == IMCAP_OK; i++) {
            for (int k = 0; k < n_ids; k++) o1[k] = outs[k] + (size_t)i * value_bytes(g, ids[k]);
            st = enc_qgraph_run(g, input + (size_t)i * isz, 1, ids, n_ids, o1);
        }
        return st;
    }
    int nv = g->n_values, nn = g->n_nodes;
    int *last = malloc((size_t)nv * sizeof(int));
    char *need = calloc((size_t)nv, 1), *run = calloc((size_t)nn + 1, 1);
    uint8_t **buf = calloc((size_t)nv, sizeof *buf);
    struct enc_ws *ws = NULL;
    imcap_status st = IMCAP_OK;
    if (!last || !need || !run || !buf) {
        st = imcap_fail(IMCAP_E_NOMEM, "%s: out of memory planning a run", g->name);
        goto done;
    }
    enc_graph_plan(g, ids, n_ids, last, need, run);
    if ((st = prepare(g)) != IMCAP_OK) goto done;
    if (!(ws = enc_ws_take(g))) {
        st = IMCAP_E_NOMEM;
        goto done;
    }
    /* The input, quantized as TFLite's QUANTIZE: round(x / scale) + zp. */
    int in = g->input;
    size_t in_count = (size_t)n * value_bytes(g, in);
    if (!(buf[in] = (uint8_t *)enc_ws_alloc(ws, (in_count + 3) / 4))) {
        st = imcap_fail(IMCAP_E_NOMEM, "%s: out of memory for the input", g->name);
        goto done;
    }
    float is = g->q->vscale[in];
    int32_t iz = g->q->vzp[in];
    for (size_t i = 0; i < in_count; i++) {
        float r = roundf(input[i] / is);
        int32_t v = (r > 1000.0f ? 1000 : r < -1000.0f ? -1000 : (int32_t)r) + iz;
        buf[in][i] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
    }
    for (int k = 0; k < n_ids; k++)
        if (ids[k] == in) dequantize(g, in, in_count, buf[in], outs[k]);
    for (int i = 0; i < nn && st == IMCAP_OK; i++) {
        if (!run[i]) continue;
        const enc_node *nd = &g->nodes[i];
        int o = nd->output;
        size_t cnt = (size_t)n * value_bytes(g, o);
        if (!(buf[o] = (uint8_t *)enc_ws_alloc(ws, (cnt + 3) / 4))) {
            st = imcap_fail(IMCAP_E_NOMEM, "%s: out of memory for value '%s'", g->name, g->values[o].name);
            break;
        }
        if ((st = run_qnode(g, i, n, buf, ws))) break;
        for (int k = 0; k < n_ids; k++)
            if (ids[k] == o) dequantize(g, o, cnt, buf[o], outs[k]);
        for (int k = 0; k < nd->n_inputs; k++) {
            int v = nd->inputs[k];
            if (last[v] == i && buf[v]) {
                enc_ws_release(ws, (float *)buf[v]);
                buf[v] = NULL;
            }
        }
        if (last[o] < 0) {
            enc_ws_release(ws, (float *)buf[o]);
            buf[o] = NULL;
        }
    }
done:
    if (ws) enc_ws_give_back(g, ws);
    free(last);
    free(need);
    free(run);
    free(buf);
    return st;
}
