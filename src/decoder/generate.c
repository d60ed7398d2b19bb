/*
 * generate.c - captions from the decoder, one token at a time, through the
 * inference step API only (dec_init_state, dec_step).
 *
 * Every step turns the logits into log-probabilities over the allowed
 * tokens (log-softmax in double; PAD/START/UNK masked; END masked at the
 * first step so a caption has at least one word). Greedy takes the argmax
 * (lowest id on exact ties); sampling draws from softmax(logp / T); beam
 * search keeps K prefixes ranked by summed log-probability and ranks the
 * finished captions by logprob / len^alpha (len = words + END).
 *
 * Beam step, precisely: all (prefix, token) extensions are ordered by
 * summed log-probability (ties: lower prefix index, then lower token id).
 * Walking that order, an END extension among the first K becomes a finished
 * caption; other extensions become the next prefixes until there are K.
 * A prefix that reaches max_len words is finished without END. The search
 * stops early once K captions are finished and no prefix can still beat the
 * K-th: a prefix's best possible score is lp / (max_len + 1)^alpha, since
 * lp can only fall and len is at most max_len + 1. With block_ngram n, an
 * extension that would repeat an n-gram of its prefix is not considered.
 */
#include "generate.h"
#include "ops.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

imcap_gen_params imcap_gen_default_params(void)
{
    imcap_gen_params p = {.beam = 1, .temperature = 0.0f, .seed = 1, .max_len = 20, .n_best = 1,
                          .length_alpha = 0.7f};
    return p;
}

imcap_status imcap_gen_params_check(const imcap_gen_params *p)
{
    if (!p) return imcap_fail(IMCAP_E_ARG, "generation: no parameters");
    if (p->beam < 1 || p->beam > GEN_MAX_BEAM)
        return imcap_fail(IMCAP_E_ARG, "generation: beam width %d is outside [1, %d]", p->beam, GEN_MAX_BEAM);
    if (!(p->temperature >= 0.0f && p->temperature <= 100.0f))
        return imcap_fail(IMCAP_E_ARG, "generation: temperature %g is outside [0, 100]", (double)p->temperature);
    if (p->temperature > 0.0f && p->beam > 1)
        return imcap_fail(IMCAP_E_ARG, "generation: sampling (temperature %g) needs beam 1, not %d",
                          (double)p->temperature, p->beam);
    if (p->max_len < 1 || p->max_len > GEN_MAX_LEN)
        return imcap_fail(IMCAP_E_ARG, "generation: max length %d is outside [1, %d]", p->max_len, GEN_MAX_LEN);
    if (p->n_best < 1 || p->n_best > GEN_MAX_BEAM)
        return imcap_fail(IMCAP_E_ARG, "generation: n-best %d is outside [1, %d]", p->n_best, GEN_MAX_BEAM);
    if (p->beam > 1 && p->n_best > p->beam)
        return imcap_fail(IMCAP_E_ARG, "generation: n-best %d is more than the beam width %d", p->n_best,
                          p->beam);
    if (p->beam == 1 && p->temperature == 0.0f && p->n_best > 1)
        return imcap_fail(IMCAP_E_ARG,
                          "generation: greedy decoding gives one caption; n-best %d needs beam search "
                          "(beam >= %d) or sampling (temperature > 0)",
                          p->n_best, p->n_best);
    if (p->block_ngram < 0 || p->block_ngram > 8)
        return imcap_fail(IMCAP_E_ARG, "generation: n-gram blocking %d is outside [0, 8]", p->block_ngram);
    if (!(p->length_alpha >= 0.0f && p->length_alpha <= 2.0f))
        return imcap_fail(IMCAP_E_ARG, "generation: length alpha %g is outside [0, 2]", (double)p->length_alpha);
    return IMCAP_OK;
}

typedef struct gen_ctx {
    const dec_model *m;
    const gen_special *sp;
    int V;
    size_t S;               /* floats of one hypothesis's state */
    unsigned char *allowed; /* [V] */
    float *ctx;             /* the photos' contexts [n_ctx][dec_context_floats] (NULL if 0 floats) */
    float *scratch;
    float *logits;          /* [n][V] */
    double *logp;           /* [n][V] */
} gen_ctx;

static void ctx_free(gen_ctx *g)
{
    free(g->allowed);
    imcap_free(g->ctx);
    imcap_free(g->scratch);
    imcap_free(g->logits);
    imcap_free(g->logp);
}

static imcap_status ctx_init(gen_ctx *g, const dec_model *m, const gen_special *sp, int n_rows, int n_ctx)
{
    memset(g, 0, sizeof *g);
    g->m = m;
    g->sp = sp;
    g->V = m->cfg.n_vocab;
    g->S = dec_state_floats(m);
    if (sp->start_id < 0 || sp->start_id >= g->V || sp->end_id < 0 || sp->end_id >= g->V ||
        sp->n_masked < 0 || sp->n_masked > GEN_MAX_MASKED)
        return imcap_fail(IMCAP_E_ARG, "generation: special token ids out of range for a vocabulary of %d",
                          g->V);
    g->allowed = malloc((size_t)g->V);
    g->scratch = imcap_alloc(dec_step_scratch_floats(m, n_rows), sizeof(float));
    g->logits = imcap_alloc((size_t)n_rows * g->V, sizeof(float));
    g->logp = imcap_alloc((size_t)n_rows * g->V, sizeof(double));
    const size_t cf = dec_context_floats(m);
    g->ctx = cf ? imcap_alloc((size_t)n_ctx * cf, sizeof(float)) : NULL;
    if (!g->allowed || !g->scratch || !g->logits || !g->logp || (cf && !g->ctx)) {
        ctx_free(g);
        return imcap_fail(IMCAP_E_NOMEM, "generation: out of memory for %d hypotheses of %d tokens", n_rows,
                          g->V);
    }
    memset(g->allowed, 1, (size_t)g->V);
    for (int i = 0; i < sp->n_masked; i++) {
        if (sp->masked[i] < 0 || sp->masked[i] >= g->V) {
            ctx_free(g);
            return imcap_fail(IMCAP_E_ARG, "generation: masked token id %d out of range", sp->masked[i]);
        }
        g->allowed[sp->masked[i]] = 0;
    }
    if (!g->allowed[sp->end_id]) {
        ctx_free(g);
        return imcap_fail(IMCAP_E_ARG, "generation: the END token is masked");
    }
    int n_words = 0;
    for (int v = 0; v < g->V; v++) n_words += g->allowed[v] && v != sp->end_id;
    if (n_words == 0) {
        ctx_free(g);
        return imcap_fail(IMCAP_E_ARG, "generation: the vocabulary has no words besides special tokens");
    }
    return IMCAP_OK;
}

/* A NaN or infinite logit (weights that overflow the LSTM) is an error, never a caption. */
static imcap_status nonfinite_logit(int step)
{
    return imcap_fail(IMCAP_E_FORMAT, "generation: the decoder produced a non-finite score at step %d (its "
                      "weights overflow: the model file is damaged or was not trained by imcap)", step + 1);
}

/* Masked log-softmax of n rows of logits into g->logp; END allowed unless
 * first. Disallowed tokens get -INFINITY. Fails on a non-finite allowed logit. */
static imcap_status log_softmax_rows(gen_ctx *g, int n, bool first, int step)
{
    const int V = g->V, end = g->sp->end_id;
    for (int r = 0; r < n; r++) {
        const float *l = g->logits + (size_t)r * V;
        double *o = g->logp + (size_t)r * V;
        double mx = -INFINITY;
        for (int v = 0; v < V; v++)
            if (g->allowed[v] && !(first && v == end)) {
                if (!isfinite(l[v])) return nonfinite_logit(step);
                if (l[v] > mx) mx = l[v];
            }
        double s = 0;
        for (int v = 0; v < V; v++)
            if (g->allowed[v] && !(first && v == end)) s += exp((double)l[v] - mx);
        double lse = mx + log(s);
        for (int v = 0; v < V; v++)
            o[v] = (g->allowed[v] && !(first && v == end)) ? (double)l[v] - lse : -INFINITY;
    }
    return IMCAP_OK;
}

static double hyp_score(double lp, int len, float alpha)
{
    if (alpha == 0.0f || len <= 0) return lp;
    return lp / pow((double)len, (double)alpha);
}

/* Greedy (temperature 0) or one sample (temperature > 0, rng) into *h. */
static imcap_status run_single(gen_ctx *g, const float *img, const imcap_gen_params *p, imcap_rng *rng,
                               gen_hyp *out)
{
    const int V = g->V;
    float *hc = imcap_alloc(g->S, sizeof(float));
    if (!hc) return IMCAP_E_NOMEM;
    imcap_status st = dec_init_state(g->m, img, 1, g->ctx, hc);
    if (st) {
        imcap_free(hc);
        return st;
    }
    memset(out, 0, sizeof *out);
    int32_t tok = g->sp->start_id;
    double lp = 0;
    const double T = p->temperature;
    for (int t = 0; t < p->max_len; t++) {
        dec_step(g->m, g->ctx, true, &tok, 1, hc, g->logits, hc, NULL, g->scratch);
        if ((st = log_softmax_rows(g, 1, t == 0, t))) break;
        const double *q = g->logp;
        int pick = -1;
        if (T == 0.0) {
            for (int v = 0; v < V; v++)
                if (q[v] > -INFINITY && (pick < 0 || q[v] > q[pick])) pick = v;
        } else {
            /* p^(1/T) renormalised = softmax(logp / T). */
            double mx = -INFINITY, s = 0;
            for (int v = 0; v < V; v++)
                if (q[v] > mx) mx = q[v];
            for (int v = 0; v < V; v++)
                if (q[v] > -INFINITY) s += exp((q[v] - mx) / T);
            double u = imcap_rng_uniform(rng) * s, acc = 0;
            for (int v = 0; v < V; v++) {
                if (q[v] == -INFINITY) continue;
                pick = v; /* the last allowed token absorbs rounding */
                acc += exp((q[v] - mx) / T);
                if (u < acc) break;
            }
        }
        lp += q[pick];
        if (pick == g->sp->end_id) {
            out->ended = true;
            break;
        }
        out->words[out->n_words++] = pick;
        tok = pick;
    }
    out->logprob = lp;
    out->score = hyp_score(lp, out->n_words + out->ended, p->length_alpha);
    imcap_free(hc);
    return st;
}

/* Finished list: best first by score, stable (earlier insertions win ties),
 * at most cap entries. */
static void finished_insert(gen_hyp *fin, int *n, int cap, const gen_hyp *h)
{
    int pos = *n;
    while (pos > 0 && fin[pos - 1].score < h->score) pos--;
    if (pos >= cap) return;
    int last = *n < cap ? *n : cap - 1;
    memmove(fin + pos + 1, fin + pos, sizeof *fin * (size_t)(last - pos));
    fin[pos] = *h;
    if (*n < cap) (*n)++;
}

/* Whether appending word v to h repeats an n-gram of h (n >= 1). */
static bool repeats_ngram(const gen_hyp *h, int32_t v, int n)
{
    const int nw = h->n_words;
    if (n < 1 || nw + 1 < n) return false;
    const int32_t *tail = h->words + nw - (n - 1); /* the n - 1 words before v */
    for (int i = 0; i + n <= nw; i++)
        if (h->words[i + n - 1] == v && memcmp(h->words + i, tail, sizeof(int32_t) * (size_t)(n - 1)) == 0)
            return true;
    return false;
}

typedef struct cand {
    double lp;
    int row, tok;
} cand;

/* a ranks before b: higher lp, then lower row, then lower token. */
static bool cand_before(const cand *a, const cand *b)
{
    if (a->lp != b->lp) return a->lp > b->lp;
    if (a->row != b->row) return a->row < b->row;
    return a->tok < b->tok;
}

static imcap_status run_beam(gen_ctx *g, const float *img, const imcap_gen_params *p, gen_hyp *out, int *n_out)
{
    const int K = p->beam, V = g->V, C = 2 * K;
    const size_t S = g->S, sk = (size_t)K * S;
    imcap_status st = IMCAP_OK;
    float *states = imcap_alloc(2 * sk, sizeof(float));
    gen_hyp *live = calloc((size_t)K, sizeof *live), *next = calloc((size_t)K, sizeof *next);
    gen_hyp *fin = calloc((size_t)K, sizeof *fin);
    cand *top = malloc(sizeof *top * (size_t)C);
    int32_t *tok = malloc(sizeof *tok * (size_t)K);
    if (!states || !live || !next || !fin || !top || !tok) {
        st = imcap_fail(IMCAP_E_NOMEM, "beam search: out of memory for beam %d", K);
        goto done;
    }
    float *h = states, *h2 = h + sk; /* the live states [K][S], the next ones */
    if ((st = dec_init_state(g->m, img, 1, g->ctx, h))) goto done;
    int n_live = 1, n_fin = 0;
    tok[0] = g->sp->start_id;
    const double bound_div = p->length_alpha == 0.0f ? 1.0 : pow((double)p->max_len + 1, p->length_alpha);

    for (int t = 0; t < p->max_len && n_live > 0; t++) {
        dec_step(g->m, g->ctx, true, tok, n_live, h, g->logits, h, NULL, g->scratch);
        if ((st = log_softmax_rows(g, n_live, t == 0, t))) goto done;
        /* The C best extensions, sorted. */
        int n_top = 0;
        for (int r = 0; r < n_live; r++) {
            const double *q = g->logp + (size_t)r * V;
            for (int v = 0; v < V; v++) {
                if (q[v] == -INFINITY) continue;
                if (p->block_ngram > 0 && v != g->sp->end_id && repeats_ngram(&live[r], v, p->block_ngram)) continue;
                cand x = {live[r].logprob + q[v], r, v};
                if (n_top == C && !cand_before(&x, &top[C - 1])) continue;
                int pos = n_top < C ? n_top++ : C - 1;
                while (pos > 0 && cand_before(&x, &top[pos - 1])) {
                    top[pos] = top[pos - 1];
                    pos--;
                }
                top[pos] = x;
            }
        }
        int n_next = 0;
        for (int i = 0; i < n_top && n_next < K; i++) {
            const cand *x = &top[i];
            if (x->tok == g->sp->end_id) {
                if (i >= K) continue;
                gen_hyp f = live[x->row];
                f.ended = true;
                f.logprob = x->lp;
                f.score = hyp_score(x->lp, f.n_words + 1, p->length_alpha);
                finished_insert(fin, &n_fin, K, &f);
                continue;
            }
            gen_hyp *nh = &next[n_next];
            *nh = live[x->row];
            nh->words[nh->n_words++] = x->tok;
            nh->logprob = x->lp;
            memcpy(h2 + (size_t)n_next * S, h + (size_t)x->row * S, sizeof(float) * S);
            tok[n_next] = x->tok;
            n_next++;
        }
        gen_hyp *sw = live;
        live = next;
        next = sw;
        float *fs = h;
        h = h2;
        h2 = fs;
        n_live = n_next;
        if (n_fin == K && n_live > 0 && live[0].logprob / bound_div <= fin[K - 1].score) n_live = 0;
    }
    /* Prefixes that reached max_len words end without END. */
    for (int r = 0; r < n_live; r++) {
        live[r].ended = false;
        live[r].score = hyp_score(live[r].logprob, live[r].n_words, p->length_alpha);
        finished_insert(fin, &n_fin, K, &live[r]);
    }
    *n_out = n_fin < p->n_best ? n_fin : p->n_best;
    memcpy(out, fin, sizeof *out * (size_t)*n_out);
done:
    imcap_free(states);
    free(live);
    free(next);
    free(fin);
    free(top);
    free(tok);
    return st;
}

static int cmp_score_desc(const void *a, const void *b)
{
    const gen_hyp *x = a, *y = b;
    return (x->score < y->score) - (x->score > y->score);
}

imcap_status gen_caption(const dec_model *m, const float *img, const gen_special *sp, const imcap_gen_params *p,
                         gen_hyp *out, int *n_out)
{
    *n_out = 0;
    imcap_status st = imcap_gen_params_check(p);
    if (st) return st;
    gen_ctx g;
    if ((st = ctx_init(&g, m, sp, p->beam, 1))) return st;
    ops_blas_enter(); /* one-row GEMMs: OpenBLAS threads only cost synchronisation */
    if (p->beam > 1) {
        st = run_beam(&g, img, p, out, n_out);
    } else {
        imcap_rng rng;
        imcap_rng_seed(&rng, p->seed);
        for (int i = 0; i < p->n_best && !st; i++) st = run_single(&g, img, p, &rng, &out[i]);
        if (!st) {
            *n_out = p->n_best;
            qsort(out, (size_t)p->n_best, sizeof *out, cmp_score_desc);
        }
    }
    ops_blas_leave();
    ctx_free(&g);
    return st;
}

imcap_status gen_beam_search(const dec_model *m, const float *img, const gen_special *sp,
                             const imcap_gen_params *p, gen_hyp *out, int *n_out)
{
    *n_out = 0;
    imcap_gen_params q = *p;
    q.temperature = 0.0f;
    if (q.beam == 1 && q.n_best > 1)
        return imcap_fail(IMCAP_E_ARG, "generation: n-best %d is more than the beam width 1", q.n_best);
    q.n_best = 1;
    imcap_status st = imcap_gen_params_check(&q);
    if (st) return st;
    q.n_best = p->n_best;
    gen_ctx g;
    if ((st = ctx_init(&g, m, sp, q.beam, 1))) return st;
    ops_blas_enter();
    st = run_beam(&g, img, &q, out, n_out);
    ops_blas_leave();
    ctx_free(&g);
    return st;
}

imcap_status gen_greedy_batch(const dec_model *m, const float *img, int n, const gen_special *sp, int max_len,
                              int32_t *out, int *lens)
{
    if (n < 1 || max_len < 1 || max_len > GEN_MAX_LEN)
        return imcap_fail(IMCAP_E_ARG, "greedy decoding: %d images, max length %d", n, max_len);
    gen_ctx g;
    imcap_status st = ctx_init(&g, m, sp, n, n);
    if (st) return st;
    const size_t V = (size_t)g.V;
    float *h = imcap_alloc((size_t)n * g.S, sizeof(float));
    int32_t *tok = imcap_alloc((size_t)n, sizeof(int32_t));
    char *done = imcap_calloc((size_t)n, 1);
    if (!h || !tok || !done) {
        st = IMCAP_E_NOMEM;
        goto out;
    }
    if ((st = dec_init_state(m, img, n, g.ctx, h))) goto out;
    for (int i = 0; i < n; i++) {
        tok[i] = sp->start_id;
        lens[i] = 0;
    }
    for (int t = 0, left = n; t < max_len && left > 0; t++) {
        dec_step(m, g.ctx, false, tok, n, h, g.logits, h, NULL, g.scratch);
        for (int i = 0; i < n; i++) {
            if (done[i]) continue;
            const float *z = g.logits + (size_t)i * V;
            int32_t best = -1;
            for (size_t v = 0; v < V; v++) {
                if (!g.allowed[v] || (t == 0 && (int32_t)v == sp->end_id)) continue;
                if (!isfinite(z[v])) {
                    st = nonfinite_logit(t);
                    goto out;
                }
                if (best < 0 || z[v] > z[best]) best = (int32_t)v;
            }
            if (best == sp->end_id) {
                done[i] = 1;
                left--;
                continue;
            }
            out[(size_t)i * max_len + lens[i]++] = best;
            tok[i] = best;
        }
    }
out:
    imcap_free(h);
    imcap_free(tok);
    imcap_free(done);
    ctx_free(&g);
    return st;
}

typedef struct roll_ctx {
    gen_ctx *g;
    int t, k1;            /* step, rows per image (k + 1) */
    const int *live;      /* [n_live] row of each live hypothesis */
    imcap_rng *rng;       /* [rows] */
    int32_t *pick;        /* [n_live] chosen token */
} roll_ctx;

/* live hypotheses [b, e): greedy argmax, or a draw from the masked softmax
 * (the hypothesis's logits are overwritten with exp(z - max)) */
static void roll_pick(void *vc, size_t b, size_t e, int tid)
{
    const roll_ctx *c = vc;
    const gen_ctx *g = c->g;
    const int V = g->V, end = g->sp->end_id;
    for (size_t j = b; j < e; j++) {
        float *z = g->logits + j * (size_t)V;
        const int row = c->live[j];
        int32_t best = -1;
        for (int v = 0; v < V; v++) {
            if (!g->allowed[v] || (c->t == 0 && v == end)) continue;
            if (best < 0 || z[v] > z[best]) best = v;
        }
        if (row % c->k1 != 0) {
            const float mx = z[best];
            double sum = 0;
            for (int v = 0; v < V; v++) {
                z[v] = g->allowed[v] && !(c->t == 0 && v == end) ? expf(z[v] - mx) : 0.0f;
                sum += z[v];
            }
            const double u = imcap_rng_uniform(&c->rng[row]) * sum;
            double acc = 0;
            for (int v = 0; v < V; v++) {
                if (z[v] == 0.0f) continue;
                best = v; /* the last possible token absorbs rounding */
                acc += z[v];
                if (u < acc) break;
            }
        }
        c->pick[j] = best;
    }
}

imcap_status gen_rollouts(const dec_model *m, const float *img, int n, int k, const gen_special *sp, int max_len,
                          uint64_t seed, int32_t *out, int *lens, bool *ended)
{
    if (n < 1 || k < 0 || k > 1000 || max_len < 1 || max_len > GEN_MAX_LEN)
        return imcap_fail(IMCAP_E_ARG, "rollouts: %d images, %d samples, max length %d", n, k, max_len);
    const int k1 = k + 1, rows = n * k1;
    gen_ctx g;
    imcap_status st = ctx_init(&g, m, sp, rows, rows);
    if (st) return st;
    const size_t S = g.S, C = dec_context_floats(m);
    /* per photo, then copied to each of its rows: context [rows][C], state [rows][S] */
    float *ctx0 = C ? imcap_alloc((size_t)n * C, sizeof(float)) : NULL;
    float *st0 = imcap_alloc((size_t)n * S, sizeof(float)), *state = imcap_alloc((size_t)rows * S, sizeof(float));
    int32_t *tok = imcap_alloc((size_t)rows, sizeof(int32_t)), *pick = imcap_alloc((size_t)rows, sizeof(int32_t));
    int *live = imcap_alloc((size_t)rows, sizeof(int));
    imcap_rng *rng = imcap_alloc((size_t)rows, sizeof(imcap_rng));
    if ((C && !ctx0) || !st0 || !state || !tok || !pick || !live || !rng) {
        st = imcap_fail(IMCAP_E_NOMEM, "rollouts: out of memory for %d rows", rows);
        goto out;
    }
    ops_blas_enter();
    st = dec_init_state(m, img, n, ctx0, st0);
    if (st) goto leave;
    for (int r = 0; r < rows; r++) {
        if (C) memcpy(g.ctx + (size_t)r * C, ctx0 + (size_t)(r / k1) * C, sizeof(float) * C);
        memcpy(state + (size_t)r * S, st0 + (size_t)(r / k1) * S, sizeof(float) * S);
        tok[r] = sp->start_id;
        live[r] = r;
        lens[r] = 0;
        ended[r] = false;
        uint64_t x = seed ^ (0x9e3779b97f4a7c15ull * (uint64_t)(r + 1));
        x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
        imcap_rng_seed(&rng[r], x ^ (x >> 31));
    }
    /* the live hypotheses are kept packed: hypothesis j is row live[j] */
    int n_live = rows;
    for (int t = 0; t < max_len && n_live > 0; t++) {
        dec_step(m, g.ctx, false, tok, n_live, state, g.logits, state, NULL, g.scratch);
        roll_ctx rc = {.g = &g, .t = t, .k1 = k1, .live = live, .rng = rng, .pick = pick};
        ops_parallel((size_t)n_live, 8, roll_pick, &rc);
        int kept = 0;
        for (int j = 0; j < n_live; j++) {
            const int r = live[j];
            if (pick[j] == sp->end_id) {
                ended[r] = true;
                continue;
            }
            out[(size_t)r * max_len + lens[r]++] = pick[j];
            if (kept != j) {
                memcpy(state + (size_t)kept * S, state + (size_t)j * S, sizeof(float) * S);
                if (C) memcpy(g.ctx + (size_t)kept * C, g.ctx + (size_t)j * C, sizeof(float) * C);
            }
            tok[kept] = pick[j];
            live[kept++] = r;
        }
        n_live = kept;
    }
leave:
    ops_blas_leave();
out:
    imcap_free(ctx0);
    imcap_free(st0);
    imcap_free(state);
    imcap_free(tok);
    imcap_free(pick);
    imcap_free(live);
    imcap_free(rng);
    ctx_free(&g);
    return st;
}

imcap_status gen_greedy(const dec_model *m, const float *img, int n, int32_t start_id, int32_t end_id, int max_len,
                        int32_t *out, int *lens)
{
    gen_special sp = {.start_id = start_id, .end_id = end_id, .n_masked = 0};
    return gen_greedy_batch(m, img, n, &sp, max_len, out, lens);
}

/* Teacher-forced replay of a word sequence (ended with END if ended): its
 * log-probability and, if attn, the attention weights of every step. */
static imcap_status replay(const dec_model *m, const float *img, const gen_special *sp, const int32_t *words,
                           int n_words, bool ended, double *logprob, float *attn)
{
    *logprob = 0;
    if (n_words < 0 || n_words > GEN_MAX_LEN)
        return imcap_fail(IMCAP_E_ARG, "generation: sequence of %d words", n_words);
    gen_ctx g;
    imcap_status st = ctx_init(&g, m, sp, 1, 1);
    if (st) return st;
    float *hc = imcap_alloc(g.S, sizeof(float));
    if (!hc) {
        ctx_free(&g);
        return IMCAP_E_NOMEM;
    }
    if ((st = dec_init_state(m, img, 1, g.ctx, hc))) goto done;
    const size_t L = (size_t)dec_regions(&m->cfg);
    int32_t tok = sp->start_id;
    double lp = 0;
    for (int t = 0; t < n_words + (ended ? 1 : 0); t++) {
        int32_t next = t < n_words ? words[t] : sp->end_id;
        if (next < 0 || next >= g.V) {
            st = imcap_fail(IMCAP_E_ARG, "generation: token id %d out of range", next);
            goto done;
        }
        dec_step(m, g.ctx, true, &tok, 1, hc, g.logits, hc, attn && t < n_words ? attn + (size_t)t * L : NULL,
                 g.scratch);
        if ((st = log_softmax_rows(&g, 1, t == 0, t))) goto done;
        lp += g.logp[next];
        tok = next;
    }
    *logprob = lp;
done:
    imcap_free(hc);
    ctx_free(&g);
    return st;
}

imcap_status gen_sequence_logprob(const dec_model *m, const float *img, const gen_special *sp,
                                  const int32_t *words, int n_words, bool ended, double *logprob)
{
    return replay(m, img, sp, words, n_words, ended, logprob, NULL);
}

imcap_status gen_attention(const dec_model *m, const float *img, const gen_special *sp, const int32_t *words,
                           int n_words, float *attn)
{
    double lp;
    return replay(m, img, sp, words, n_words, false, &lp, attn);
}
