/* cmd_caption.c - `imcap caption`: captions for photos, as text, JSON,
 * speech or WAV files. Images are captioned by a small pool of threads on
 * one loaded captioner; results are printed in input order. */
#define _POSIX_C_SOURCE 200809L
#include "cli.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *const CAPTION_HELP =
    "usage: imcap caption [options] IMAGE|DIR|- ...\n"
    "Captions each image (JPEG, PNG, BMP). A directory stands for its image files\n"
    "(*.jpg *.jpeg *.png *.bmp, sorted by name, not recursive); '-' reads image\n"
    "paths from standard input, one a line. Prints 'path<TAB>caption' a line.\n"
    "Images that cannot be captioned are reported on stderr and skipped; the\n"
    "exit status is then 1.\n"
    "  --model M        captioning model (default $IMCAP_MODEL, else models/default.imcap)\n"
    "  --encoder E      encoder file (default: the one the model names, looked for in\n"
    "                   the model's directory, its encoders/ folder, models/encoders/)\n"
    "  --precision P    encoder arithmetic: int8, float, bf16 or auto (default; README \"Encoder precision\")\n"
    "  --beam K         beam search with K hypotheses (default: the model's setting)\n"
    "  --temperature T  sample each word from p^(1/T) renormalised (needs --beam 1)\n"
    "  --seed S         sampling seed (default 1; same seed, same captions)\n"
    "  --max-len N      at most N words (default: the model's setting, 20)\n"
    "  --alpha A        beam length normalisation: score = logprob / len^A (default 0.7)\n"
    "  --block-ngram N  beam search: no N-gram twice in a caption (0: off; default:\n"
    "                   the model's setting)\n"
    "  --n-best N       N captions per image, best first (beam search widens to N\n"
    "                   if needed; with --temperature, N samples). Text output is\n"
    "                   then 'path<TAB>rank<TAB>logprob<TAB>caption' lines\n"
    "  --json           one JSON array: path, caption, logprob, score, alternatives,\n"
    "                   (attention models: grid [rows, cols] and per word its\n"
    "                   attention weights, row-major over the grid),\n"
    "                   timings (ms) per image\n"
    "  --threads N      images captioned in parallel (default 2)\n"
    "  --speak          speak each caption on the audio device\n"
    "  --wav PATTERN    write each caption as a WAV file: PATTERN as is for one\n"
    "                   image; for several, a printf %d in PATTERN takes the image's\n"
    "                   number (cap-%03d.wav), else -1, -2, ... goes before the\n"
    "                   extension (out.wav -> out-1.wav, out-2.wav, ...)\n"
    "  --voice V        espeak-ng voice (default en; e.g. en-us, en+f3)\n"
    "  --rate R         speaking rate, words per minute (default 175)\n"
    "When standard output is not a terminal, a progress line goes to stderr\n"
    "(set IMCAP_QUIET=1 to silence it).\n";

typedef struct opts {
    const char *model, *encoder, *wav;
    imcap_gen_params gen;
    int beam_set, max_len_set, alpha_set, block_set, n_best;
    int json, threads, speak;
    imcap_speech_params speech;
    imcap_precision precision;
} opts;

/* ------------------------------------------------------------ the inputs */

typedef struct list {
    char **v;
    size_t n, cap;
} list;

static int list_add(list *l, const char *s)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 64;
        char **v = realloc(l->v, cap * sizeof *v);
        if (!v) return -1;
        l->v = v;
        l->cap = cap;
    }
    if (!(l->v[l->n] = strdup(s))) return -1;
    l->n++;
    return 0;
}

static void list_free(list *l)
{
    for (size_t i = 0; i < l->n; i++) free(l->v[i]);
    free(l->v);
}

static int is_image_name(const char *name)
{
    const char *dot = strrchr(name, '.');
    if (!dot || name[0] == '.') return 0;
    char ext[8];
    size_t n = strlen(dot + 1);
    if (n == 0 || n >= sizeof ext) return 0;
    for (size_t i = 0; i <= n; i++) ext[i] = (char)tolower((unsigned char)dot[1 + i]);
    return !strcmp(ext, "jpg") || !strcmp(ext, "jpeg") || !strcmp(ext, "png") || !strcmp(ext, "bmp");
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Adds the image files of dir, sorted. Returns 0, or 1 after a message. */
static int add_dir(list *l, const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) {
        fprintf(stderr, "imcap caption: %s: cannot open directory: %s\n", dir, strerror(errno));
        return 1;
    }
    list names = {0};
    struct dirent *e;
    int rc = 0;
    while ((e = readdir(d)) != NULL)
        if (is_image_name(e->d_name) && list_add(&names, e->d_name)) rc = 1;
    closedir(d);
    if (names.n) qsort(names.v, names.n, sizeof *names.v, cmp_str);
    size_t dl = strlen(dir);
    int slash = dl > 0 && dir[dl - 1] == '/';
    for (size_t i = 0; i < names.n && !rc; i++) {
        char *p = malloc(dl + strlen(names.v[i]) + 2);
        if (!p) {
            rc = 1;
            break;
        }
        sprintf(p, "%s%s%s", dir, slash ? "" : "/", names.v[i]);
        rc = list_add(l, p);
        free(p);
    }
    if (!rc && names.n == 0) fprintf(stderr, "imcap caption: %s: no image files (jpg, jpeg, png, bmp)\n", dir);
    if (rc) fprintf(stderr, "imcap caption: out of memory listing %s\n", dir);
    list_free(&names);
    return rc;
}

static int add_stdin(list *l)
{
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    while ((n = getline(&line, &cap, stdin)) >= 0) {
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r')) line[--n] = 0;
        char *s = line;
        while (*s == ' ' || *s == '\t') s++;
        if (!*s) continue;
        if (list_add(l, s)) {
            free(line);
            fprintf(stderr, "imcap caption: out of memory reading the image list\n");
            return 1;
        }
    }
    free(line);
    return 0;
}

/* ----------------------------------------------------------- the workers */

typedef struct slot {
    imcap_caption *cap;
    char *error; /* message if the image failed */
    int done;
} slot;

typedef struct pool {
    const imcap_captioner *c;
    const imcap_gen_params *gen;
    const list *in;
    slot *slots;
    size_t next;
    pthread_mutex_t mu;
    pthread_cond_t cv;
} pool;

static void *worker(void *arg)
{
    pool *p = arg;
    for (;;) {
        pthread_mutex_lock(&p->mu);
        size_t i = p->next++;
        pthread_mutex_unlock(&p->mu);
        if (i >= p->in->n) return NULL;
        imcap_caption *cap = NULL;
        imcap_status st = imcap_caption_file(p->c, p->in->v[i], p->gen, &cap);
        char *err = NULL;
        if (st) {
            const char *m = imcap_last_error();
            err = strdup(m && *m ? m : imcap_status_str(st));
        }
        pthread_mutex_lock(&p->mu);
        p->slots[i].cap = cap;
        p->slots[i].error = err;
        p->slots[i].done = 1;
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
    }
}

/* ------------------------------------------------------------- printing */

/* WAV path of image k (1-based) of n. */
static int wav_path(const char *pattern, size_t k, size_t n, char *out, size_t cap)
{
    const char *pct = strchr(pattern, '%');
    if (pct) {
        snprintf(out, cap, pattern, (int)k);
        return 0;
    }
    if (n == 1) {
        snprintf(out, cap, "%s", pattern);
        return 0;
    }
    const char *slash = strrchr(pattern, '/'), *dot = strrchr(pattern, '.');
    if (!dot || (slash && dot < slash)) dot = pattern + strlen(pattern);
    snprintf(out, cap, "%.*s-%zu%s", (int)(dot - pattern), pattern, k, dot);
    return 0;
}

/* A --wav pattern may hold one %d (with flags/width), nothing else. */
static int check_wav_pattern(const char *p)
{
    const char *pct = strchr(p, '%');
    if (!pct) return 0;
    const char *s = pct + 1;
    while (*s == '0' || *s == '-') s++;
    while (*s >= '0' && *s <= '9') s++;
    if (*s != 'd' || strchr(s, '%')) {
        fprintf(stderr, "imcap caption: --wav pattern '%s' may contain one %%d (e.g. cap-%%03d.wav) and no "
                        "other %%\n", p);
        return 1;
    }
    return 0;
}

/* Prints / speaks / writes image i's result. Returns 1 if it failed. */
static int emit(opts *o, const list *in, size_t i, const slot *s, int *first_json)
{
    const char *path = in->v[i];
    if (s->error) {
        fprintf(stderr, "imcap caption: %s\n", s->error);
        return 1;
    }
    const imcap_caption *cap = s->cap;
    if (o->json) {
        cJSON *j = cli_caption_json(path, cap);
        char *txt = cJSON_PrintUnformatted(j);
        cJSON_Delete(j);
        if (!txt) {
            fprintf(stderr, "imcap caption: %s: out of memory formatting JSON\n", path);
            return 1;
        }
        printf("%s%s", *first_json ? "[\n" : ",\n", txt);
        *first_json = 0;
        free(txt);
    } else if (o->n_best > 1) {
        for (int k = 0; k < cap->n_alt; k++)
            printf("%s\t%d\t%.4f\t%s\n", path, k + 1, cap->alt[k].logprob, cap->alt[k].text);
    } else {
        printf("%s\t%s\n", path, cap->alt[0].text);
    }
    fflush(stdout);
    int rc = 0;
    if (o->wav) {
        char wp[PATH_MAX];
        wav_path(o->wav, i + 1, in->n, wp, sizeof wp);
        if (imcap_speech_write_wav(cap->alt[0].text, &o->speech, wp)) {
            fprintf(stderr, "imcap caption: %s: speech: %s\n", path, imcap_last_error());
            rc = 1;
        }
    }
    imcap_status st;
    if (o->speak && (st = imcap_speech_play(cap->alt[0].text, &o->speech))) {
        fprintf(stderr, "imcap caption: %s: %s\n", path, imcap_last_error());
        if (st == IMCAP_E_UNSUPPORTED && i + 1 < in->n) {
            fprintf(stderr, "imcap caption: not speaking the other captions\n");
            o->speak = 0;
        }
        rc = 1;
    }
    return rc;
}

/* ------------------------------------------------------------------ main */

static int parse(int argc, char **argv, opts *o, list *in)
{
    long n;
    double d;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(CAPTION_HELP, stdout);
            return -1;
        }
        if (!strcmp(a, "--json")) {
            o->json = 1;
            continue;
        }
        if (!strcmp(a, "--speak")) {
            o->speak = 1;
            continue;
        }
        if (!strcmp(a, "-") || a[0] != '-') {
            if (!strcmp(a, "-")) {
                if (add_stdin(in)) return 2;
            } else {
                struct stat st;
                if (stat(a, &st) == 0 && S_ISDIR(st.st_mode)) {
                    if (add_dir(in, a)) return 2;
                } else if (list_add(in, a)) {
                    return 2;
                }
            }
            continue;
        }
        if (!v) {
            fprintf(stderr, "imcap caption: %s needs a value (or unknown option)\n%s", a, CAPTION_HELP);
            return 2;
        }
        i++;
        if (!strcmp(a, "--model")) o->model = v;
        else if (!strcmp(a, "--encoder")) o->encoder = v;
        else if (!strcmp(a, "--precision")) {
            if (cli_parse_precision(a, v, &o->precision)) return 2;
        } else if (!strcmp(a, "--wav")) o->wav = v;
        else if (!strcmp(a, "--voice")) o->speech.voice = v;
        else if (!strcmp(a, "--rate")) {
            if (cli_parse_int(a, v, 80, 450, &n)) return 2;
            o->speech.rate = (int)n;
        } else if (!strcmp(a, "--beam")) {
            if (cli_parse_int(a, v, 1, 64, &n)) return 2;
            o->gen.beam = (int)n;
            o->beam_set = 1;
        } else if (!strcmp(a, "--temperature")) {
            if (cli_parse_double(a, v, 0, 100, &d)) return 2;
            o->gen.temperature = (float)d;
        } else if (!strcmp(a, "--seed")) {
            char *end;
            errno = 0;
            unsigned long long s = strtoull(v, &end, 10);
            if (errno || end == v || *end || v[0] == '-') {
                fprintf(stderr, "imcap: --seed expects a non-negative integer, got '%s'\n", v);
                return 2;
            }
            o->gen.seed = s;
        } else if (!strcmp(a, "--max-len")) {
            if (cli_parse_int(a, v, 1, 100, &n)) return 2;
            o->gen.max_len = (int)n;
            o->max_len_set = 1;
        } else if (!strcmp(a, "--alpha")) {
            if (cli_parse_double(a, v, 0, 2, &d)) return 2;
            o->gen.length_alpha = (float)d;
            o->alpha_set = 1;
        } else if (!strcmp(a, "--block-ngram")) {
            if (cli_parse_int(a, v, 0, 8, &n)) return 2;
            o->gen.block_ngram = (int)n;
            o->block_set = 1;
        } else if (!strcmp(a, "--n-best")) {
            if (cli_parse_int(a, v, 1, 64, &n)) return 2;
            o->n_best = (int)n;
        } else if (!strcmp(a, "--threads")) {
            if (cli_parse_int(a, v, 1, 64, &n)) return 2;
            o->threads = (int)n;
        } else {
            fprintf(stderr, "imcap caption: unknown option %s\n%s", a, CAPTION_HELP);
            return 2;
        }
    }
    return 0;
}

int cmd_caption(int argc, char **argv)
{
    opts o;
    memset(&o, 0, sizeof o);
    o.gen = imcap_gen_default_params();
    o.threads = 2;
    o.n_best = 1;
    o.speech = imcap_speech_default_params();
    list in = {0};
    int rc = parse(argc, argv, &o, &in);
    if (rc) {
        list_free(&in);
        return rc < 0 ? 0 : rc;
    }
    if (in.n == 0) {
        fprintf(stderr, "imcap caption: no images given\n%s", CAPTION_HELP);
        list_free(&in);
        return 2;
    }
    if (o.wav && check_wav_pattern(o.wav)) {
        list_free(&in);
        return 2;
    }
    static char default_path[PATH_MAX];
    if (!o.model) {
        /* $IMCAP_MODEL, ./models/default.imcap, or beside the binary (build tree or installed copy). */
        if (imcap_default_model_path(default_path, sizeof default_path)) {
            fprintf(stderr, "imcap caption: %s; run ./setup.sh (or `make model`) to make it, or pass --model FILE\n",
                    imcap_last_error());
            list_free(&in);
            return 1;
        }
        o.model = default_path;
    }
    imcap_captioner *c;
    imcap_status st = imcap_captioner_load(o.model, o.encoder, &c);
    if (!st && (st = imcap_captioner_set_precision(c, o.precision))) {
        cli_error("caption", st);
        imcap_captioner_free(c);
        list_free(&in);
        return 1;
    }
    if (st) {
        struct stat sb;
        if (stat(o.model, &sb) != 0)
            fprintf(stderr, "imcap caption: no captioning model at %s: run ./setup.sh (or `make model`) to make "
                            "the default model, or pass --model FILE\n", o.model);
        else
            cli_error("caption", st);
        list_free(&in);
        return 1;
    }
    /* The model's settings, then the flags. */
    imcap_gen_params mp = imcap_captioner_gen_params(c);
    if (!o.beam_set) o.gen.beam = o.gen.temperature > 0 ? 1 : mp.beam;
    if (!o.max_len_set) o.gen.max_len = mp.max_len;
    if (!o.alpha_set) o.gen.length_alpha = mp.length_alpha;
    if (!o.block_set) o.gen.block_ngram = mp.block_ngram;
    o.gen.n_best = o.n_best;
    if (o.gen.temperature == 0 && o.n_best > o.gen.beam) {
        if (o.beam_set && o.gen.beam > 1) {
            fprintf(stderr, "imcap caption: --n-best %d is more than --beam %d\n", o.n_best, o.gen.beam);
            imcap_captioner_free(c);
            list_free(&in);
            return 2;
        }
        o.gen.beam = o.n_best;
    }
    if ((st = imcap_gen_params_check(&o.gen))) {
        cli_error("caption", st);
        imcap_captioner_free(c);
        list_free(&in);
        return 2;
    }

    pool p = {.c = c, .gen = &o.gen, .in = &in, .slots = calloc(in.n, sizeof(slot))};
    pthread_mutex_init(&p.mu, NULL);
    pthread_cond_init(&p.cv, NULL);
    int nt = o.threads < (int)in.n ? o.threads : (int)in.n;
    pthread_t th[64];
    int started = 0;
    if (p.slots)
        for (; started < nt; started++)
            if (pthread_create(&th[started], NULL, worker, &p)) break;
    if (!p.slots || started == 0) {
        fprintf(stderr, "imcap caption: cannot start the worker threads\n");
        free(p.slots);
        imcap_captioner_free(c);
        list_free(&in);
        return 1;
    }
    size_t failed = 0;
    int first_json = 1;
    /* A progress line on stderr when the captions go to a file or pipe. */
    cli_progress prog;
    cli_progress_init(&prog, "caption");
    int show_progress = in.n > 1 && !isatty(STDOUT_FILENO);
    for (size_t i = 0; i < in.n; i++) {
        pthread_mutex_lock(&p.mu);
        while (!p.slots[i].done) pthread_cond_wait(&p.cv, &p.mu);
        pthread_mutex_unlock(&p.mu);
        failed += (size_t)emit(&o, &in, i, &p.slots[i], &first_json);
        if (show_progress) cli_progress_fn(&prog, i + 1, in.n, "photos");
        imcap_caption_free(p.slots[i].cap);
        free(p.slots[i].error);
        p.slots[i].cap = NULL;
        p.slots[i].error = NULL;
    }
    for (int t = 0; t < started; t++) pthread_join(th[t], NULL);
    if (o.json) printf("%s]\n", first_json ? "[" : "\n");
    if (failed) fprintf(stderr, "imcap caption: %zu of %zu images failed\n", failed, in.n);
    pthread_mutex_destroy(&p.mu);
    pthread_cond_destroy(&p.cv);
    free(p.slots);
    imcap_captioner_free(c);
    list_free(&in);
    return failed ? 1 : 0;
}
