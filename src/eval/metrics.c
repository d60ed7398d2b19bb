/*
 * metrics.c - the COCO caption toolkit's metrics, computed exactly:
 *
 *   BLEU-1..4 (corpus level, as coco-caption's bleu_scorer with "closest"):
 *     per image, clipped n-gram matches against the max count over the
 *     references; the reference length is the one closest to the candidate
 *     length (ties to the shorter); totals over the corpus give
 *     prod_k (correct_k + 1e-15) / (guess_k + 1e-9), its (n)th root, and a
 *     brevity penalty exp(1 - r/c) when (c + 1e-15) / (r + 1e-9) < 1.
 *   ROUGE-L: longest common subsequence; max precision and max recall over
 *     the references; F with beta = 1.2; mean over images.
 *   CIDEr-D: n = 1..4 tf-idf vectors with document frequencies taken over
 *     the reference sets of the evaluated images, idf = log(N) - log(max(1,
 *     df)); per n the clipped dot product sum min(c, r) * r over the norms,
 *     times a Gaussian penalty exp(-(lc - lr)^2 / (2 * 6^2)) on the number
 *     of bigram occurrences; mean over n and references, times 10.
 *
 * Captions become token ids (interned strings), n-grams become ids of a
 * global table (with their document frequency), and each sentence keeps a
 * sorted bag of (n-gram id, count) so that all comparisons are merges.
 */
#include "internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MAX_N 4
#define CIDER_SIGMA 6.0
#define ROUGE_BETA 1.2
#define BLEU_TINY 1e-15
#define BLEU_SMALL 1e-9

static const char *const k_metric_names[IMCAP_N_METRICS] = {"Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4",
                                                            "ROUGE_L", "CIDEr"};

const char *imcap_metric_name(int i) { return i >= 0 && i < IMCAP_N_METRICS ? k_metric_names[i] : NULL; }

double imcap_metric_value(const imcap_scores *s, int i)
{
    if (!s || i < 0 || i >= IMCAP_N_METRICS) return NAN;
    if (i < 4) return s->bleu[i];
    return i == 4 ? s->rouge_l : s->cider_d;
}

/* --------------------------------------------------------- hash helpers */

static uint64_t hash_bytes(const void *p, size_t n)
{
    const unsigned char *b = p;
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 1099511628211ull;
    h ^= h >> 33; /* final avalanche (murmur3 fmix64) so that low bits index well */
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ull;
    return h ^ (h >> 33);
}

/* Token strings -> ids. */
typedef struct tok_table {
    char *arena;
    size_t arena_len, arena_cap;
    size_t *off;     /* [n] offset of token i in arena */
    uint32_t *len;   /* [n] byte length of token i */
    uint32_t n, cap; /* tokens, allocated entries */
    uint32_t *slots; /* [nslots] token id + 1, 0 = empty */
    size_t nslots;   /* power of two */
} tok_table;

/* N-grams -> ids, with document frequency. */
typedef struct ngram {
    uint32_t ids[MAX_N];
    uint32_t n;        /* 1..4 */
    uint32_t df;       /* number of images whose references contain it */
    uint32_t last_img; /* image index + 1 that last counted in df */
} ngram;

typedef struct ng_table {
    ngram *g;
    uint32_t n, cap;
    uint32_t *slots;
    size_t nslots;
} ng_table;

typedef struct ngcount {
    uint32_t id, count;
} ngcount;

typedef struct sentence {
    uint32_t *tok;  /* [ntok] token ids */
    uint32_t ntok;
    ngcount *bag;   /* [nbag] sorted by id */
    uint32_t nbag;
} sentence;

typedef struct scorer {
    tok_table tt;
    ng_table nt;
    uint32_t *scratch; /* n-gram ids of one sentence before sorting */
    size_t scratch_cap;
} scorer;

static int grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap) return 1;
    size_t c = *cap ? *cap : 16;
    while (c < need) {
        if (c > SIZE_MAX / 2 / elem) return 0;
        c *= 2;
    }
    void *q = realloc(*p, c * elem);
    if (!q) return 0;
    *p = q;
    *cap = c;
    return 1;
}

static int grow32(void **p, uint32_t *cap, size_t need, size_t elem)
{
    size_t c = *cap;
    if (need > UINT32_MAX / 2) return 0;
    if (!grow(p, &c, need, elem)) return 0;
    *cap = (uint32_t)c;
    return 1;
}

static int rehash(uint32_t **slots, size_t *nslots, uint32_t count, uint64_t (*h)(const void *, uint32_t),
                  const void *ctx)
{
    /* count entries exist; make room for one more at load <= 1/2 */
    if (((size_t)count + 1) * 2 < *nslots) return 1;
    size_t ns = *nslots ? *nslots * 2 : 1024;
    while (((size_t)count + 1) * 2 >= ns) ns *= 2;
    uint32_t *s = calloc(ns, sizeof *s);
    if (!s) return 0;
    for (uint32_t i = 0; i < count; i++) {
        size_t k = h(ctx, i) & (ns - 1);
        while (s[k]) k = (k + 1) & (ns - 1);
        s[k] = i + 1;
    }
    free(*slots);
    *slots = s;
    *nslots = ns;
    return 1;
}

static uint64_t tok_hash_of(const void *ctx, uint32_t i)
{
    const tok_table *t = ctx;
    return hash_bytes(t->arena + t->off[i], t->len[i]);
}

/* Id of token s[0..n), adding it if new; UINT32_MAX on allocation failure. */
static uint32_t tok_intern(tok_table *t, const char *s, size_t n)
{
    if (n > UINT32_MAX / 2) return UINT32_MAX;
    if (!rehash(&t->slots, &t->nslots, t->n, tok_hash_of, t)) return UINT32_MAX;
    uint64_t h = hash_bytes(s, n);
    size_t k = h & (t->nslots - 1);
    while (t->slots[k]) {
        uint32_t i = t->slots[k] - 1;
        if (t->len[i] == n && !memcmp(t->arena + t->off[i], s, n)) return i;
        k = (k + 1) & (t->nslots - 1);
    }
    size_t cap = t->cap;
    if (!grow((void **)&t->off, &cap, (size_t)t->n + 1, sizeof *t->off)) return UINT32_MAX;
    cap = t->cap;
    if (!grow((void **)&t->len, &cap, (size_t)t->n + 1, sizeof *t->len)) return UINT32_MAX;
    if (cap > UINT32_MAX) return UINT32_MAX;
    t->cap = (uint32_t)cap;
    if (!grow((void **)&t->arena, &t->arena_cap, t->arena_len + n + 1, 1)) return UINT32_MAX;
    memcpy(t->arena + t->arena_len, s, n);
    t->off[t->n] = t->arena_len;
    t->len[t->n] = (uint32_t)n;
    t->arena_len += n;
    t->slots[k] = t->n + 1;
    return t->n++;
}

static uint64_t ng_hash(const uint32_t *ids, uint32_t n)
{
    return hash_bytes(ids, n * sizeof *ids) + n;
}

static uint64_t ng_hash_of(const void *ctx, uint32_t i)
{
    const ng_table *t = ctx;
    return ng_hash(t->g[i].ids, t->g[i].n);
}

static uint32_t ng_intern(ng_table *t, const uint32_t *ids, uint32_t n)
{
    if (!rehash(&t->slots, &t->nslots, t->n, ng_hash_of, t)) return UINT32_MAX;
    size_t k = ng_hash(ids, n) & (t->nslots - 1);
    while (t->slots[k]) {
        uint32_t i = t->slots[k] - 1;
        if (t->g[i].n == n && !memcmp(t->g[i].ids, ids, n * sizeof *ids)) return i;
        k = (k + 1) & (t->nslots - 1);
    }
    if (!grow32((void **)&t->g, &t->cap, (size_t)t->n + 1, sizeof *t->g)) return UINT32_MAX;
    ngram *g = &t->g[t->n];
    memset(g, 0, sizeof *g);
    memcpy(g->ids, ids, n * sizeof *ids);
    g->n = n;
    t->slots[k] = t->n + 1;
    return t->n++;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static int is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

/* Split a tokenized caption on white space, intern tokens and n-grams. */
static imcap_status sentence_build(scorer *sc, const char *text, sentence *out)
{
    memset(out, 0, sizeof *out);
    size_t ntok = 0, cap = 0;
    for (const char *p = text; *p;) {
        while (*p && is_ws(*p)) p++;
        if (!*p) break;
        const char *q = p;
        while (*q && !is_ws(*q)) q++;
        uint32_t id = tok_intern(&sc->tt, p, (size_t)(q - p));
        if (id == UINT32_MAX || !grow((void **)&out->tok, &cap, ntok + 1, sizeof *out->tok))
            return imcap_fail(IMCAP_E_NOMEM, "scoring: out of memory");
        out->tok[ntok++] = id;
        p = q;
    }
    if (ntok > UINT32_MAX / MAX_N) return imcap_fail(IMCAP_E_ARG, "scoring: caption of %zu tokens is too long", ntok);
    out->ntok = (uint32_t)ntok;
    size_t ngr = 0;
    if (!grow((void **)&sc->scratch, &sc->scratch_cap, ntok * MAX_N + 1, sizeof *sc->scratch))
        return imcap_fail(IMCAP_E_NOMEM, "scoring: out of memory");
    for (uint32_t n = 1; n <= MAX_N; n++)
        for (size_t i = 0; i + n <= ntok; i++) {
            uint32_t id = ng_intern(&sc->nt, out->tok + i, n);
            if (id == UINT32_MAX) return imcap_fail(IMCAP_E_NOMEM, "scoring: out of memory");
            sc->scratch[ngr++] = id;
        }
    qsort(sc->scratch, ngr, sizeof *sc->scratch, cmp_u32);
    out->bag = malloc((ngr ? ngr : 1) * sizeof *out->bag);
    if (!out->bag) return imcap_fail(IMCAP_E_NOMEM, "scoring: out of memory");
    uint32_t nb = 0;
    for (size_t i = 0; i < ngr; i++) {
        if (nb && out->bag[nb - 1].id == sc->scratch[i]) {
            out->bag[nb - 1].count++;
        } else {
            out->bag[nb].id = sc->scratch[i];
            out->bag[nb].count = 1;
            nb++;
        }
    }
    out->nbag = nb;
    return IMCAP_OK;
}

static void sentence_free(sentence *s)
{
    free(s->tok);
    free(s->bag);
}

/* ----------------------------------------------------------------- ROUGE-L */

static uint32_t lcs(const uint32_t *a, uint32_t na, const uint32_t *b, uint32_t nb, uint32_t *row)
{
    /* row: nb + 1 entries, one DP row kept */
    memset(row, 0, ((size_t)nb + 1) * sizeof *row);
    for (uint32_t i = 0; i < na; i++) {
        uint32_t diag = 0;
        for (uint32_t j = 1; j <= nb; j++) {
            uint32_t up = row[j];
            row[j] = a[i] == b[j - 1] ? diag + 1 : (up > row[j - 1] ? up : row[j - 1]);
            diag = up;
        }
    }
    return row[nb];
}

/* The toolkit splits on " ", so an empty caption is one empty token. */
static const uint32_t k_empty_tok = UINT32_MAX;

static double rouge_l(const sentence *cand, const sentence *refs, size_t nrefs, uint32_t *row)
{
    const uint32_t *ct = cand->ntok ? cand->tok : &k_empty_tok;
    uint32_t cn = cand->ntok ? cand->ntok : 1;
    double pmax = 0, rmax = 0;
    for (size_t r = 0; r < nrefs; r++) {
        const uint32_t *rt = refs[r].ntok ? refs[r].tok : &k_empty_tok;
        uint32_t rn = refs[r].ntok ? refs[r].ntok : 1;
        double l = (double)lcs(rt, rn, ct, cn, row);
        double p = l / (double)cn, rc = l / (double)rn;
        if (p > pmax) pmax = p;
        if (rc > rmax) rmax = rc;
    }
    if (pmax == 0 || rmax == 0) return 0.0;
    double b2 = ROUGE_BETA * ROUGE_BETA;
    return ((1 + b2) * pmax * rmax) / (rmax + b2 * pmax);
}

/* -------------------------------------------------------------------- BLEU */

typedef struct bleu_acc {
    uint64_t testlen, reflen, guess[MAX_N], correct[MAX_N];
} bleu_acc;

static int cmp_ngcount(const void *a, const void *b)
{
    const ngcount *x = a, *y = b;
    if (x->id != y->id) return x->id < y->id ? -1 : 1;
    return x->count < y->count ? -1 : x->count > y->count;
}

/* merged: scratch for the max counts over references. */
static imcap_status bleu_image(const scorer *sc, const sentence *cand, const sentence *refs, size_t nrefs,
                               bleu_acc *acc, ngcount **merged, size_t *merged_cap)
{
    size_t total = 0;
    for (size_t r = 0; r < nrefs; r++) total += refs[r].nbag;
    if (!grow((void **)merged, merged_cap, total + 1, sizeof **merged))
        return imcap_fail(IMCAP_E_NOMEM, "scoring: out of memory");
    ngcount *m = *merged;
    size_t k = 0;
    for (size_t r = 0; r < nrefs; r++) {
        memcpy(m + k, refs[r].bag, refs[r].nbag * sizeof *m);
        k += refs[r].nbag;
    }
    qsort(m, k, sizeof *m, cmp_ngcount);
    size_t nm = 0; /* keep the max count per id (sorted ascending: last wins) */
    for (size_t i = 0; i < k; i++) {
        if (nm && m[nm - 1].id == m[i].id) m[nm - 1].count = m[i].count;
        else m[nm++] = m[i];
    }
    /* closest reference length, ties to the shorter */
    uint64_t c = cand->ntok, best = 0;
    uint64_t bestdiff = UINT64_MAX;
    for (size_t r = 0; r < nrefs; r++) {
        uint64_t l = refs[r].ntok, d = l > c ? l - c : c - l;
        if (d < bestdiff || (d == bestdiff && l < best)) {
            bestdiff = d;
            best = l;
        }
    }
    acc->testlen += c;
    acc->reflen += best;
    for (int n = 0; n < MAX_N; n++) acc->guess[n] += c > (uint64_t)n ? c - (uint64_t)n : 0;
    size_t j = 0;
    for (uint32_t i = 0; i < cand->nbag; i++) {
        const ngcount *e = &cand->bag[i];
        while (j < nm && m[j].id < e->id) j++;
        if (j < nm && m[j].id == e->id)
            acc->correct[sc->nt.g[e->id].n - 1] += e->count < m[j].count ? e->count : m[j].count;
    }
    return IMCAP_OK;
}

static void bleu_final(const bleu_acc *acc, imcap_scores *out)
{
    double bleu = 1.0;
    for (int k = 0; k < MAX_N; k++) {
        bleu *= ((double)acc->correct[k] + BLEU_TINY) / ((double)acc->guess[k] + BLEU_SMALL);
        out->bleu[k] = pow(bleu, 1.0 / (k + 1));
    }
    double ratio = ((double)acc->testlen + BLEU_TINY) / ((double)acc->reflen + BLEU_SMALL);
    if (ratio < 1)
        for (int k = 0; k < MAX_N; k++) out->bleu[k] *= exp(1 - 1 / ratio);
    out->bleu_testlen = acc->testlen;
    out->bleu_reflen = acc->reflen;
    for (int k = 0; k < MAX_N; k++) {
        out->bleu_guess[k] = acc->guess[k];
        out->bleu_correct[k] = acc->correct[k];
    }
}

/* ----------------------------------------------------------------- CIDEr-D */

typedef struct tfidf {
    double *w;           /* [nbag] weight of bag entry */
    double norm[MAX_N];  /* L2 norm per n */
    double length;       /* bigram occurrences */
} tfidf;

static void tfidf_make(const scorer *sc, const sentence *s, double ref_len, double *w, tfidf *v)
{
    double sq[MAX_N] = {0};
    v->w = w;
    v->length = 0;
    for (uint32_t i = 0; i < s->nbag; i++) {
        const ngram *g = &sc->nt.g[s->bag[i].id];
        double df = log(g->df > 1 ? (double)g->df : 1.0);
        w[i] = (double)s->bag[i].count * (ref_len - df);
        sq[g->n - 1] += w[i] * w[i];
        if (g->n == 2) v->length += s->bag[i].count;
    }
    for (int n = 0; n < MAX_N; n++) v->norm[n] = sqrt(sq[n]);
}

static void cider_sim(const scorer *sc, const sentence *c, const tfidf *vc, const sentence *r, const tfidf *vr,
                      double val[MAX_N])
{
    double acc[MAX_N] = {0};
    uint32_t j = 0;
    for (uint32_t i = 0; i < c->nbag; i++) {
        uint32_t id = c->bag[i].id;
        while (j < r->nbag && r->bag[j].id < id) j++;
        if (j < r->nbag && r->bag[j].id == id) {
            double a = vc->w[i], b = vr->w[j];
            acc[sc->nt.g[id].n - 1] += (a < b ? a : b) * b;
        }
    }
    double delta = vc->length - vr->length;
    double pen = exp(-(delta * delta) / (2 * CIDER_SIGMA * CIDER_SIGMA));
    for (int n = 0; n < MAX_N; n++) {
        if (vc->norm[n] != 0 && vr->norm[n] != 0) acc[n] /= vc->norm[n] * vr->norm[n];
        val[n] = acc[n] * pen;
    }
}

/* ------------------------------------------------------------------ driver */

imcap_status imcap_score(const imcap_score_item *items, size_t n, int tokenize, imcap_scores *out,
                         double *per_image_cider, double *per_image_rouge)
{
    if (!out) return imcap_fail(IMCAP_E_ARG, "imcap_score: out is NULL");
    memset(out, 0, sizeof *out);
    if (!items || n == 0) return imcap_fail(IMCAP_E_ARG, "imcap_score: no images to score");
    if (n > UINT32_MAX / 2) return imcap_fail(IMCAP_E_ARG, "imcap_score: too many images (%zu)", n);
    size_t nsent = 0;
    for (size_t i = 0; i < n; i++) {
        if (!items[i].candidate) return imcap_fail(IMCAP_E_ARG, "imcap_score: image %zu has no candidate", i);
        if (items[i].n_refs == 0 || !items[i].refs)
            return imcap_fail(IMCAP_E_ARG, "imcap_score: image %zu has no references", i);
        for (size_t r = 0; r < items[i].n_refs; r++)
            if (!items[i].refs[r])
                return imcap_fail(IMCAP_E_ARG, "imcap_score: image %zu reference %zu is NULL", i, r);
        if (!imcap_add_size(nsent, 1 + items[i].n_refs, &nsent))
            return imcap_fail(IMCAP_E_NOMEM, "imcap_score: too many captions");
    }
    imcap_status st = IMCAP_OK;
    scorer sc;
    memset(&sc, 0, sizeof sc);
    sentence *sents = calloc(nsent, sizeof *sents); /* per image: candidate, then its refs */
    size_t *first = malloc(n * sizeof *first);
    ngcount *merged = NULL;
    size_t merged_cap = 0;
    double *w = NULL, *wr = NULL;
    size_t w_cap = 0, wr_cap = 0;
    uint32_t *row = NULL;
    size_t row_cap = 0;
    if (!sents || !first) {
        st = imcap_fail(IMCAP_E_NOMEM, "imcap_score: out of memory for %zu captions", nsent);
        goto done;
    }
    size_t k = 0;
    for (size_t i = 0; i < n && st == IMCAP_OK; i++) {
        first[i] = k;
        for (size_t r = 0; r <= items[i].n_refs && st == IMCAP_OK; r++, k++) {
            const char *text = r == 0 ? items[i].candidate : items[i].refs[r - 1];
            char *tok = NULL;
            if (tokenize && (st = imcap_ptb_tokenize(text, &tok)) != IMCAP_OK) break;
            st = sentence_build(&sc, tok ? tok : text, &sents[k]);
            free(tok);
        }
    }
    if (st != IMCAP_OK) goto done;
    /* document frequency over each image's reference set */
    for (size_t i = 0; i < n; i++)
        for (size_t r = 1; r <= items[i].n_refs; r++) {
            const sentence *s = &sents[first[i] + r];
            for (uint32_t b = 0; b < s->nbag; b++) {
                ngram *g = &sc.nt.g[s->bag[b].id];
                if (g->last_img != i + 1) {
                    g->last_img = (uint32_t)(i + 1);
                    g->df++;
                }
            }
        }
    double ref_len = log((double)n);
    bleu_acc acc;
    memset(&acc, 0, sizeof acc);
    double rouge_sum = 0, cider_sum = 0;
    for (size_t i = 0; i < n; i++) {
        const sentence *cand = &sents[first[i]];
        const sentence *refs = cand + 1;
        size_t nr = items[i].n_refs;
        if ((st = bleu_image(&sc, cand, refs, nr, &acc, &merged, &merged_cap)) != IMCAP_OK) goto done;
        uint32_t maxlen = cand->ntok + 1;
        for (size_t r = 0; r < nr; r++) {
            if (refs[r].ntok + 1 > maxlen) maxlen = refs[r].ntok + 1;
            if (!grow((void **)&wr, &wr_cap, (size_t)refs[r].nbag + 1, sizeof *wr)) goto nomem;
        }
        if (!grow((void **)&row, &row_cap, (size_t)maxlen + 1, sizeof *row) ||
            !grow((void **)&w, &w_cap, (size_t)cand->nbag + 1, sizeof *w))
            goto nomem;
        double rl = rouge_l(cand, refs, nr, row);
        tfidf vc, vr;
        tfidf_make(&sc, cand, ref_len, w, &vc);
        double score[MAX_N] = {0};
        for (size_t r = 0; r < nr; r++) {
            double val[MAX_N];
            tfidf_make(&sc, &refs[r], ref_len, wr, &vr);
            cider_sim(&sc, cand, &vc, &refs[r], &vr, val);
            for (int q = 0; q < MAX_N; q++) score[q] += val[q];
        }
        double cd = (score[0] + score[1] + score[2] + score[3]) / MAX_N / (double)nr * 10.0;
        if (per_image_cider) per_image_cider[i] = cd;
        if (per_image_rouge) per_image_rouge[i] = rl;
        rouge_sum += rl;
        cider_sum += cd;
    }
    bleu_final(&acc, out);
    out->rouge_l = rouge_sum / (double)n;
    out->cider_d = cider_sum / (double)n;
    out->n_images = n;
    goto done;
nomem:
    st = imcap_fail(IMCAP_E_NOMEM, "imcap_score: out of memory");
done:
    if (sents)
        for (size_t i = 0; i < nsent; i++) sentence_free(&sents[i]);
    free(sents);
    free(first);
    free(merged);
    free(w);
    free(wr);
    free(row);
    free(sc.scratch);
    free(sc.tt.arena);
    free(sc.tt.off);
    free(sc.tt.len);
    free(sc.tt.slots);
    free(sc.nt.g);
    free(sc.nt.slots);
    if (st != IMCAP_OK) memset(out, 0, sizeof *out);
    return st;
}

/* ------------------------------------------------------- CIDEr-D rewards */

#include "cider.h"

struct cider_refs {
    scorer sc;             /* tokens and n-grams of the references, df over images */
    size_t n_images;
    size_t *first;         /* [n_images + 1] first reference sentence of each image */
    sentence *refs;        /* [first[n_images]] */
    double *w;             /* tf-idf weights of all reference bags, concatenated */
    tfidf *vr;             /* [first[n_images]] views into w */
    double ref_len;        /* log(n_images) */
    uint32_t **word_tok;   /* [n_vocab] PTB token ids of each vocabulary word */
    uint32_t *word_ntok;   /* [n_vocab] */
    size_t n_vocab;
};

void cider_refs_free(cider_refs *c)
{
    if (!c) return;
    if (c->refs)
        for (size_t i = 0; i < c->first[c->n_images]; i++) sentence_free(&c->refs[i]);
    if (c->word_tok)
        for (size_t i = 0; i < c->n_vocab; i++) free(c->word_tok[i]);
    free(c->word_tok);
    free(c->word_ntok);
    free(c->refs);
    free(c->first);
    free(c->w);
    free(c->vr);
    free(c->sc.scratch);
    free(c->sc.tt.arena);
    free(c->sc.tt.off);
    free(c->sc.tt.len);
    free(c->sc.tt.slots);
    free(c->sc.nt.g);
    free(c->sc.nt.slots);
    free(c);
}

size_t cider_refs_n_images(const cider_refs *c) { return c->n_images; }

imcap_status cider_refs_new(const imcap_captions *refs, const imcap_vocab *v, cider_refs **out)
{
    *out = NULL;
    const size_t n = imcap_captions_n_images(refs);
    if (n == 0) return imcap_fail(IMCAP_E_ARG, "CIDEr-D rewards: no reference images");
    if (n > UINT32_MAX / 2) return imcap_fail(IMCAP_E_ARG, "CIDEr-D rewards: too many images (%zu)", n);
    cider_refs *c = calloc(1, sizeof *c);
    if (!c) return imcap_fail(IMCAP_E_NOMEM, "CIDEr-D rewards: out of memory");
    imcap_status st = IMCAP_OK;
    c->n_images = n;
    c->n_vocab = imcap_vocab_size(v);
    c->first = calloc(n + 1, sizeof *c->first);
    size_t ns = imcap_captions_n_total(refs);
    c->refs = calloc(ns ? ns : 1, sizeof *c->refs);
    c->vr = calloc(ns ? ns : 1, sizeof *c->vr);
    c->word_tok = calloc(c->n_vocab, sizeof *c->word_tok);
    c->word_ntok = calloc(c->n_vocab, sizeof *c->word_ntok);
    if (!c->first || !c->refs || !c->vr || !c->word_tok || !c->word_ntok) goto nomem;
    size_t k = 0;
    for (size_t i = 0; i < n && !st; i++) {
        c->first[i] = k;
        const size_t nr = imcap_captions_count(refs, i);
        if (nr == 0) {
            st = imcap_fail(IMCAP_E_ARG, "CIDEr-D rewards: image %s has no reference captions",
                            imcap_captions_image(refs, i));
            break;
        }
        for (size_t r = 0; r < nr && !st && k < ns; r++, k++) {
            char *tok = NULL;
            if (!(st = imcap_ptb_tokenize(imcap_captions_text(refs, i, r), &tok)))
                st = sentence_build(&c->sc, tok, &c->refs[k]);
            free(tok);
        }
    }
    if (st) goto fail;
    c->first[n] = k;
    for (size_t i = 0; i < n; i++)
        for (size_t r = c->first[i]; r < c->first[i + 1]; r++)
            for (uint32_t b = 0; b < c->refs[r].nbag; b++) {
                ngram *g = &c->sc.nt.g[c->refs[r].bag[b].id];
                if (g->last_img != i + 1) {
                    g->last_img = (uint32_t)(i + 1);
                    g->df++;
                }
            }
    c->ref_len = log((double)n);
    size_t nw = 0;
    for (size_t r = 0; r < k; r++) nw += c->refs[r].nbag;
    c->w = malloc((nw ? nw : 1) * sizeof *c->w);
    if (!c->w) goto nomem;
    for (size_t r = 0, o = 0; r < k; r++) {
        tfidf_make(&c->sc, &c->refs[r], c->ref_len, c->w + o, &c->vr[r]);
        o += c->refs[r].nbag;
    }
    /* each vocabulary word's tokens; words no reference has become new tokens */
    for (size_t id = 0; id < c->n_vocab; id++) {
        char *tok = NULL;
        if ((st = imcap_ptb_tokenize(imcap_vocab_word(v, (int32_t)id), &tok))) goto fail;
        size_t cap = 0;
        for (const char *p = tok; *p && !st;) {
            while (*p && is_ws(*p)) p++;
            if (!*p) break;
            const char *q = p;
            while (*q && !is_ws(*q)) q++;
            uint32_t t = tok_intern(&c->sc.tt, p, (size_t)(q - p));
            if (t == UINT32_MAX || !grow((void **)&c->word_tok[id], &cap, (size_t)c->word_ntok[id] + 1, sizeof(uint32_t)))
                st = imcap_fail(IMCAP_E_NOMEM, "CIDEr-D rewards: out of memory");
            else
                c->word_tok[id][c->word_ntok[id]++] = t;
            p = q;
        }
        free(tok);
        if (st) goto fail;
    }
    *out = c;
    return IMCAP_OK;
nomem:
    st = imcap_fail(IMCAP_E_NOMEM, "CIDEr-D rewards: out of memory");
fail:
    cider_refs_free(c);
    return st;
}

/* Id of a reference n-gram, or UINT32_MAX if no reference has it. */
static uint32_t ng_find(const ng_table *t, const uint32_t *ids, uint32_t n)
{
    if (!t->nslots) return UINT32_MAX;
    size_t k = ng_hash(ids, n) & (t->nslots - 1);
    while (t->slots[k]) {
        uint32_t i = t->slots[k] - 1;
        if (t->g[i].n == n && !memcmp(t->g[i].ids, ids, n * sizeof *ids)) return i;
        k = (k + 1) & (t->nslots - 1);
    }
    return UINT32_MAX;
}

enum { CIDER_MAX_TOK = 256 };

imcap_status cider_reward(const cider_refs *c, size_t image, const int32_t *words, int n, double *out)
{
    *out = 0;
    if (image >= c->n_images)
        return imcap_fail(IMCAP_E_ARG, "CIDEr-D reward: image %zu of %zu", image, c->n_images);
    uint32_t tok[CIDER_MAX_TOK];
    uint32_t ntok = 0;
    for (int i = 0; i < n; i++) {
        if (words[i] < 0 || (size_t)words[i] >= c->n_vocab)
            return imcap_fail(IMCAP_E_ARG, "CIDEr-D reward: word id %d outside the vocabulary of %zu", words[i],
                              c->n_vocab);
        const uint32_t m = c->word_ntok[words[i]];
        if (ntok + m > CIDER_MAX_TOK)
            return imcap_fail(IMCAP_E_ARG, "CIDEr-D reward: candidate longer than %d tokens", CIDER_MAX_TOK);
        memcpy(tok + ntok, c->word_tok[words[i]], m * sizeof *tok);
        ntok += m;
    }
    /* The candidate's n-grams: reference n-grams by id (their bag, sorted),
     * the others (df 0, they match nothing) only count towards the norms. */
    struct ng { uint32_t id, n, pos; } g[CIDER_MAX_TOK * MAX_N];
    size_t ng = 0;
    for (uint32_t q = 1; q <= MAX_N; q++)
        for (uint32_t i = 0; i + q <= ntok; i++) g[ng++] = (struct ng){ng_find(&c->sc.nt, tok + i, q), q, i};
    double sq[MAX_N] = {0}, length = 0;
    ngcount bag[CIDER_MAX_TOK * MAX_N];
    double w[CIDER_MAX_TOK * MAX_N];
    uint32_t nb = 0;
    for (size_t a = 0; a < ng; a++) {
        if (g[a].n == 2) length++;
        bool seen = false; /* counted at its first occurrence */
        for (size_t b = 0; b < a && !seen; b++)
            seen = g[b].n == g[a].n && (g[a].id != UINT32_MAX ? g[b].id == g[a].id
                                        : g[b].id == UINT32_MAX &&
                                          !memcmp(tok + g[b].pos, tok + g[a].pos, g[a].n * sizeof *tok));
        if (seen) continue;
        uint32_t cnt = 0;
        for (size_t b = a; b < ng; b++)
            cnt += g[b].n == g[a].n && (g[a].id != UINT32_MAX ? g[b].id == g[a].id
                                        : g[b].id == UINT32_MAX &&
                                          !memcmp(tok + g[b].pos, tok + g[a].pos, g[a].n * sizeof *tok));
        if (g[a].id == UINT32_MAX) {
            const double x = (double)cnt * c->ref_len;
            sq[g[a].n - 1] += x * x;
        } else {
            bag[nb].id = g[a].id;
            bag[nb].count = cnt;
            nb++;
        }
    }
    qsort(bag, nb, sizeof *bag, cmp_ngcount);
    for (uint32_t i = 0; i < nb; i++) {
        const ngram *e = &c->sc.nt.g[bag[i].id];
        const double df = log(e->df > 1 ? (double)e->df : 1.0);
        w[i] = (double)bag[i].count * (c->ref_len - df);
        sq[e->n - 1] += w[i] * w[i];
    }
    sentence cand = {.tok = tok, .ntok = ntok, .bag = bag, .nbag = nb};
    tfidf vc = {.w = w, .length = length};
    for (int q = 0; q < MAX_N; q++) vc.norm[q] = sqrt(sq[q]);
    double score[MAX_N] = {0};
    const size_t r0 = c->first[image], r1 = c->first[image + 1];
    for (size_t r = r0; r < r1; r++) {
        double val[MAX_N];
        cider_sim(&c->sc, &cand, &vc, &c->refs[r], &c->vr[r], val);
        for (int q = 0; q < MAX_N; q++) score[q] += val[q];
    }
    *out = (score[0] + score[1] + score[2] + score[3]) / MAX_N / (double)(r1 - r0) * 10.0;
    return IMCAP_OK;
}
