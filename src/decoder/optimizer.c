/*
 * optimizer.c - Adam (as torch.optim.Adam) with optional gradient clipping.
 *
 *   m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
 *   p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
 *
 * Clipping (clip_grad_norm_): norm = ||g||_2 over all parameters; if
 * clip / (norm + 1e-6) < 1 every gradient is multiplied by it.
 */
#include "optimizer.h"
#include "ops.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

adam_params adam_default_params(void)
{
    adam_params p = {.lr = 1e-3f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .clip = 0.0f};
    return p;
}

imcap_status adam_init(adam *a, const adam_params *p, size_t n)
{
    memset(a, 0, sizeof *a);
    if (!(p->lr > 0) || !(p->beta1 >= 0 && p->beta1 < 1) || !(p->beta2 >= 0 && p->beta2 < 1) || !(p->eps > 0))
        return imcap_fail(IMCAP_E_ARG, "adam: invalid settings lr %g beta1 %g beta2 %g eps %g", p->lr, p->beta1,
                          p->beta2, p->eps);
    a->p = *p;
    a->n = n;
    a->m = imcap_calloc(n, sizeof(float));
    a->v = imcap_calloc(n, sizeof(float));
    if (!a->m || !a->v) {
        adam_free(a);
        return IMCAP_E_NOMEM;
    }
    return IMCAP_OK;
}

void adam_free(adam *a)
{
    imcap_free(a->m);
    imcap_free(a->v);
    a->m = a->v = NULL;
}

/* The parameters are processed in fixed blocks (so the norm's summation
 * order, and hence every result, does not depend on the thread count),
 * spread over the worker threads. */
enum { ADAM_BLOCK = 1 << 15 };

typedef struct adam_ctx {
    adam *a;
    float *params, *grads;
    double *partial; /* [n_blocks] sum of squares */
    float gscale, step, rbc2;
} adam_ctx;

static void adam_sumsq(void *vc, size_t b, size_t e, int tid)
{
    adam_ctx *c = vc;
    for (size_t k = b; k < e; k++) {
        const size_t i0 = k * ADAM_BLOCK, i1 = i0 + ADAM_BLOCK < c->a->n ? i0 + ADAM_BLOCK : c->a->n;
        double ss = 0.0;
        for (size_t i = i0; i < i1; i++) ss += (double)c->grads[i] * c->grads[i];
        c->partial[k] = ss;
    }
}

static void adam_update(void *vc, size_t b, size_t e, int tid)
{
    adam_ctx *c = vc;
    const float b1 = c->a->p.beta1, b2 = c->a->p.beta2, eps = c->a->p.eps, gs = c->gscale, step = c->step,
                rbc2 = c->rbc2;
    float *restrict m = c->a->m, *restrict v = c->a->v, *restrict p = c->params, *restrict gr = c->grads;
    const size_t i0 = b * ADAM_BLOCK, i1 = e * ADAM_BLOCK < c->a->n ? e * ADAM_BLOCK : c->a->n;
    const bool scaled = gs != 1.0f; /* clipped: the gradients are scaled in place */
    for (size_t i = i0; i < i1; i++) {
        const float g = gr[i] * gs;
        if (scaled) gr[i] = g;
        m[i] = b1 * m[i] + (1.0f - b1) * g;
        v[i] = b2 * v[i] + (1.0f - b2) * g * g;
        p[i] -= step * m[i] / (sqrtf(v[i]) * rbc2 + eps);
    }
}

float adam_step(adam *a, float *params, float *grads)
{
    const size_t nb = (a->n + ADAM_BLOCK - 1) / ADAM_BLOCK;
    double stack[64], *partial = nb <= 64 ? stack : malloc(sizeof(double) * nb);
    adam_ctx c = {.a = a, .params = params, .grads = grads, .partial = partial, .gscale = 1.0f};
    /* the norm is only needed for clipping (one more pass over the gradients) */
    double ss = 0.0;
    if (a->p.clip > 0) {
        if (partial) {
            ops_parallel(nb, 1, adam_sumsq, &c);
            for (size_t k = 0; k < nb; k++) ss += partial[k];
        } else {
            for (size_t i = 0; i < a->n; i++) ss += (double)grads[i] * grads[i];
        }
        const double coef = a->p.clip / (sqrt(ss) + 1e-6);
        if (coef < 1.0) c.gscale = (float)coef;
    }
    if (partial != stack) free(partial);
    c.partial = NULL;
    const float norm = (float)sqrt(ss);
    a->t++;
    const double bc1 = 1.0 - pow(a->p.beta1, (double)a->t), bc2 = 1.0 - pow(a->p.beta2, (double)a->t);
    c.step = (float)(a->p.lr / bc1);
    c.rbc2 = (float)(1.0 / sqrt(bc2));
    ops_parallel(nb, 1, adam_update, &c);
    return norm;
}
