/*
 * bench_attention.c - attention decoder throughput: training (forward +
 * backward + Adam) on synthetic batches, and caption generation per photo
 * (greedy and beam 3).
 *
 * Batches: token rows from the 64-bit LCG of bench_decoder.c / the PyTorch
 * peer (scripts/bench_attention_torch.py): lengths uniform in 8..t1 tokens,
 * PAD 1, START 2, END 0; grid value i of batch k is
 * ((i * 7919 + k * 104729) mod 2003) / 1001.5 - 1 on both sides.
 * Throughput counts target tokens (non-PAD).
 *
 * usage: bench_attention [--vocab V] [--batches N] [--batch B] [--t1 T1] [--grid G] [--img D]
 *                        [--hidden H] [--embed E] [--out O] [--att A] [--gen N]
 * prints "c ... tokens/s X tokens/cpu_s Y peak_rss_mb M" and, with --gen N,
 * "c gen greedy_ms X beam3_ms Y" (mean over N photos, max 20 words).
 */
#include "bench_train.h"
#include "generate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

static void make_batch(uint64_t *s, int k, int b, int t1, size_t nin, int V, int32_t *tok, float *img)
{
    bench_token_rows(s, b, t1, V, tok);
    for (size_t i = 0; i < (size_t)b * nin; i++)
        img[i] = (float)((i * 7919 + (size_t)k * 104729) % 2003) / 1001.5f - 1.0f;
}

int main(int argc, char **argv)
{
    int V = 2500, n_batches = 5, B = 64, T1 = 20, G = 7, D = 1280, H = 256, E = 128, O = 256, A = 128, n_gen = 0;
    const bench_opt opts[] = {{"--vocab", &V}, {"--batches", &n_batches}, {"--batch", &B}, {"--t1", &T1},
                              {"--grid", &G},  {"--img", &D},            {"--hidden", &H}, {"--embed", &E},
                              {"--out", &O},   {"--att", &A},            {"--gen", &n_gen}};
    if (bench_int_options(argc, argv, opts, sizeof opts / sizeof *opts, "bench_attention")) return 2;
    if (V < 8 || n_batches < 1 || B < 1 || T1 < 9 || G < 1 || n_gen < 0) {
        fprintf(stderr, "bench_attention: bad sizes\n");
        return 2;
    }
    dec_config c = {.n_img = D, .n_hid = H, .n_emb = E, .n_out1 = O, .n_vocab = V, .pad_id = 1,
                    .arch = DEC_ARCH_ATTENTION, .grid_h = G, .grid_w = G, .n_att = A};
    const size_t nin = dec_input_floats(&c);
    dec_model *m;
    dec_work *w;
    adam opt;
    if (bench_train_setup(&c, B, T1, "bench_attention", &m, &w, &opt)) return 1;
    dec_work_set_attention_reg(w, 1.0f);
    int32_t *tok = malloc(sizeof(int32_t) * B * T1);
    float *img = malloc(sizeof(float) * B * nin);
    if (!tok || !img) return 1;
    uint64_t s = 42;
    double t0 = 0, cpu0 = 0;
    int64_t n_tok = 0;
    float loss = 0;
    for (int it = -1; it < n_batches; it++) { /* one warm-up batch */
        make_batch(&s, it + 1, B, T1, nin, V, tok, img);
        if (it == 0) {
            cpu0 = cpu_seconds();
            t0 = imcap_now();
        }
        int64_t nt;
        if (dec_forward_backward(m, w, img, tok, NULL, B, T1, true, NULL, &loss, &nt)) {
            fprintf(stderr, "bench_attention: %s\n", imcap_last_error());
            return 1;
        }
        adam_step(&opt, m->params, m->grads);
        if (it >= 0) n_tok += nt;
    }
    double dt = imcap_now() - t0, cpu = cpu_seconds() - cpu0;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    fprintf(stderr, "c: %.0f ms/batch, cpu %.0f ms/batch, last loss %.4f\n", 1e3 * dt / n_batches,
            1e3 * cpu / n_batches, loss);
    printf("c vocab %d batch %d t1 %d grid %dx%dx%d hidden %d batches %d tokens/s %.0f tokens/cpu_s %.0f "
           "peak_rss_mb %.0f\n",
           V, B, T1, G, G, D, H, n_batches, n_tok / dt, n_tok / cpu, ru.ru_maxrss / 1024.0);
    if (n_gen > 0) {
        gen_special sp = {.start_id = 2, .end_id = 0, .n_masked = 2, .masked = {1, 3}};
        double ms[2] = {0, 0};
        for (int k = 0; k < 2; k++) {
            imcap_gen_params gp = imcap_gen_default_params();
            gp.beam = k ? 3 : 1;
            for (int i = 0; i < n_gen; i++) {
                gen_hyp h;
                int nh;
                double a = imcap_now();
                if (gen_caption(m, img + (size_t)(i % B) * nin, &sp, &gp, &h, &nh)) {
                    fprintf(stderr, "bench_attention: %s\n", imcap_last_error());
                    return 1;
                }
                ms[k] += 1e3 * (imcap_now() - a);
            }
        }
        printf("c gen photos %d greedy_ms %.2f beam3_ms %.2f\n", n_gen, ms[0] / n_gen, ms[1] / n_gen);
    }
    free(tok);
    free(img);
    bench_train_free(m, w, &opt);
    return 0;
}
