/*
 * bench_scst.c - where an SCST step's time goes: rollouts (greedy + K
 * samples per image through the step API), CIDEr-D rewards, and the
 * advantage-weighted forward + backward + Adam, on a real decoder and real
 * embeddings (the first B * steps images of a split, in order).
 *
 * usage: bench_scst MODEL EMB.emb CAPTIONS SPLIT [--batch B] [--samples K] [--steps N] [--max-len L]
 * prints one line per phase: "phase P wall_s W cpu_s C share_cpu S" and the
 * totals (cpu_s: process CPU time, all threads: less sensitive to other
 * load than wall time on a shared machine).
 */
#include "captioner.h"
#include "cider.h"
#include "decoder.h"
#include "generate.h"
#include "optimizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

static double cpu_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec * 1e-6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec * 1e-6;
}

static int fail(const char *what)
{
    fprintf(stderr, "bench_scst: %s: %s\n", what, imcap_last_error());
    return 1;
}

int main(int argc, char **argv)
{
    if (argc < 5) {
        fprintf(stderr, "usage: bench_scst MODEL EMB CAPTIONS SPLIT [--batch B] [--samples K] [--steps N] [--max-len L]\n");
        return 2;
    }
    int B = 16, K = 5, steps = 10, L = 20;
    for (int i = 5; i + 1 < argc; i += 2) {
        int v = atoi(argv[i + 1]);
        if (!strcmp(argv[i], "--batch")) B = v;
        else if (!strcmp(argv[i], "--samples")) K = v;
        else if (!strcmp(argv[i], "--steps")) steps = v;
        else if (!strcmp(argv[i], "--max-len")) L = v;
    }
    dec_model *m0, *m;
    imcap_vocab *v;
    imcap_embfile *e;
    imcap_captions *all, *split;
    cider_refs *cr;
    if (captioner_read_decoder(argv[1], &m0, &v)) return fail(argv[1]);
    if (imcap_embfile_open(argv[2], &e) || imcap_captions_load(argv[3], &all) ||
        imcap_captions_restrict(all, argv[4], &split))
        return fail("data");
    const size_t n = imcap_captions_n_images(split), D = imcap_embfile_dim(e);
    if (n < (size_t)B * steps) return fail("split smaller than batch x steps");
    int32_t *rows = malloc(sizeof(int32_t) * n);
    if (imcap_embfile_match(e, split, rows) || cider_refs_new(split, v, &cr)) return fail("match");
    if (dec_model_new(&m0->cfg, true, &m)) return fail("model");
    memcpy(m->params, m0->params, sizeof(float) * m->n_params);
    dec_work *w;
    adam opt;
    adam_params ap = adam_default_params();
    ap.lr = 5e-5f;
    if (dec_work_new(&m->cfg, B * K, L + 2, &w) || adam_init(&opt, &ap, m->n_params)) return fail("work");
    gen_special sp = {.start_id = imcap_vocab_start(v), .end_id = imcap_vocab_end(v), .n_masked = 3,
                      .masked = {imcap_vocab_pad(v), imcap_vocab_start(v), imcap_vocab_unk(v)}};
    const int R = B * (K + 1), S = B * K, t1 = L + 2;
    float *img = malloc(sizeof(float) * B * D), *simg = malloc(sizeof(float) * S * D), *adv = malloc(sizeof(float) * S);
    int32_t *words = malloc(sizeof(int32_t) * R * L), *tok = malloc(sizeof(int32_t) * S * t1);
    int *lens = malloc(sizeof(int) * R);
    bool *ended = malloc(sizeof(bool) * R);
    double *rew = malloc(sizeof(double) * R);
    double wall[3] = {0}, cpu[3] = {0};
    long tokens = 0;
    for (int s = 0; s < steps; s++) {
        for (int i = 0; i < B; i++) memcpy(img + i * D, imcap_embfile_row(e, rows[s * B + i]), sizeof(float) * D);
        double w0 = imcap_now(), c0 = cpu_seconds();
        if (gen_rollouts(m, img, B, K, &sp, L, (uint64_t)s, words, lens, ended)) return fail("rollouts");
        double w1 = imcap_now(), c1 = cpu_seconds();
        for (int r = 0; r < R; r++)
            if (cider_reward(cr, (size_t)(s * B + r / (K + 1)), words + r * L, lens[r], &rew[r])) return fail("reward");
        double w2 = imcap_now(), c2 = cpu_seconds();
        for (int i = 0; i < B; i++) {
            double mean = 0;
            for (int k = 1; k <= K; k++) mean += rew[i * (K + 1) + k] / K;
            for (int k = 1; k <= K; k++) {
                const int src = i * (K + 1) + k, row = i * K + k - 1;
                adv[row] = (float)(rew[src] - mean);
                int32_t *t = tok + row * t1;
                int q = 0;
                t[q++] = sp.start_id;
                for (int j = 0; j < lens[src]; j++) t[q++] = words[src * L + j];
                if (ended[src]) t[q++] = sp.end_id;
                tokens += q - 1;
                for (; q < t1; q++) t[q] = m->cfg.pad_id;
                memcpy(simg + row * D, img + i * D, sizeof(float) * D);
            }
        }
        float loss;
        if (dec_forward_backward(m, w, simg, tok, adv, S, t1, true, NULL, &loss, NULL)) return fail("backward");
        adam_step(&opt, m->params, m->grads);
        double w3 = imcap_now(), c3 = cpu_seconds();
        wall[0] += w1 - w0, wall[1] += w2 - w1, wall[2] += w3 - w2;
        cpu[0] += c1 - c0, cpu[1] += c2 - c1, cpu[2] += c3 - c2;
    }
    const char *name[3] = {"rollouts", "rewards", "backward"};
    const double ct = cpu[0] + cpu[1] + cpu[2];
    for (int p = 0; p < 3; p++)
        printf("phase %s wall_s %.3f cpu_s %.3f share_cpu %.3f\n", name[p], wall[p], cpu[p], cpu[p] / ct);
    printf("c scst batch %d samples %d steps %d vocab %d hidden %d tokens %ld wall_s %.3f cpu_s %.3f "
           "samples/cpu_s %.1f\n", B, K, steps, m->cfg.n_vocab, m->cfg.n_hid, tokens, wall[0] + wall[1] + wall[2], ct,
           (double)S * steps / ct);
    return 0;
}
