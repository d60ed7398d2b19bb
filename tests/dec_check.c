/* dec_check.c - finite differences and PyTorch golden checks of the decoder (dec_check.h). */
#include "dec_check.h"
#include "generate.h"
#include "optimizer.h"
#include "test.h"

double fd_check(float *x, const float *an, size_t n, const char *name, fd_objective f, void *ctx)
{
    const double h = 4e-3, atol = 1.5e-3, rtol = 2e-2;
    double gmax = 0;
    for (size_t k = 0; k < n; k++) {
        const float saved = x[k];
        x[k] = saved + (float)h;
        const double lp = f(ctx);
        x[k] = saved - (float)h;
        const double lm = f(ctx);
        x[k] = saved;
        const double fd = (lp - lm) / (2 * h);
        gmax = fmax(gmax, fabs(an[k]));
        if (!(fabs(fd - an[k]) <= atol + rtol * fabs(an[k])))
            test_fail_at(__FILE__, __LINE__, "%s[%zu]: finite difference %.6g, backward %.6g", name, k, fd,
                         (double)an[k]);
    }
    return gmax;
}

void fd_check_tensors(dec_model *m, const float *grads, fd_objective f, void *ctx)
{
    for (int ti = 0; ti < dec_n_tensors(&m->cfg); ti++) {
        const dec_tensor_info info = dec_tensor_at(&m->cfg, ti);
        const double gmax = fd_check(m->params + info.offset, grads + info.offset, info.size, info.name, f, ctx);
        if (!(gmax > 1e-3)) test_fail_at(__FILE__, __LINE__, "%s: gradient is ~0 (max %g)", info.name, gmax);
    }
}

double dec_batch_loss(void *ctx)
{
    const dec_batch *bt = ctx;
    float loss;
    REQUIRE_OK(dec_forward_backward(bt->m, bt->w, bt->img, bt->tokens, bt->row_w, bt->b, bt->t1, bt->train, NULL,
                                    &loss, NULL));
    return loss;
}

double dec_check_xent(const float *z, int n, int target)
{
    double mx = z[0], s = 0;
    for (int j = 1; j < n; j++) mx = z[j] > mx ? z[j] : mx;
    for (int j = 0; j < n; j++) s += exp(z[j] - mx);
    return log(s) + mx - z[target];
}

const void *golden_take(golden *r, size_t n)
{
    REQUIRE((size_t)(r->end - r->p) >= n);
    const void *q = r->p;
    r->p += n;
    return q;
}

int32_t golden_i32(golden *r)
{
    int32_t v;
    memcpy(&v, golden_take(r, 4), 4);
    return v;
}

float golden_f32(golden *r)
{
    float v;
    memcpy(&v, golden_take(r, 4), 4);
    return v;
}

void golden_weights(golden *r, dec_model *m)
{
    for (int i = 0; i < dec_n_tensors(&m->cfg); i++) {
        const dec_tensor_info ti = dec_tensor_at(&m->cfg, i);
        memcpy(m->params + ti.offset, golden_take(r, sizeof(float) * ti.size), sizeof(float) * ti.size);
    }
}

void golden_check_backward(golden *r, const dec_batch *bt, float *dimg)
{
    dec_model *m = bt->m;
    const dec_config *c = &m->cfg;
    const int NT = dec_n_tensors(c);
    float loss, ref_loss = golden_f32(r);
    REQUIRE_OK(dec_forward_backward(m, bt->w, bt->img, bt->tokens, bt->row_w, bt->b, bt->t1, true, dimg, &loss,
                                    NULL));
    CHECK_NEAR(loss, ref_loss, 1e-5 * fabs(ref_loss));
    for (int i = 0; i <= NT; i++) {
        const char *name = i < NT ? dec_tensor_at(c, i).name : "d_img";
        const size_t n = i < NT ? dec_tensor_at(c, i).size : (size_t)bt->b * dec_input_floats(c);
        const float *ref = golden_take(r, sizeof(float) * n);
        const float *got = i < NT ? m->grads + dec_tensor_at(c, i).offset : dimg;
        double gmax = 0;
        for (size_t k = 0; k < n; k++) gmax = fmax(gmax, fabs(ref[k]));
        REQUIRE(gmax > 1e-4);
        for (size_t k = 0; k < n; k++)
            if (!(fabs(got[k] - ref[k]) <= 2e-6 + 1e-4 * (fabs(ref[k]) + gmax)))
                test_fail_at(__FILE__, __LINE__, "gradient %s[%zu]: %.9g, torch %.9g", name, k, got[k], ref[k]);
    }
}

int golden_check_adam(golden *r, const dec_batch *bt, float lr, float clip, int n_steps)
{
    dec_model *m = bt->m;
    adam a;
    adam_params ap = adam_default_params();
    ap.lr = lr;
    ap.clip = clip;
    REQUIRE_OK(adam_init(&a, &ap, m->n_params));
    int clipped = 0;
    for (int s = 0; s < n_steps; s++) {
        float loss, ref = golden_f32(r);
        REQUIRE_OK(dec_forward_backward(m, bt->w, bt->img, bt->tokens, bt->row_w, bt->b, bt->t1, true, NULL, &loss,
                                        NULL));
        CHECK_NEAR(loss, ref, 1e-5 * fabs(ref));
        clipped += adam_step(&a, m->params, m->grads) > clip;
    }
    for (int i = 0; i < dec_n_tensors(&m->cfg); i++) {
        const dec_tensor_info ti = dec_tensor_at(&m->cfg, i);
        const float *ref = golden_take(r, sizeof(float) * ti.size);
        for (size_t k = 0; k < ti.size; k++)
            if (!(fabs(m->params[ti.offset + k] - ref[k]) <= 1e-5))
                test_fail_at(__FILE__, __LINE__, "%s[%zu] after Adam: %.9g, torch %.9g", ti.name, k,
                             m->params[ti.offset + k], ref[k]);
    }
    adam_free(&a);
    return clipped;
}

void dec_overfit_check(dec_config c, float att_reg, float target)
{
    const char *csv = test_path("data/flickr8k/captions.csv");
    FILE *fp = fopen(csv, "rb");
    if (!fp) SKIP("data/flickr8k/captions.csv is not present (scripts/get-data.sh)");
    fclose(fp);
    enum { NI = 8, T1 = 20 };
    imcap_captions *all, *some;
    REQUIRE_OK(imcap_captions_load_csv(csv, &all));
    REQUIRE(imcap_captions_n_images(all) >= 100);
    /* 8 images spread over the file, one caption each (the k-th) */
    const char *names[NI];
    for (int i = 0; i < NI; i++) names[i] = imcap_captions_image(all, (size_t)i * 97);
    REQUIRE_OK(imcap_captions_subset(all, names, NI, "overfit set", &some));
    imcap_vocab *voc;
    REQUIRE_OK(imcap_vocab_build(some, 1, &voc));
    int32_t tokens[NI * T1];
    const int32_t pad = imcap_vocab_pad(voc);
    for (int i = 0; i < NI * T1; i++) tokens[i] = pad;
    int32_t *ids[NI];
    size_t lens[NI];
    for (int i = 0; i < NI; i++) {
        REQUIRE_OK(imcap_vocab_encode(voc, imcap_captions_text(some, i, i % imcap_captions_count(some, i)), &ids[i],
                                      &lens[i]));
        REQUIRE(lens[i] >= 4 && lens[i] <= T1);
        memcpy(tokens + i * T1, ids[i], sizeof(int32_t) * lens[i]);
    }
    c.n_vocab = (int)imcap_vocab_size(voc);
    c.pad_id = pad;
    dec_model *m;
    dec_work *w;
    REQUIRE_OK(dec_model_new(&c, true, &m));
    REQUIRE_OK(dec_work_new(&c, NI, T1, &w));
    if (c.arch == DEC_ARCH_ATTENTION) dec_work_set_attention_reg(w, att_reg);
    imcap_rng rng;
    imcap_rng_seed(&rng, 3);
    dec_model_init(m, &rng);
    const size_t n_in = NI * dec_input_floats(&c);
    float *img = malloc(sizeof(float) * n_in);
    REQUIRE(img);
    for (size_t i = 0; i < n_in; i++) img[i] = (float)imcap_rng_normal(&rng);
    adam a;
    adam_params ap = adam_default_params();
    ap.lr = 1e-2f;
    ap.clip = 5.0f;
    REQUIRE_OK(adam_init(&a, &ap, m->n_params));
    float loss = 0, first = 0;
    int step;
    for (step = 0; step < 1500; step++) {
        REQUIRE_OK(dec_forward_backward(m, w, img, tokens, NULL, NI, T1, true, NULL, &loss, NULL));
        if (step == 0) first = loss;
        if (loss < target) break;
        adam_step(&a, m->params, m->grads);
    }
    CHECK(first > 2.0f);
    CHECK(loss < target);
    int32_t out[NI * T1];
    int olen[NI];
    REQUIRE_OK(gen_greedy(m, img, NI, imcap_vocab_start(voc), imcap_vocab_end(voc), T1, out, olen));
    for (int i = 0; i < NI; i++) {
        /* the caption without START and END */
        int ok = olen[i] == (int)lens[i] - 2 && memcmp(out + i * T1, ids[i] + 1, sizeof(int32_t) * olen[i]) == 0;
        if (!ok) {
            char *got = NULL;
            imcap_vocab_decode(voc, out + i * T1, olen[i], &got);
            test_fail_at(__FILE__, __LINE__, "image %d: greedy \"%s\" != \"%s\" (loss %g after %d steps)", i,
                         got ? got : "?", imcap_captions_text(some, i, i % imcap_captions_count(some, i)), loss,
                         step);
            free(got);
        }
        free(ids[i]);
    }
    free(img);
    adam_free(&a);
    dec_work_free(w);
    dec_model_free(m);
    imcap_vocab_free(voc);
    imcap_captions_free(some);
    imcap_captions_free(all);
}
