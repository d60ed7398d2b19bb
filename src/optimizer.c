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

#include <math.h>
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

float adam_step(adam *a, float *params, float *grads)
{
    const size_t n = a->n;
    double ss = 0.0;
    for (size_t i = 0; i < n; i++) ss += (double)grads[i] * grads[i];
    const float norm = (float)sqrt(ss);
    if (a->p.clip > 0) {
        double coef = a->p.clip / (sqrt(ss) + 1e-6);
        if (coef < 1.0)
            for (size_t i = 0; i < n; i++) grads[i] = (float)(grads[i] * coef);
    }
    a->t++;
    const float b1 = a->p.beta1, b2 = a->p.beta2;
    const double bc1 = 1.0 - pow(b1, (double)a->t), bc2 = 1.0 - pow(b2, (double)a->t);
    const float step = (float)(a->p.lr / bc1), rbc2 = (float)(1.0 / sqrt(bc2)), eps = a->p.eps;
    float *m = a->m, *v = a->v;
    for (size_t i = 0; i < n; i++) {
        float g = grads[i];
        m[i] = b1 * m[i] + (1.0f - b1) * g;
        v[i] = b2 * v[i] + (1.0f - b2) * g * g;
        params[i] -= step * m[i] / (sqrtf(v[i]) * rbc2 + eps);
    }
    return norm;
}
