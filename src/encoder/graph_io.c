/*
 * graph_io.c - the native encoder file (GGUF; layout in docs/FORMATS.md,
 * section "Encoder file") and the graph checksum. Loading maps the file and
 * uses the weights in place (no copy); the graph is rebuilt through the
 * builder, so every index and shape is validated as when it was imported.
 */
#include "gguf.h"
#include "graph_impl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Version 2 adds the int8 program (qgraph.h); files without one are still
 * written as version 1, which every earlier build reads. */
enum { ENCODER_VERSION = 1, ENCODER_VERSION_INT8 = 2, NODE_INTS = 20 };

#define ARCH "imcap.encoder"
#define K_VERSION "imcap.encoder.version"
#define K_NAME "imcap.encoder.name"
#define K_VALUE_NAMES "imcap.encoder.value_names"
#define K_VALUE_SHAPES "imcap.encoder.value_shapes"
#define K_NODES "imcap.encoder.nodes"
#define K_NODE_NAMES "imcap.encoder.node_names"
#define K_PARAM_NAMES "imcap.encoder.param_names"
#define K_OUT_NAMES "imcap.encoder.output_names"
#define K_OUT_VALUES "imcap.encoder.output_values"
#define K_PRE_SIZE "imcap.encoder.preproc.size"
#define K_PRE_SCALE "imcap.encoder.preproc.scale"
#define K_PRE_BIAS "imcap.encoder.preproc.bias"
#define K_CHECKSUM "imcap.encoder.checksum"
#define K_GRAPH_CRC "imcap.encoder.graph_crc32"
#define K_Q_SCALES "imcap.encoder.int8.value_scales"
#define K_Q_ZPS "imcap.encoder.int8.value_zero_points"
#define K_Q_NODES "imcap.encoder.int8.nodes"
#define K_Q_CRC "imcap.encoder.int8.crc32"
#define K_Q_MISSING "imcap.encoder.int8.missing"

static void node_to_ints(const enc_node *nd, int32_t *o)
{
    o[0] = (int32_t)nd->op;
    o[1] = nd->n_inputs;
    for (int k = 0; k < ENC_MAX_INPUTS; k++) o[2 + k] = k < nd->n_inputs ? nd->inputs[k] : -1;
    o[10] = nd->output;
    o[11] = nd->kh;
    o[12] = nd->kw;
    o[13] = nd->sh;
    o[14] = nd->sw;
    o[15] = (int32_t)nd->pad;
    o[16] = (int32_t)nd->act;
    o[17] = nd->mult;
    o[18] = nd->weight;
    o[19] = nd->bias;
}

/* The graph's structure as the file's i32 arrays: nodes [n_nodes][20] and
 * value shapes [n_values][3]. Caller frees both. */
static imcap_status graph_arrays(const enc_graph *g, int32_t **nodes, int32_t **shapes)
{
    *nodes = malloc(((size_t)g->n_nodes * NODE_INTS + 1) * sizeof(int32_t));
    *shapes = malloc(((size_t)g->n_values * 3 + 1) * sizeof(int32_t));
    if (!*nodes || !*shapes) {
        free(*nodes);
        free(*shapes);
        return imcap_fail(IMCAP_E_NOMEM, "%s: out of memory serializing the graph", g->name);
    }
    for (int i = 0; i < g->n_nodes; i++) node_to_ints(&g->nodes[i], *nodes + (size_t)i * NODE_INTS);
    for (int i = 0; i < g->n_values; i++) {
        (*shapes)[3 * i] = g->values[i].h;
        (*shapes)[3 * i + 1] = g->values[i].w;
        (*shapes)[3 * i + 2] = g->values[i].c;
    }
    return IMCAP_OK;
}

/* CRC-32 of everything but the weights' values: names, nodes, shapes,
 * outputs, preprocessing. Checked on load (cheap, unlike the weights). */
static uint32_t structure_crc(const enc_graph *g)
{
    int32_t *nodes, *shapes;
    if (graph_arrays(g, &nodes, &shapes)) return 0;
    uint32_t crc = imcap_crc32(0, g->name, strlen(g->name) + 1);
    crc = imcap_crc32(crc, nodes, (size_t)g->n_nodes * NODE_INTS * sizeof(int32_t));
    crc = imcap_crc32(crc, shapes, (size_t)g->n_values * 3 * sizeof(int32_t));
    free(nodes);
    free(shapes);
    for (int i = 0; i < g->n_values; i++) crc = imcap_crc32(crc, g->values[i].name, strlen(g->values[i].name) + 1);
    for (int i = 0; i < g->n_nodes; i++) crc = imcap_crc32(crc, g->nodes[i].name, strlen(g->nodes[i].name) + 1);
    for (int i = 0; i < g->n_params; i++) {
        const enc_param *p = &g->params[i];
        int32_t dims[5] = {p->n_dims, p->shape[0], p->shape[1], p->shape[2], p->shape[3]};
        for (int d = p->n_dims; d < 4; d++) dims[1 + d] = 0;
        crc = imcap_crc32(crc, dims, sizeof dims);
        crc = imcap_crc32(crc, p->name, strlen(p->name) + 1);
    }
    for (int i = 0; i < g->n_outputs; i++) {
        int32_t v = g->outputs[i].value;
        crc = imcap_crc32(crc, g->outputs[i].name, strlen(g->outputs[i].name) + 1);
        crc = imcap_crc32(crc, &v, sizeof v);
    }
    if (g->has_pre) crc = imcap_crc32(crc, &g->pre, sizeof g->pre);
    return crc;
}

uint32_t enc_graph_compute_checksum(const enc_graph *g)
{
    uint32_t s = structure_crc(g), crc = imcap_crc32(0, &s, sizeof s);
    for (int i = 0; i < g->n_params; i++)
        crc = imcap_crc32(crc, enc_graph_param_data(g, i), g->params[i].count * sizeof(float));
    return crc;
}

uint32_t enc_graph_checksum(const enc_graph *g)
{
    return g->has_checksum ? g->checksum : enc_graph_compute_checksum(g);
}

imcap_status enc_graph_save(const enc_graph *g, const char *path)
{
    if (g->input < 0) return imcap_fail(IMCAP_E_ARG, "%s: cannot save %s: the graph has no input", path, g->name);
    if (g->n_outputs < 1) return imcap_fail(IMCAP_E_ARG, "%s: cannot save %s: the graph has no named output", path, g->name);
    gguf_writer *w = gguf_writer_new();
    int32_t *nodes = NULL, *shapes = NULL, *out_vals = NULL, *qn = NULL, *qz = NULL;
    float *qs = NULL;
    char (*qnames)[32] = NULL;
    bool has_q = !enc_graph_int8_missing(g);
    int n_qt = has_q ? enc_qgraph_n_tensors(g) : 0;
    const char **vnames = NULL, **nnames = NULL, **pnames = NULL, **onames = NULL;
    char (*tnames)[32] = NULL;
    imcap_status s = w ? graph_arrays(g, &nodes, &shapes) : IMCAP_E_NOMEM;
    if (s) goto out;
    vnames = malloc(((size_t)g->n_values + 1) * sizeof *vnames);
    nnames = malloc(((size_t)g->n_nodes + 1) * sizeof *nnames);
    pnames = malloc(((size_t)g->n_params + 1) * sizeof *pnames);
    tnames = malloc(((size_t)g->n_params + 1) * sizeof *tnames);
    onames = malloc(((size_t)g->n_outputs + 1) * sizeof *onames);
    out_vals = malloc(((size_t)g->n_outputs + 1) * sizeof *out_vals);
    if (has_q) {
        qn = malloc(((size_t)g->n_nodes * 4 + 1) * sizeof *qn);
        qz = malloc(((size_t)g->n_values + 1) * sizeof *qz);
        qs = malloc(((size_t)g->n_values + 1) * sizeof *qs);
        qnames = malloc(((size_t)n_qt + 1) * sizeof *qnames);
    }
    if (!vnames || !nnames || !pnames || !tnames || !onames || !out_vals || (has_q && (!qn || !qz || !qs || !qnames))) {
        s = imcap_fail(IMCAP_E_NOMEM, "%s: out of memory", path);
        goto out;
    }
    for (int i = 0; i < g->n_values; i++) vnames[i] = g->values[i].name;
    for (int i = 0; i < g->n_nodes; i++) nnames[i] = g->nodes[i].name;
    for (int i = 0; i < g->n_params; i++) pnames[i] = g->params[i].name;
    for (int i = 0; i < g->n_outputs; i++) {
        onames[i] = g->outputs[i].name;
        out_vals[i] = g->outputs[i].value;
    }
    gguf_set_str(w, "general.architecture", ARCH);
    gguf_set_u32(w, K_VERSION, has_q ? ENCODER_VERSION_INT8 : ENCODER_VERSION);
    gguf_set_str(w, K_NAME, g->name);
    gguf_set_arr_str(w, K_VALUE_NAMES, vnames, (size_t)g->n_values);
    gguf_set_arr_i32(w, K_VALUE_SHAPES, shapes, (size_t)g->n_values * 3);
    gguf_set_arr_i32(w, K_NODES, nodes, (size_t)g->n_nodes * NODE_INTS);
    gguf_set_arr_str(w, K_NODE_NAMES, nnames, (size_t)g->n_nodes);
    gguf_set_arr_str(w, K_PARAM_NAMES, pnames, (size_t)g->n_params);
    gguf_set_arr_str(w, K_OUT_NAMES, onames, (size_t)g->n_outputs);
    gguf_set_arr_i32(w, K_OUT_VALUES, out_vals, (size_t)g->n_outputs);
    if (g->has_pre) {
        int32_t size[2] = {g->pre.in_h, g->pre.in_w};
        gguf_set_arr_i32(w, K_PRE_SIZE, size, 2);
        gguf_set_arr_f32(w, K_PRE_SCALE, g->pre.scale, 3);
        gguf_set_arr_f32(w, K_PRE_BIAS, g->pre.bias, 3);
    }
    gguf_set_u32(w, K_GRAPH_CRC, structure_crc(g));
    gguf_set_u32(w, K_CHECKSUM, enc_graph_checksum(g));
    for (int i = 0; i < g->n_params; i++) {
        const enc_param *p = &g->params[i];
        int64_t shape[4];
        for (int d = 0; d < p->n_dims; d++) shape[d] = p->shape[d];
        snprintf(tnames[i], sizeof tnames[i], "param.%d", i);
        gguf_add_tensor(w, tnames[i], GGUF_T_F32, p->n_dims, shape, enc_graph_param_data(g, i));
    }
    if (has_q) {
        /* The int8 program: per value scale and zero point, per node its
         * tensors (-1: none), the tensors "int8.<j>" after the parameters. */
        for (int v = 0; v < g->n_values; v++) enc_qgraph_value(g, v, &qs[v], &qz[v]);
        for (int i = 0; i < g->n_nodes; i++) {
            const enc_qnode *q = enc_qgraph_node(g, i);
            enc_qnode none = {-1, -1, -1, -1};
            if (!q) q = &none;
            int32_t ids[4] = {q->w, q->wzp, q->ws, q->b};
            memcpy(qn + 4 * (size_t)i, ids, sizeof ids);
        }
        gguf_set_arr_f32(w, K_Q_SCALES, qs, (size_t)g->n_values);
        gguf_set_arr_i32(w, K_Q_ZPS, qz, (size_t)g->n_values);
        gguf_set_arr_i32(w, K_Q_NODES, qn, (size_t)g->n_nodes * 4);
        gguf_set_u32(w, K_Q_CRC, enc_qgraph_crc(g));
        static const gguf_tensor_type types[3] = {GGUF_T_I8, GGUF_T_I32, GGUF_T_F32};
        for (int j = 0; j < n_qt; j++) {
            enc_qtype ty;
            size_t count;
            const void *d = enc_qgraph_tensor(g, j, &ty, &count);
            int64_t shape[1] = {(int64_t)count};
            snprintf(qnames[j], sizeof qnames[j], "int8.%d", j);
            gguf_add_tensor(w, qnames[j], types[ty], 1, shape, d);
        }
    } else if (g->q_missing) {
        gguf_set_str(w, K_Q_MISSING, g->q_missing);
    }
    s = gguf_write(w, path);
out:
    gguf_writer_free(w);
    free(nodes);
    free(shapes);
    free(vnames);
    free(nnames);
    free(pnames);
    free(tnames);
    free(onames);
    free(out_vals);
    free(qn);
    free(qz);
    free(qs);
    free(qnames);
    return s;
}

/* The int8 program of a version-2 file: tensors from index first on. */
static imcap_status load_int8(const gguf_file *f, const char *path, enc_graph *g, size_t first)
{
    const float *qs;
    const int32_t *qz, *qn;
    size_t n1, n2, n3;
    uint32_t crc;
    imcap_status s;
    if ((s = gguf_get_arr_f32(f, K_Q_SCALES, &qs, &n1)) || (s = gguf_get_arr_i32(f, K_Q_ZPS, &qz, &n2)) ||
        (s = gguf_get_arr_i32(f, K_Q_NODES, &qn, &n3)) || (s = gguf_get_u32(f, K_Q_CRC, &crc)))
        return s;
    if (n1 != (size_t)g->n_values || n2 != n1 || n3 != 4 * (size_t)g->n_nodes)
        return imcap_fail(IMCAP_E_FORMAT, "%s: int8 program arrays have %zu/%zu/%zu entries for %d values and %d nodes",
                          path, n1, n2, n3, g->n_values, g->n_nodes);
    for (size_t i = first; i < gguf_n_tensors(f); i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        char want[32];
        snprintf(want, sizeof want, "int8.%zu", i - first);
        enc_qtype ty = t->type == GGUF_T_I8 ? ENC_QT_I8 : t->type == GGUF_T_I32 ? ENC_QT_I32 : ENC_QT_F32;
        if (strcmp(t->name, want) != 0 || t->n_dims != 1 ||
            (t->type != GGUF_T_I8 && t->type != GGUF_T_I32 && t->type != GGUF_T_F32) || t->shape[0] < 1)
            return imcap_fail(IMCAP_E_FORMAT, "%s: tensor %zu '%s' is not the 1-D int8-program tensor '%s'", path, i,
                              t->name, want);
        if (enc_qgraph_add_tensor_view(g, ty, (size_t)t->shape[0], t->data) < 0)
            return imcap_fail_prefix(IMCAP_E_FORMAT, "%s: tensor %s", path, t->name);
    }
    for (int v = 0; v < g->n_values; v++)
        if ((s = enc_qgraph_set_value(g, v, qs[v], qz[v]))) return s;
    for (int i = 0; i < g->n_nodes; i++) {
        enc_qnode q = {qn[4 * i], qn[4 * i + 1], qn[4 * i + 2], qn[4 * i + 3]};
        if (q.w >= 0 || q.wzp >= 0 || q.ws >= 0 || q.b >= 0)
            if ((s = enc_qgraph_set_node(g, i, &q))) return s;
    }
    if (enc_qgraph_finish(g)) return imcap_fail_prefix(IMCAP_E_FORMAT, "%s: int8 program", path);
    /* The tensors' bytes are checked by the first int8 run (as the float
     * weights are by the first run). */
    enc_qgraph_expect_crc(g, crc);
    return IMCAP_OK;
}

static void close_file(void *ctx) { gguf_close(ctx); }

#define LOAD_FAIL(st, ...)                                                                         \
    do {                                                                                           \
        s = imcap_fail((st), __VA_ARGS__);                                                         \
        goto fail;                                                                                 \
    } while (0)

static bool name_ok(const char *s) { return s && strlen(s) < ENC_NAME_LEN; }

imcap_status enc_graph_load(const char *path, enc_graph **out)
{
    *out = NULL;
    gguf_file *f = NULL;
    enc_graph *g = NULL;
    imcap_status s = gguf_open(path, &f);
    if (s) return s;
    const char *arch = NULL, *name = NULL;
    if (gguf_get_str(f, "general.architecture", &arch) || strcmp(arch, ARCH) != 0)
        LOAD_FAIL(IMCAP_E_FORMAT, "%s: not an imcap encoder file (general.architecture is %s%s%s)", path,
                  arch ? "'" : "", arch ? arch : "missing", arch ? "'" : "");
    uint32_t version;
    if ((s = gguf_get_u32(f, K_VERSION, &version))) goto fail;
    if (version != ENCODER_VERSION && version != ENCODER_VERSION_INT8)
        LOAD_FAIL(IMCAP_E_UNSUPPORTED, "%s: encoder file version %u, this build reads versions %d and %d", path, version,
                  ENCODER_VERSION, ENCODER_VERSION_INT8);
    const char *const *vnames, *const *nnames, *const *pnames, *const *onames;
    const int32_t *shapes, *nodes, *ovals;
    size_t n_vn, n_vs, n_nd, n_nn, n_pn, n_on, n_ov;
    if ((s = gguf_get_str(f, K_NAME, &name)) || (s = gguf_get_arr_str(f, K_VALUE_NAMES, &vnames, &n_vn)) ||
        (s = gguf_get_arr_i32(f, K_VALUE_SHAPES, &shapes, &n_vs)) ||
        (s = gguf_get_arr_i32(f, K_NODES, &nodes, &n_nd)) ||
        (s = gguf_get_arr_str(f, K_NODE_NAMES, &nnames, &n_nn)) ||
        (s = gguf_get_arr_str(f, K_PARAM_NAMES, &pnames, &n_pn)) ||
        (s = gguf_get_arr_str(f, K_OUT_NAMES, &onames, &n_on)) ||
        (s = gguf_get_arr_i32(f, K_OUT_VALUES, &ovals, &n_ov)))
        goto fail;
    if (!name_ok(name)) LOAD_FAIL(IMCAP_E_FORMAT, "%s: %s is too long", path, K_NAME);
    if (n_vn < 1 || n_vs != 3 * n_vn)
        LOAD_FAIL(IMCAP_E_FORMAT, "%s: %zu value names but %zu value shape entries (expected 3 per value)", path,
                  n_vn, n_vs);
    if (n_nd != NODE_INTS * n_nn || n_nn != n_vn - 1)
        LOAD_FAIL(IMCAP_E_FORMAT, "%s: %zu node entries and %zu node names for %zu values (expected %d per node, one node per value after the input)",
                  path, n_nd, n_nn, n_vn, NODE_INTS);
    if (n_on < 1 || n_on != n_ov)
        LOAD_FAIL(IMCAP_E_FORMAT, "%s: %zu output names but %zu output values", path, n_on, n_ov);
    if (version == ENCODER_VERSION ? gguf_n_tensors(f) != n_pn : gguf_n_tensors(f) < n_pn)
        LOAD_FAIL(IMCAP_E_FORMAT, "%s: %zu tensors but %zu parameter names", path, gguf_n_tensors(f), n_pn);
    if (!(g = enc_graph_new(name))) {
        s = IMCAP_E_NOMEM;
        goto fail;
    }
    if (!name_ok(vnames[0]) || enc_graph_add_input(g, vnames[0], shapes[0], shapes[1], shapes[2]) != 0)
        LOAD_FAIL(IMCAP_E_FORMAT, "%s: bad input value %dx%dx%d", path, shapes[0], shapes[1], shapes[2]);
    for (size_t i = 0; i < n_pn; i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        char want[32];
        snprintf(want, sizeof want, "param.%zu", i);
        if (strcmp(t->name, want) != 0)
            LOAD_FAIL(IMCAP_E_FORMAT, "%s: tensor %zu is named '%s', expected '%s'", path, i, t->name, want);
        if (t->type != GGUF_T_F32) LOAD_FAIL(IMCAP_E_FORMAT, "%s: tensor %s is not f32", path, t->name);
        int shape[4];
        for (int d = 0; d < t->n_dims; d++) {
            if (t->shape[d] < 1 || t->shape[d] > INT32_MAX)
                LOAD_FAIL(IMCAP_E_FORMAT, "%s: tensor %s has dim %d = %lld", path, t->name, d, (long long)t->shape[d]);
            shape[d] = (int)t->shape[d];
        }
        if (!name_ok(pnames[i])) LOAD_FAIL(IMCAP_E_FORMAT, "%s: parameter name %zu is too long", path, i);
        if (enc_graph_add_param_view(g, pnames[i], t->n_dims, shape, t->data) != (int)i) {
            s = imcap_fail_prefix(IMCAP_E_FORMAT, "%s: tensor %s", path, t->name);
            goto fail;
        }
    }
    for (size_t i = 0; i < n_nn; i++) {
        const int32_t *o = nodes + i * NODE_INTS;
        enc_node nd;
        memset(&nd, 0, sizeof nd);
        if (o[0] < 0 || o[0] > ENC_PAD || o[15] < 0 || o[15] > ENC_PAD_SAME || o[16] < 0 || o[16] > ENC_ACT_SIGMOID)
            LOAD_FAIL(IMCAP_E_FORMAT, "%s: node %zu has op %d, padding %d, activation %d (out of range)", path, i,
                      o[0], o[15], o[16]);
        nd.op = (enc_op)o[0];
        nd.n_inputs = o[1];
        for (int k = 0; k < ENC_MAX_INPUTS; k++) nd.inputs[k] = o[2 + k];
        nd.kh = o[11];
        nd.kw = o[12];
        nd.sh = o[13];
        nd.sw = o[14];
        nd.pad = (enc_pad)o[15];
        nd.act = (enc_act)o[16];
        nd.mult = o[17];
        nd.weight = o[18];
        nd.bias = o[19];
        if (!name_ok(nnames[i]) || !name_ok(vnames[i + 1]))
            LOAD_FAIL(IMCAP_E_FORMAT, "%s: node %zu: name too long", path, i);
        snprintf(nd.name, sizeof nd.name, "%s", nnames[i]);
        int v = enc_graph_add_node(g, &nd, vnames[i + 1]);
        if (v < 0) {
            s = imcap_fail_prefix(IMCAP_E_FORMAT, "%s", path);
            goto fail;
        }
        const enc_node *got = &g->nodes[i];
        int32_t back[NODE_INTS];
        node_to_ints(got, back);
        if (v != o[10] || memcmp(back, o, sizeof back) != 0)
            LOAD_FAIL(IMCAP_E_FORMAT, "%s: node %zu '%s' is inconsistent (output %d, stored %d; stored fields differ from the validated node)",
                      path, i, nnames[i], v, o[10]);
        const enc_value *val = &g->values[v];
        const int32_t *sv = shapes + 3 * (size_t)v;
        if (val->h != sv[0] || val->w != sv[1] || val->c != sv[2])
            LOAD_FAIL(IMCAP_E_FORMAT, "%s: value %d '%s' is stored as %dx%dx%d but node %zu makes %dx%dx%d", path, v,
                      val->name, sv[0], sv[1], sv[2], i, val->h, val->w, val->c);
    }
    for (size_t i = 0; i < n_on; i++) {
        if (!name_ok(onames[i]) || enc_graph_set_output(g, onames[i], ovals[i]))
            LOAD_FAIL(IMCAP_E_FORMAT, "%s: output %zu refers to value %d of %d", path, i, ovals[i], g->n_values);
    }
    if (gguf_has_key(f, K_PRE_SIZE)) {
        const int32_t *size;
        const float *scale, *bias;
        size_t n1, n2, n3;
        if ((s = gguf_get_arr_i32(f, K_PRE_SIZE, &size, &n1)) || (s = gguf_get_arr_f32(f, K_PRE_SCALE, &scale, &n2)) ||
            (s = gguf_get_arr_f32(f, K_PRE_BIAS, &bias, &n3)))
            goto fail;
        if (n1 != 2 || n2 != 3 || n3 != 3)
            LOAD_FAIL(IMCAP_E_FORMAT, "%s: preprocessing arrays have %zu/%zu/%zu entries, expected 2/3/3", path, n1, n2, n3);
        if (size[0] != g->values[0].h || size[1] != g->values[0].w)
            LOAD_FAIL(IMCAP_E_FORMAT, "%s: preprocessing size %dx%d differs from the input %dx%d", path, size[0], size[1],
                      g->values[0].h, g->values[0].w);
        enc_preproc pre = {size[0], size[1], {0}, {0}};
        for (int k = 0; k < 3; k++) {
            if (!isfinite(scale[k]) || !isfinite(bias[k]))
                LOAD_FAIL(IMCAP_E_FORMAT, "%s: preprocessing scale/bias %d is not finite", path, k);
            pre.scale[k] = scale[k];
            pre.bias[k] = bias[k];
        }
        enc_graph_set_preproc(g, &pre);
    }
    uint32_t crc, gcrc;
    if ((s = gguf_get_u32(f, K_GRAPH_CRC, &gcrc)) || (s = gguf_get_u32(f, K_CHECKSUM, &crc))) goto fail;
    if (structure_crc(g) != gcrc)
        LOAD_FAIL(IMCAP_E_FORMAT, "%s: graph checksum mismatch (stored %08x, computed %08x): the file was edited or damaged",
                  path, gcrc, structure_crc(g));
    if (version == ENCODER_VERSION_INT8) {
        if ((s = load_int8(f, path, g, n_pn))) goto fail;
    } else if (gguf_has_key(f, K_Q_MISSING)) {
        const char *why;
        if ((s = gguf_get_str(f, K_Q_MISSING, &why))) goto fail;
        enc_qgraph_disable(g, "%s", why);
    }
    g->checksum = crc;
    g->has_checksum = true;
    if (!(g->path = imcap_strdup(path))) {
        s = IMCAP_E_NOMEM;
        goto fail;
    }
    g->on_free = close_file;
    g->on_free_ctx = f;
    *out = g;
    return IMCAP_OK;
fail:
    enc_graph_free(g);
    gguf_close(f);
    return s ? s : IMCAP_E_FORMAT;
}
