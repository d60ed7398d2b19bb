/*
 * graph_impl.h - the enc_graph struct, shared by graph.c (builder and
 * executor) and graph_io.c (native file). Not for importers: they use graph.h.
 */
#ifndef IMCAP_GRAPH_IMPL_H
#define IMCAP_GRAPH_IMPL_H

#include "graph.h"

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
    /* A loaded file's stored checksum; cleared by any later edit. */
    uint32_t checksum;
    bool has_checksum;
    /* Called by enc_graph_free (closes a loaded file's mapping). */
    void (*on_free)(void *ctx);
    void *on_free_ctx;
};

#endif
