/*
 * graph_impl.h - the enc_graph struct, shared by graph.c (builder and
 * executor) and graph_io.c (native file). Not for importers: they use graph.h.
 */
#ifndef IMCAP_GRAPH_IMPL_H
#define IMCAP_GRAPH_IMPL_H

#include "graph.h"
#include "ops.h"
#include "qgraph.h"

#include <pthread.h>

/* What runs keep between them (runs of one const graph may be concurrent,
 * so mu guards it):
 * - the weights of CONV2D and DENSE nodes packed for our GEMM
 *   (ops_pack_weights), made by the first run that needs them; w[i] belongs
 *   to node i (NULL for other ops); nodes are append-only and parameters
 *   immutable, so packed weights stay valid while the graph grows; wu[i]:
 *   the Winograd transform of a 3x3 convolution's weights (ops_winograd_ok);
 * - an idle workspace (graph.c: the value buffers of the last run, reused
 *   by the next so their pages are not faulted in again on every run). */
struct enc_ws;
typedef struct enc_pack {
    pthread_mutex_t mu;
    float **w, **wu;
    int n, cap;
    /* bf16 GEMM weights (ops_bf16_pack) of nodes [0, nb), packed by the
     * first bf16 run that needs them; NULL for other ops. */
    uint16_t **wb;
    int nb;
    struct enc_ws *ws;
    int verified; /* weights vs the loaded file's checksum: 0 not yet, 1 equal, -1 differ */
    uint32_t computed;
} enc_pack;

struct enc_graph {
    char name[ENC_NAME_LEN];
    enc_node *nodes;
    int n_nodes, cap_nodes;
    enc_value *values;          /* value 0.. : the input, then one per node */
    int n_values, cap_values;
    enc_param *params;
    int n_params, cap_params;
    /* Parameters live either in pbuf (copied by enc_graph_add_param; each
     * starts 64-byte aligned) or, for a loaded file, in the mapping
     * (param_ext[id], from enc_graph_add_param_view). */
    float *pbuf;
    size_t pbuf_len, pbuf_cap;
    const float **param_ext;
    int input;
    struct { char name[ENC_NAME_LEN]; int value; } *outputs;
    int n_outputs, cap_outputs;
    enc_preproc pre;
    bool has_pre;
    /* A loaded file's stored checksum (structure and weights; cleared by
     * any later edit) and path. The structure is verified on load, the
     * weights by the first run, which reads them all anyway to pack them. */
    uint32_t checksum;
    bool has_checksum;
    char *path;
    /* Called by enc_graph_free (closes a loaded file's mapping). */
    void (*on_free)(void *ctx);
    void *on_free_ctx;
    enc_pack *pack;
    /* The int8 program (qgraph.c) or NULL, and why there is none (NULL:
     * not known); the precision runs use (enc_graph_set_precision). */
    struct enc_qprog *q;
    char *q_missing;
    enc_precision precision;
};

/* Run planning shared by the float and int8 executors: need[v] = 2 for
 * requested values, 1 for values they depend on; run[i] = node i is
 * needed; last[v] = the last needed node reading v (-1 if none). */
void enc_graph_plan(const enc_graph *g, const int *ids, int n_ids, int *last, char *need, char *run);

/* The window geometry of node nd (CONV2D, DWCONV2D, pools) for n images. */
ops_win enc_graph_node_win(const enc_graph *g, const enc_node *nd, int n);

/* A run's value buffers (graph.c): taken from the graph's idle workspace,
 * best-fit blocks of floats, handed back at the end of the run. */
struct enc_ws *enc_ws_take(const enc_graph *g);
float *enc_ws_alloc(struct enc_ws *ws, size_t floats);
void enc_ws_release(struct enc_ws *ws, float *p);
void enc_ws_give_back(const enc_graph *g, struct enc_ws *ws);

/* qgraph.c: run the int8 program (enc_graph_run's contract); free it. */
imcap_status enc_qgraph_run(const enc_graph *g, const float *input, int n, const int *ids, int n_ids,
                            float *const *outs);
void enc_qgraph_free(struct enc_qprog *q);
/* For the encoder file (graph_io.c): the program's tensors, its arrays
 * ([n_values] scales and zero points, [n_nodes][4] node tensor ids) and a
 * CRC-32 of all of it; loading adds tensors by reference. */
int enc_qgraph_n_tensors(const enc_graph *g);
int enc_qgraph_add_tensor_view(enc_graph *g, enc_qtype type, size_t count, const void *data);
uint32_t enc_qgraph_crc(const enc_graph *g);
/* Stored CRC of a loaded program, checked by its first run. */
void enc_qgraph_expect_crc(enc_graph *g, uint32_t crc);

/* Checksum of the structure and every parameter's bytes (graph_io.c). */
uint32_t enc_graph_compute_checksum(const enc_graph *g);

#endif
