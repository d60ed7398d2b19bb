/*
 * decoder.c - the decoder interface (decoder.h): checks shared by every
 * architecture, the parameter buffers, and the dispatch to the
 * architecture's operations (dec_arch).
 */
#include "decoder.h"
#include "cpu.h"
#include "dec_isa.h"

#include <float.h>
#include <math.h>
#include <string.h>

static const dec_arch *const archs[DEC_N_ARCHS] = {
    [DEC_ARCH_RECIPE] = &dec_arch_recipe,
    [DEC_ARCH_ATTENTION] = &dec_arch_attention,
};

static const dec_arch *arch_of(const dec_config *c)
{
    return c->arch >= 0 && c->arch < DEC_N_ARCHS ? archs[c->arch] : NULL;
}

const dec_arch *dec_arch_of(const dec_config *c) { return arch_of(c); }

dec_config dec_default_config(int n_img, int n_vocab)
{
    dec_config c = {.n_img = n_img, .n_img1 = 120, .n_hid = 300, .n_emb = 100, .n_out1 = 120,
                    .n_vocab = n_vocab, .pad_id = 0, .arch = DEC_ARCH_RECIPE};
    return c;
}

const char *dec_arch_name(int arch)
{
    if (arch == DEC_ARCH_ENSEMBLE) return "ensemble";
    return arch >= 0 && arch < DEC_N_ARCHS && archs[arch] ? archs[arch]->name : NULL;
}

int dec_arch_from_name(const char *name)
{
    for (int a = 0; a < DEC_N_ARCHS; a++)
        if (archs[a] && !strcmp(archs[a]->name, name)) return a;
    return -1;
}

int dec_regions(const dec_config *c) { return c->grid_h > 0 && c->grid_w > 0 ? c->grid_h * c->grid_w : 1; }

bool dec_has_grid(const dec_config *c) { return c->grid_h > 0 && c->grid_w > 0; }

size_t dec_input_floats(const dec_config *c) { return (size_t)dec_regions(c) * (size_t)c->n_img; }

imcap_status dec_config_check(const dec_config *c)
{
    const int lim = 1 << 20;
    const dec_arch *a = arch_of(c);
    if (c->arch == DEC_ARCH_ENSEMBLE)
        return imcap_fail(IMCAP_E_UNSUPPORTED,
                          "decoder ensembles only generate captions: train, resume or fine-tune one member at a time");
    if (!a) return imcap_fail(IMCAP_E_ARG, "decoder config: unknown architecture %d", c->arch);
    if (c->n_img < 1 || c->n_img > lim || c->n_hid < 1 || c->n_hid > (1 << 16) || c->n_emb < 1 || c->n_emb > lim ||
        c->n_out1 < 1 || c->n_out1 > lim || c->n_vocab < 2 || c->n_vocab > (1 << 24) || c->grid_h < 0 ||
        c->grid_h > 1024 || c->grid_w < 0 || c->grid_w > 1024 || c->n_att < 0 || c->n_att > lim)
        return imcap_fail(IMCAP_E_ARG,
                          "decoder config out of range: img %d, img1 %d, hid %d, emb %d, out1 %d, vocab %d, grid "
                          "%dx%d, att %d",
                          c->n_img, c->n_img1, c->n_hid, c->n_emb, c->n_out1, c->n_vocab, c->grid_h, c->grid_w,
                          c->n_att);
    if (c->pad_id < 0 || c->pad_id >= c->n_vocab)
        return imcap_fail(IMCAP_E_ARG, "decoder config: pad id %d outside the vocabulary of %d", c->pad_id,
                          c->n_vocab);
    return a->check(c);
}

int dec_n_tensors(const dec_config *c) { return arch_of(c)->n_tensors(c); }

dec_tensor_info dec_tensor_at(const dec_config *c, int i) { return arch_of(c)->tensor_at(c, i); }

static void set_views(const dec_config *c, float *base, dec_tensors *t)
{
    if (c->arch != DEC_ARCH_RECIPE) {
        memset(t, 0, sizeof *t);
        return;
    }
    float **v[DEC_N_TENSORS] = {&t->img1_w, &t->img1_b, &t->img2_w,  &t->img2_b, &t->emb,    &t->lstm_wx,
                                &t->lstm_wh, &t->lstm_b, &t->out1_w, &t->out1_b, &t->out2_w, &t->out2_b};
    for (int i = 0; i < DEC_N_TENSORS; i++) *v[i] = base + dec_tensor_at(c, i).offset;
}

imcap_status dec_model_new(const dec_config *cfg, bool with_grads, dec_model **out)
{
    *out = NULL;
    imcap_status s = dec_config_check(cfg);
    if (s) return s;
    dec_model *m = imcap_calloc(1, sizeof *m);
    if (!m) return IMCAP_E_NOMEM;
    m->cfg = *cfg;
    m->n_params = dec_tensor_at(cfg, dec_n_tensors(cfg)).offset;
    m->params = imcap_calloc(m->n_params, sizeof(float));
    if (!m->params) goto nomem;
    set_views(cfg, m->params, &m->p);
    if (with_grads) {
        m->grads = imcap_calloc(m->n_params, sizeof(float));
        if (!m->grads) goto nomem;
        set_views(cfg, m->grads, &m->g);
    }
    *out = m;
    return IMCAP_OK;
nomem:
    dec_model_free(m);
    return IMCAP_E_NOMEM;
}

void dec_model_free(dec_model *m)
{
    if (!m) return;
    for (int k = 0; k < m->n_members; k++) dec_model_free(m->member[k]);
    imcap_free(m->params);
    imcap_free(m->grads);
    imcap_free(m);
}

void dec_model_init(dec_model *m, imcap_rng *rng) { arch_of(&m->cfg)->init(m, rng); }

/* ---------------------------------------------------------------- training */

struct dec_work {
    const dec_arch *arch;
    dec_config cfg;
    dec_mask mask;
    void *impl;
};

imcap_status dec_work_new(const dec_config *cfg, int max_b, int max_t1, dec_work **out)
{
    *out = NULL;
    imcap_status s = dec_config_check(cfg);
    if (s) return s;
    dec_work *w = imcap_calloc(1, sizeof *w);
    if (!w) return IMCAP_E_NOMEM;
    w->arch = arch_of(cfg);
    w->cfg = *cfg;
    w->mask.first_id = -1;
    if ((s = w->arch->work_new(cfg, max_b, max_t1, &w->impl))) {
        imcap_free(w);
        return s;
    }
    *out = w;
    return IMCAP_OK;
}

void dec_work_free(dec_work *w)
{
    if (!w) return;
    w->arch->work_free(w->impl);
    imcap_free(w);
}

void dec_work_set_dropout(dec_work *w, float p, uint64_t seed) { w->arch->set_dropout(w->impl, p, seed); }

imcap_status dec_work_set_mask(dec_work *w, const dec_mask *mask)
{
    const dec_mask none = {.n = 0, .first_id = -1};
    if (!mask) mask = &none;
    if (mask->n < 0 || mask->n > DEC_MAX_MASKED)
        return imcap_fail(IMCAP_E_ARG, "decoder loss mask: %d ids (at most %d)", mask->n, DEC_MAX_MASKED);
    for (int i = 0; i <= mask->n; i++) {
        const int32_t id = i < mask->n ? mask->ids[i] : mask->first_id;
        if ((id < 0 && i < mask->n) || id >= (int32_t)w->cfg.n_vocab)
            return imcap_fail(IMCAP_E_ARG, "decoder loss mask: token id %d out of range", id);
    }
    w->mask = *mask;
    return IMCAP_OK;
}

double dec_xent_row(float *z, int V, int target, float scale, const dec_mask *mask, int pos)
{
    const dec_kernels *k = dec_kernels_active();
    if (!mask) return k->softmax_xent_row(z, V, target, scale);
    /* -FLT_MAX: exp_fast clamps it to e^-87, i.e. nothing next to the target's share */
    for (int i = 0; i < mask->n; i++)
        if (mask->ids[i] != target) z[mask->ids[i]] = -FLT_MAX;
    if (pos == 0 && mask->first_id >= 0 && mask->first_id != target) z[mask->first_id] = -FLT_MAX;
    const double loss = k->softmax_xent_row(z, V, target, scale);
    for (int i = 0; i < mask->n; i++)
        if (mask->ids[i] != target) z[mask->ids[i]] = 0.0f;
    if (pos == 0 && mask->first_id >= 0 && mask->first_id != target) z[mask->first_id] = 0.0f;
    return loss;
}

void dec_work_set_attention_reg(dec_work *w, float lambda)
{
    if (w->arch->set_reg) w->arch->set_reg(w->impl, lambda);
}

imcap_status dec_forward_backward(dec_model *m, dec_work *w, const float *img, const int32_t *tokens,
                                  const float *row_w, int b, int t1, bool backward, float *d_img, float *loss,
                                  int64_t *n_targets)
{
    *loss = 0.0f;
    if (n_targets) *n_targets = 0;
    imcap_status cs = cpu_check();
    if (cs) return cs;
    if (memcmp(&w->cfg, &m->cfg, sizeof m->cfg) != 0)
        return imcap_fail(IMCAP_E_MISMATCH, "decoder workspace was made for another configuration");
    if (row_w && b > 0)
        for (int r = 0; r < b; r++)
            if (!isfinite(row_w[r]))
                return imcap_fail(IMCAP_E_ARG, "decoder batch: loss weight of row %d is not finite", r);
    return w->arch->forward_backward(m, w->impl, img, tokens, row_w, w->mask.n > 0 || w->mask.first_id >= 0 ? &w->mask : NULL,
                                     b, t1, backward, d_img, loss, n_targets);
}

/* --------------------------------------------------------------- inference */

size_t dec_context_floats(const dec_model *m)
{
    return m->n_members ? dec_ens_context_floats(m) : arch_of(&m->cfg)->context_floats(&m->cfg);
}

size_t dec_state_floats(const dec_model *m)
{
    return m->n_members ? dec_ens_state_floats(m) : arch_of(&m->cfg)->state_floats(&m->cfg);
}

imcap_status dec_init_state(const dec_model *m, const float *img, int n, float *ctx, float *state)
{
    if (n < 1) return imcap_fail(IMCAP_E_ARG, "dec_init_state: %d images", n);
    if (m->n_members) return dec_ens_init_state(m, img, n, ctx, state);
    return arch_of(&m->cfg)->init_state(m, img, n, ctx, dec_context_floats(m), state, dec_state_floats(m));
}

size_t dec_step_scratch_floats(const dec_model *m, int n)
{
    return m->n_members ? dec_ens_scratch_floats(m, n) : arch_of(&m->cfg)->step_scratch_floats(&m->cfg, n);
}

void dec_step(const dec_model *m, const float *ctx, bool shared_ctx, const int32_t *tokens, int n,
              const float *state, float *logits, float *state_out, float *attn, float *scratch)
{
    if (m->n_members) {
        dec_ens_step(m, ctx, shared_ctx, tokens, n, state, logits, state_out, attn, scratch);
        return;
    }
    arch_of(&m->cfg)->step(m, ctx, dec_context_floats(m), shared_ctx, tokens, n, state, dec_state_floats(m),
                           logits, state_out, attn, scratch);
}

/* ------------------------------------------------------- kernel dispatch */

const dec_kernels *dec_kernels_active(void)
{
    switch (cpu_isa_active()) {
    case CPU_AVX512: return &dec_kernels_avx512;
    case CPU_AVX2: return &dec_kernels_avx2;
    default: return &dec_kernels_generic;
    }
}
