/*
 * bench_decoder.c - decoder training throughput: forward + backward + Adam
 * on the default-size model (D 2048 -> 120 -> 300, embedding 100, LSTM 300,
 * 120 -> |V|) for a fixed number of batches of synthetic data.
 *
 * Batches: the same generator as scripts/bench_decoder_torch.py (64-bit LCG),
 * caption lengths uniform in 8..t1 tokens (START .. END, mean 14 for t1 20),
 * padded to t1 with PAD. Throughput counts target tokens (non-PAD) per second.
 *
 * usage: bench_decoder [--vocab V] [--batches N] [--batch B] [--t1 T1] [--img D]
 * prints one line: "c vocab V batch B t1 T1 batches N tokens/s X tokens/cpu_s Y peak_rss_mb M"
 * (tokens/cpu_s: tokens per second of process CPU time (user + system, all
 * threads) over the timed batches: less sensitive to other load than the
 * wall-clock rate on a shared machine).
 */
#include "bench_train.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

/* tokens [b][t1] (bench_token_rows) and img [b][d] from the LCG. */
static void make_batch(uint64_t *s, int b, int t1, int d, int V, int32_t *tok, float *img)
{
    bench_token_rows(s, b, t1, V, tok);
    for (size_t i = 0; i < (size_t)b * d; i++) img[i] = (float)(lcg(s) % 2000) / 1000.0f - 1.0f;
}

int main(int argc, char **argv)
{
    int V = 2500, n_batches = 20, B = 64, T1 = 20, D = 2048;
    const bench_opt opts[] = {{"--vocab", &V}, {"--batches", &n_batches}, {"--batch", &B}, {"--t1", &T1},
                              {"--img", &D}};
    if (bench_int_options(argc, argv, opts, sizeof opts / sizeof *opts, "bench_decoder")) return 2;
    if (V < 8 || n_batches < 1 || B < 1 || T1 < 9 || D < 1) {
        fprintf(stderr, "bench_decoder: bad sizes\n");
        return 2;
    }
    dec_config c = dec_default_config(D, V);
    c.pad_id = 1;
    dec_model *m;
    dec_work *w;
    adam opt;
    if (bench_train_setup(&c, B, T1, "bench_decoder", &m, &w, &opt)) return 1;
    int32_t *tok = malloc(sizeof(int32_t) * B * T1);
    float *img = malloc(sizeof(float) * (size_t)B * D);
    if (!tok || !img) return 1;
    uint64_t s = 42;
    double t_fb = 0, t_adam = 0, cpu0 = 0;
    int64_t n_tok = 0;
    float loss = 0;
    for (int it = -2; it < n_batches; it++) { /* two warm-up batches */
        make_batch(&s, B, T1, D, V, tok, img);
        if (it == 0) cpu0 = cpu_seconds();
        double a = imcap_now();
        int64_t nt;
        if (dec_forward_backward(m, w, img, tok, NULL, B, T1, true, NULL, &loss, &nt)) {
            fprintf(stderr, "bench_decoder: %s\n", imcap_last_error());
            return 1;
        }
        double b = imcap_now();
        adam_step(&opt, m->params, m->grads);
        if (it >= 0) {
            t_fb += b - a;
            t_adam += imcap_now() - b;
            n_tok += nt;
        }
    }
    double dt = t_fb + t_adam, cpu = cpu_seconds() - cpu0;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    fprintf(stderr, "c: fwd+bwd %.1f ms/batch, adam %.1f ms/batch, cpu %.1f ms/batch, last loss %.4f\n",
            1e3 * t_fb / n_batches, 1e3 * t_adam / n_batches, 1e3 * cpu / n_batches, loss);
    printf("c vocab %d batch %d t1 %d batches %d tokens/s %.0f tokens/cpu_s %.0f peak_rss_mb %.0f\n", V, B, T1,
           n_batches, n_tok / dt, n_tok / cpu, ru.ru_maxrss / 1024.0);
    free(tok);
    free(img);
    bench_train_free(m, w, &opt);
    return 0;
}
