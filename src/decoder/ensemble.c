/*
 * ensemble.c - several trained decoders as one captioning model
 * (DEC_ARCH_ENSEMBLE, decoder.h). The members share the vocabulary and the
 * image input; each keeps its own architecture and sizes.
 *
 * One step of K members for n hypotheses:
 *   z_k = member k's logits [n][V]
 *   logits = log((1/K) sum_k softmax(z_k)) [n][V]   (already normalised, so
 *            the generator's softmax and masking see the mixture as it is)
 *   attn   = (1/K) sum_k alpha_k [n][L]             (each alpha_k sums to 1)
 * Rows of the context and of the state are the members' rows side by side:
 *   ctx row   [ctx_0 | ctx_1 | ... ]   (C = sum of the members' C_k floats)
 *   state row [state_0 | state_1 | ...] (S = sum of S_k)
 * so beam search can copy and reorder whole hypotheses as for one decoder,
 * and each member reads its slice through the strides of its dec_arch.
 */
#include "decoder.h"

#include <math.h>
#include <string.h>

imcap_status dec_ensemble_new(dec_model *const *members, int k, dec_model **out)
{
    *out = NULL;
    if (k < 2 || k > DEC_MAX_MEMBERS)
        return imcap_fail(IMCAP_E_ARG, "decoder ensemble of %d members (2 to %d)", k, DEC_MAX_MEMBERS);
    const dec_config *c0 = &members[0]->cfg;
    for (int i = 0; i < k; i++) {
        const dec_config *c = &members[i]->cfg;
        if (members[i]->n_members || !dec_arch_of(c))
            return imcap_fail(IMCAP_E_ARG, "decoder ensemble: member %d is itself an ensemble", i + 1);
        if (c->n_vocab != c0->n_vocab || c->pad_id != c0->pad_id)
            return imcap_fail(IMCAP_E_MISMATCH,
                              "decoder ensemble: member %d has %d words (pad id %d), member 1 %d (pad id %d): "
                              "members must share the vocabulary",
                              i + 1, c->n_vocab, c->pad_id, c0->n_vocab, c0->pad_id);
        if (c->n_img != c0->n_img || c->grid_h != c0->grid_h || c->grid_w != c0->grid_w)
            return imcap_fail(IMCAP_E_MISMATCH,
                              "decoder ensemble: member %d reads %d features on a %dx%d grid, member 1 %d on "
                              "%dx%d: members must read the same image input",
                              i + 1, c->n_img, c->grid_h, c->grid_w, c0->n_img, c0->grid_h, c0->grid_w);
    }
    dec_model *m = imcap_calloc(1, sizeof *m);
    if (!m) return IMCAP_E_NOMEM;
    m->cfg = *c0;
    m->cfg.arch = DEC_ARCH_ENSEMBLE;
    m->n_members = k;
    for (int i = 0; i < k; i++) m->member[i] = members[i];
    *out = m;
    return IMCAP_OK;
}

size_t dec_ens_context_floats(const dec_model *m)
{
    size_t c = 0;
    for (int k = 0; k < m->n_members; k++) c += dec_context_floats(m->member[k]);
    return c;
}

size_t dec_ens_state_floats(const dec_model *m)
{
    size_t s = 0;
    for (int k = 0; k < m->n_members; k++) s += dec_state_floats(m->member[k]);
    return s;
}

/* [the largest member scratch][member logits n x V][member attention n x L] */
size_t dec_ens_scratch_floats(const dec_model *m, int n)
{
    size_t s = 0;
    for (int k = 0; k < m->n_members; k++) {
        const size_t sk = dec_step_scratch_floats(m->member[k], n);
        if (sk > s) s = sk;
    }
    return s + (size_t)n * ((size_t)m->cfg.n_vocab + (size_t)dec_regions(&m->cfg));
}

imcap_status dec_ens_init_state(const dec_model *m, const float *img, int n, float *ctx, float *state)
{
    const size_t C = dec_ens_context_floats(m), S = dec_ens_state_floats(m);
    size_t co = 0, so = 0;
    for (int k = 0; k < m->n_members; k++) {
        const dec_model *mk = m->member[k];
        imcap_status s = dec_arch_of(&mk->cfg)->init_state(mk, img, n, ctx ? ctx + co : NULL, C, state + so, S);
        if (s) return s;
        co += dec_context_floats(mk);
        so += dec_state_floats(mk);
    }
    return IMCAP_OK;
}

/* Row z [V] -> its log-softmax, in place. A NaN or infinity stays
 * non-finite, so the generator still reports it. */
static void log_softmax_row(float *z, int V)
{
    float mx = z[0];
    for (int v = 1; v < V; v++) mx = z[v] > mx ? z[v] : mx;
    double sum = 0.0;
    for (int v = 0; v < V; v++) sum += exp((double)(z[v] - mx));
    const float lse = mx + (float)log(sum);
    for (int v = 0; v < V; v++) z[v] -= lse;
}

void dec_ens_step(const dec_model *m, const float *ctx, bool shared_ctx, const int32_t *tokens, int n,
                  const float *state, float *logits, float *state_out, float *attn, float *scratch)
{
    const int K = m->n_members, V = m->cfg.n_vocab, L = dec_regions(&m->cfg);
    const size_t C = dec_ens_context_floats(m), S = dec_ens_state_floats(m);
    size_t big = 0;
    for (int k = 0; k < K; k++) {
        const size_t sk = dec_step_scratch_floats(m->member[k], n);
        if (sk > big) big = sk;
    }
    float *zk = scratch + big, *ak = zk + (size_t)n * V;
    size_t co = 0, so = 0;
    for (int k = 0; k < K; k++) {
        const dec_model *mk = m->member[k];
        float *z = k == 0 ? logits : zk, *a = attn ? (k == 0 ? attn : ak) : NULL;
        dec_arch_of(&mk->cfg)->step(mk, ctx ? ctx + co : NULL, C, shared_ctx, tokens, n, state + so, S, z,
                                    state_out + so, a, scratch);
        for (int r = 0; r < n; r++) {
            float *zr = z + (size_t)r * V, *pr = logits + (size_t)r * V;
            log_softmax_row(zr, V);
            if (k > 0) /* pr = log(e^pr + e^zr), without underflow for unlikely words */
                for (int v = 0; v < V; v++) {
                    const float hi = pr[v] > zr[v] ? pr[v] : zr[v], d = fabsf(pr[v] - zr[v]);
                    pr[v] = hi + log1pf(expf(-d));
                }
        }
        if (a && k > 0)
            for (size_t i = 0; i < (size_t)n * L; i++) attn[i] += a[i];
        co += dec_context_floats(mk);
        so += dec_state_floats(mk);
    }
    const float log_k = logf((float)K);
    for (size_t i = 0; i < (size_t)n * V; i++) logits[i] -= log_k;
    if (attn)
        for (size_t i = 0; i < (size_t)n * L; i++) attn[i] /= (float)K;
}
