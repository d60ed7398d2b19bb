/*
 * bench_caption.c - end-to-end captioning cost: JPEG decode + preprocessing
 * + encoder + generation, per photo and in bulk.
 *
 *   bench_caption [--model M.imcap | --encoder E.gguf [--output embedding]]
 *                 [--images DIR] [--list NAMES] [-n 1000] [--latency-n 50]
 *                 [--threads 2] [--save-model PATH] [--dump CAPTIONS.tsv]
 *
 * Without --model it builds an untrained captioner of the default size
 * (decoder 120/300/100/120, vocabulary of the Flickr8k train split with
 * min count 5, random weights) on the given encoder: the same arithmetic as
 * a trained model per word, and it rarely emits END, so every caption runs
 * to max_len words (worst case for generation).
 *
 * Output:
 *   latency, one image at a time (greedy and beam 3): mean / median / p90 of
 *   decode, encode, generate and total ms;
 *   throughput over n photos with 1 and with --threads concurrent callers;
 *   peak resident memory (getrusage).
 * --dump writes "path<TAB>greedy caption<TAB>beam-3 caption" for the latency
 * photos, so the peer (scripts/caption_peer.py) can check it does the same work.
 */
#define _POSIX_C_SOURCE 200809L
#include "captioner.h"
#include "generate.h"

#include <dirent.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int cmp_s(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static void die(const char *what)
{
    fprintf(stderr, "bench_caption: %s: %s\n", what, imcap_last_error());
    exit(1);
}

/* Image paths: the names of --list under dir, else the directory's *.jpg sorted. */
static char **list_images(const char *dir, const char *list, int n, int *got)
{
    char **names = NULL;
    size_t count = 0;
    if (list) {
        if (imcap_split_load(list, &names, &count)) die(list);
    } else {
        DIR *d = opendir(dir);
        if (!d) {
            fprintf(stderr, "bench_caption: cannot open %s\n", dir);
            exit(1);
        }
        size_t cap = 0;
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            size_t l = strlen(e->d_name);
            if (l < 5 || strcmp(e->d_name + l - 4, ".jpg")) continue;
            if (count == cap) names = realloc(names, (cap = cap ? 2 * cap : 1024) * sizeof *names);
            names[count++] = strdup(e->d_name);
        }
        closedir(d);
        qsort(names, count, sizeof *names, cmp_s);
    }
    int m = (int)count < n ? (int)count : n;
    char **paths = malloc(sizeof *paths * (size_t)(m > 0 ? m : 1));
    for (int i = 0; i < m; i++) {
        paths[i] = malloc(strlen(dir) + strlen(names[i]) + 2);
        sprintf(paths[i], "%s/%s", dir, names[i]);
    }
    if (!list)
        for (size_t i = 0; i < count; i++) free(names[i]);
    free(names);
    *got = m;
    return paths;
}

/* The machine is shared: the load average says how much the figures are inflated. */
static void print_load(const char *when)
{
    char buf[128] = "?";
    FILE *fp = fopen("/proc/loadavg", "r");
    if (fp) {
        if (!fgets(buf, sizeof buf, fp)) buf[0] = 0;
        fclose(fp);
    }
    buf[strcspn(buf, "\n")] = 0;
    printf("load average %s: %s\n", when, buf);
}

static void dump_captions(const imcap_captioner *c, char **paths, int n, const char *out)
{
    FILE *fp = fopen(out, "w");
    if (!fp) {
        fprintf(stderr, "bench_caption: cannot write %s\n", out);
        exit(1);
    }
    imcap_gen_params p = imcap_captioner_gen_params(c);
    for (int i = 0; i < n; i++) {
        imcap_caption *g, *b;
        p.beam = 1;
        if (imcap_caption_file(c, paths[i], &p, &g)) die(paths[i]);
        p.beam = 3;
        if (imcap_caption_file(c, paths[i], &p, &b)) die(paths[i]);
        fprintf(fp, "%s\t%s\t%s\n", paths[i], g->alt[0].text, b->alt[0].text);
        imcap_caption_free(g);
        imcap_caption_free(b);
    }
    fclose(fp);
}

static void make_untrained(const char *encoder, const char *output, const char *path)
{
    enc_graph *g;
    if (enc_graph_load(encoder, &g)) die(encoder);
    int oid = enc_graph_output(g, output);
    if (oid < 0) {
        fprintf(stderr, "bench_caption: %s has no output %s\n", encoder, output);
        exit(1);
    }
    const enc_value *v = enc_graph_value(g, oid);
    imcap_captions *all, *train;
    imcap_vocab *voc;
    if (imcap_captions_load("data/flickr8k/captions.csv", &all) ||
        imcap_captions_restrict(all, "data/flickr8k/train.txt", &train) ||
        imcap_vocab_build(train, IMCAP_VOCAB_MIN_COUNT, &voc))
        die("Flickr8k vocabulary");
    dec_config cf = dec_default_config(v->h * v->w * v->c, (int)imcap_vocab_size(voc));
    cf.pad_id = imcap_vocab_pad(voc);
    dec_model *m;
    if (dec_model_new(&cf, false, &m)) die("decoder");
    imcap_rng rng;
    imcap_rng_seed(&rng, 1);
    dec_model_init(m, &rng);
    captioner_spec s = {.dec = m, .vocab = voc, .n_encoders = 1, .encoders = {g}, .encoder_files = {encoder},
                        .encoder_outputs = {output},
                        .gen = imcap_gen_default_params(), .source = "bench_caption: untrained, default size"};
    if (captioner_write(&s, path)) die(path);
    fprintf(stderr, "untrained captioner: D=%d, |V|=%d, %zu decoder parameters -> %s\n", cf.n_img, cf.n_vocab,
            m->n_params, path);
    dec_model_free(m);
    imcap_vocab_free(voc);
    imcap_captions_free(train);
    imcap_captions_free(all);
    enc_graph_free(g);
}

typedef struct stage_times {
    double *dec, *enc, *gen, *tot;
    long words;
} stage_times;

static void report(const char *label, stage_times *t, int n)
{
    double *arr[4] = {t->dec, t->enc, t->gen, t->tot};
    const char *nm[4] = {"decode", "encode", "generate", "total"};
    printf("%-16s", label);
    for (int k = 0; k < 4; k++) {
        double s = 0;
        for (int i = 0; i < n; i++) s += arr[k][i];
        qsort(arr[k], (size_t)n, sizeof(double), cmp_d);
        printf("  %s %6.2f/%6.2f/%6.2f", nm[k], 1e3 * s / n, 1e3 * arr[k][n / 2], 1e3 * arr[k][(n * 9) / 10]);
    }
    printf("  (ms mean/median/p90, %.1f words/caption)\n", (double)t->words / n);
}

static void latency(const imcap_captioner *c, char **paths, int n, int beam, int quiet)
{
    stage_times t = {calloc((size_t)n, 8), calloc((size_t)n, 8), calloc((size_t)n, 8), calloc((size_t)n, 8), 0};
    imcap_gen_params p = imcap_captioner_gen_params(c);
    p.beam = beam;
    for (int i = 0; i < n; i++) {
        imcap_caption *cap;
        if (imcap_caption_file(c, paths[i], &p, &cap)) die(paths[i]);
        t.dec[i] = cap->t_decode;
        t.enc[i] = cap->t_encode;
        t.gen[i] = cap->t_generate;
        t.tot[i] = cap->t_decode + cap->t_encode + cap->t_generate;
        t.words += cap->alt[0].n_words;
        imcap_caption_free(cap);
    }
    char label[32];
    snprintf(label, sizeof label, beam == 1 ? "greedy" : "beam %d", beam);
    if (!quiet) report(label, &t, n);
    free(t.dec);
    free(t.enc);
    free(t.gen);
    free(t.tot);
}

typedef struct bulk {
    const imcap_captioner *c;
    char **paths;
    int n, next, beam;
    pthread_mutex_t mu;
} bulk;

static void *bulk_worker(void *arg)
{
    bulk *b = arg;
    imcap_gen_params p = imcap_captioner_gen_params(b->c);
    p.beam = b->beam;
    for (;;) {
        pthread_mutex_lock(&b->mu);
        int i = b->next++;
        pthread_mutex_unlock(&b->mu);
        if (i >= b->n) return NULL;
        imcap_caption *cap;
        if (imcap_caption_file(b->c, b->paths[i], &p, &cap)) die(b->paths[i]);
        imcap_caption_free(cap);
    }
}

static void throughput(const imcap_captioner *c, char **paths, int n, int threads, int beam)
{
    bulk b = {.c = c, .paths = paths, .n = n, .beam = beam};
    pthread_mutex_init(&b.mu, NULL);
    pthread_t th[64];
    double t0 = imcap_now();
    for (int i = 0; i < threads; i++) pthread_create(&th[i], NULL, bulk_worker, &b);
    for (int i = 0; i < threads; i++) pthread_join(th[i], NULL);
    double dt = imcap_now() - t0;
    printf("throughput %s, %d caller thread%s: %d photos in %.2f s = %.2f photos/s (%.2f ms/photo)\n",
           beam == 1 ? "greedy" : "beam 3", threads, threads > 1 ? "s" : "", n, dt, n / dt, 1e3 * dt / n);
    pthread_mutex_destroy(&b.mu);
}

int main(int argc, char **argv)
{
    const char *model = NULL, *encoder = "models/encoders/mobilenet_v2_1.0_224_quant.gguf", *output = "embedding";
    const char *dir = "data/flickr8k/images", *list = NULL, *save = NULL, *dump = NULL;
    int n = 1000, lat_n = 50, threads = 2;
    for (int i = 1; i + 1 < argc; i += 2) {
        const char *a = argv[i], *v = argv[i + 1];
        if (!strcmp(a, "--model")) model = v;
        else if (!strcmp(a, "--encoder")) encoder = v;
        else if (!strcmp(a, "--output")) output = v;
        else if (!strcmp(a, "--images")) dir = v;
        else if (!strcmp(a, "--list")) list = v;
        else if (!strcmp(a, "-n")) n = atoi(v);
        else if (!strcmp(a, "--latency-n")) lat_n = atoi(v);
        else if (!strcmp(a, "--threads")) threads = atoi(v);
        else if (!strcmp(a, "--save-model")) save = v;
        else if (!strcmp(a, "--dump")) dump = v;
        else {
            fprintf(stderr, "bench_caption: unknown option %s\n", a);
            return 2;
        }
    }
    if (threads < 1 || threads > 64 || n < 1 || lat_n < 1) {
        fprintf(stderr, "bench_caption: bad -n, --latency-n or --threads\n");
        return 2;
    }
    char tmp[256];
    if (!model) {
        snprintf(tmp, sizeof tmp, "/tmp/bench_caption_%d.imcap", (int)getpid());
        make_untrained(encoder, output, save ? save : tmp);
        model = save ? save : tmp;
    }
    double t0 = imcap_now();
    imcap_captioner *c;
    if (imcap_captioner_load(model, model == tmp ? encoder : NULL, &c)) die(model);
    printf("model %s (encoder %s, %s), loaded in %.1f ms\n", model, imcap_captioner_encoder_name(c),
           imcap_captioner_encoder_path(c), 1e3 * (imcap_now() - t0));
    if (model == tmp) remove(tmp);
    print_load("at start");
    int got;
    char **paths = list_images(dir, list, n > lat_n ? n : lat_n, &got);
    if (got == 0) {
        fprintf(stderr, "bench_caption: no images\n");
        return 1;
    }
    if (lat_n > got) lat_n = got;
    if (n > got) n = got;
    /* Warm up: page in the weights, start the worker pool. */
    latency(c, paths, lat_n < 3 ? lat_n : 3, 1, 1);
    printf("latency, one photo at a time, %d photos:\n", lat_n);
    latency(c, paths, lat_n, 1, 0);
    latency(c, paths, lat_n, 3, 0);
    throughput(c, paths, n, 1, 1);
    if (threads > 1) throughput(c, paths, n, threads, 1);
    throughput(c, paths, n, threads, 3);
    print_load("after the runs");
    if (dump) dump_captions(c, paths, lat_n, dump);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("peak resident memory: %.1f MiB\n", ru.ru_maxrss / 1024.0);
    for (int i = 0; i < got; i++) free(paths[i]);
    free(paths);
    imcap_captioner_free(c);
    return 0;
}
