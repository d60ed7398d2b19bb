/*
 * graph_impl.h - the enc_graph struct, shared by graph.c (builder and
 * executor) and graph_io.c (native file). Not for importers: they use graph.h.
 */
#ifndef IMCAP_GRAPH_IMPL_H
#define IMCAP_GRAPH_IMPL_H

#include "graph.h"

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
};

/* Checksum of the structure and every parameter's bytes (graph_io.c). */
uint32_t enc_graph_compute_checksum(const enc_graph *g);

#endif
