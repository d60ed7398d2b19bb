/* cmd_extract.c - `imcap extract`: embeddings of a list of images with an
 * encoder, written to (or resumed into) an embeddings file. */
#define _POSIX_C_SOURCE 200809L
#include "cli.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>

static const char *const EXTRACT_HELP =
    "usage: imcap extract --encoder ENC.gguf --images DIR --list NAMES.txt --out EMB.f32\n"
    "                     [--output NAME] [--dtype f32|f16] [--threads N] [--batch N]\n"
    "Runs the encoder on every image named in NAMES.txt (one file name per line,\n"
    "relative to DIR) and writes one embedding row per image to EMB.f32.\n"
    "If EMB.f32 exists (an interrupted run), its complete rows are kept and\n"
    "only the missing images are computed; Ctrl-C stops cleanly after the\n"
    "current batch. Images that cannot be read are listed at the end and get\n"
    "no row (exit status 1).\n"
    "  --output NAME  encoder output to store (default embedding; e.g. mixed5);\n"
    "                 several in one pass: --output embedding,mixed5 --out a.emb,b.emb;\n"
    "                 grid: the spatial map the embedding pools (e.g. 7x7x1280), one\n"
    "                 rows x cols x channels map per image (docs/FORMATS.md)\n"
    "  --dtype T      storage of the values: f32 (default) or f16 (half the size;\n"
    "                 read back as float32); one per output: --dtype f32,f16\n"
    "  --threads N    image decoding threads (default 2)\n"
    "  --batch N      images per network run (default 8)\n"
    "  --precision P  int8 (TFLite's integer arithmetic), float or auto (default)\n"
    "Under mpirun -np N, rank R extracts the images i mod N = R into EMB.f32.rankRofN\n"
    "(resumable), and rank 0 merges the shards into EMB.f32: the same bytes as one process.\n";

static volatile sig_atomic_t g_interrupted;

static void on_sigint(int sig)
{
    (void)sig;
    g_interrupted = 1;
    signal(SIGINT, SIG_DFL); /* a second Ctrl-C kills at once (resume cuts a torn row) */
}

/* The first report gives the rows found from an earlier run; the line then
 * counts (and times) only the images of this run. */
typedef struct extract_progress {
    cli_progress line;
    int started;
    uint64_t base;
    char label[64];
} extract_progress;

static int progress(void *user, uint64_t done, uint64_t total, const char *what)
{
    extract_progress *p = user;
    if (!p->started) {
        p->started = 1;
        p->base = done;
        if (done) {
            snprintf(p->label, sizeof p->label, "extract (%llu already done)", (unsigned long long)done);
            p->line.label = p->label;
        }
        cli_progress_init(&p->line, p->line.label);
    }
    cli_progress_fn(&p->line, done - p->base, total - p->base, what);
    return g_interrupted != 0;
}

int cmd_extract(int argc, char **argv)
{
    imcap_extract_params p = imcap_extract_default_params();
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        long n;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(EXTRACT_HELP, stdout);
            return 0;
        }
        if (!v) {
            fprintf(stderr, "imcap extract: %s needs a value (or unknown option)\n%s", a, EXTRACT_HELP);
            return 2;
        }
        i++;
        if (!strcmp(a, "--encoder")) p.encoder = v;
        else if (!strcmp(a, "--images")) p.image_dir = v;
        else if (!strcmp(a, "--list")) p.list = v;
        else if (!strcmp(a, "--out")) p.out = v;
        else if (!strcmp(a, "--output")) p.output = v;
        else if (!strcmp(a, "--precision")) {
            imcap_precision pr;
            if (cli_parse_precision(a, v, &pr)) return 2;
            p.precision = pr;
        }
        else if (!strcmp(a, "--dtype")) p.dtypes = v;
        else if (!strcmp(a, "--threads")) {
            if (cli_parse_int(a, v, 1, 64, &n)) return 2;
            p.threads = (int)n;
        } else if (!strcmp(a, "--batch")) {
            if (cli_parse_int(a, v, 1, 256, &n)) return 2;
            p.batch = (int)n;
        } else {
            fprintf(stderr, "imcap extract: unknown option %s\n%s", a, EXTRACT_HELP);
            return 2;
        }
    }
    if (!p.encoder || !p.image_dir || !p.list || !p.out) {
        fprintf(stderr, "imcap extract: --encoder, --images, --list and --out are required\n%s", EXTRACT_HELP);
        return 2;
    }
    extract_progress prog;
    memset(&prog, 0, sizeof prog);
    prog.line.label = "extract";
    p.progress = progress;
    p.progress_user = &prog;
    p.comm = cli_comm();
    signal(SIGINT, on_sigint);
    imcap_extract_report rep;
    imcap_status st = imcap_extract(&p, &rep);
    signal(SIGINT, SIG_DFL);
    for (uint64_t i = 0; i < rep.n_failed; i++) fprintf(stderr, "imcap extract: skipped %s\n", rep.failed[i]);
    int rc = 0;
    if (st != IMCAP_OK) rc = cli_error("extract", st);
    if (rep.total && p.comm->size > 1)
        fprintf(stderr, "imcap extract: rank %d of %d (images i %% %d == %d; merged into %s by rank 0): ",
                p.comm->rank, p.comm->size, p.comm->size, p.comm->rank, p.out);
    if (rep.total)
        fprintf(stderr,
                "%s%s: %llu of %llu images stored (%llu resumed, %llu new in %.1f s = %.2f images/s, "
                "%llu failed%s)\n",
                p.comm->size > 1 ? "" : "imcap extract: ", p.out, (unsigned long long)(rep.resumed + rep.done), (unsigned long long)rep.total,
                (unsigned long long)rep.resumed, (unsigned long long)rep.done, rep.seconds,
                rep.seconds > 0 ? (double)rep.done / rep.seconds : 0.0, (unsigned long long)rep.n_failed,
                rep.dropped ? ", a torn row at the end was recomputed" : "");
    if (rep.n_failed) rc = 1;
    imcap_extract_report_free(&rep);
    return rc;
}
