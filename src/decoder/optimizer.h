/*
 * optimizer.h - Adam with PyTorch's semantics (torch.optim.Adam, no weight
 * decay, no amsgrad) and optional global gradient-norm clipping as
 * torch.nn.utils.clip_grad_norm_. The moments m and v are one buffer each,
 * laid out like the parameters.
 */
#ifndef IMCAP_OPTIMIZER_H
#define IMCAP_OPTIMIZER_H

#include "internal.h"

typedef struct adam_params {
    float lr;       /* 1e-3 */
    float beta1;    /* 0.9 */
    float beta2;    /* 0.999 */
    float eps;      /* 1e-8 */
    float clip;     /* max global gradient L2 norm; <= 0: no clipping */
} adam_params;

adam_params adam_default_params(void);

typedef struct adam {
    adam_params p;
    size_t n;
    uint64_t t;     /* steps taken */
    float *m, *v;   /* [n] first and second moments */
} adam;

imcap_status adam_init(adam *a, const adam_params *p, size_t n);
void adam_free(adam *a);
/* One step over params[n] with grads[n] (scaled in place when clipped).
 * With clipping on, returns the global gradient norm before clipping;
 * without, 0 (the norm is not computed). */
float adam_step(adam *a, float *params, float *grads);

#endif
