/*
 * test_train.c - decoder training: exact resumption after an interruption
 * (a stop requested mid-run, and SIGKILL at arbitrary moments), history
 * files, and clear errors for bad inputs.
 */
#define _GNU_SOURCE
#include "test.h"
#include "decoder.h"
#include "fixture.h"
#include "train_fixture.h"

#include <dirent.h>
#include <sys/stat.h>

enum { N_IMG = 16, DIM = 8 };

static const char *words[] = {"a", "dog", "runs", "on", "the", "grass", "cat", "sits", "red", "ball", "man", "rides"};

/* A small dataset in dir: captions.csv (16 images x 3 captions), train.txt
 * (12 images), val.txt (4), emb.bin (dim DIM, all 16 images, or only the
 * first n_emb). */
static void make_dataset(const char *dir, int n_emb, int dim)
{
    char path[1024];
    imcap_rng rng;
    imcap_rng_seed(&rng, 5);
    snprintf(path, sizeof path, "%s/captions.csv", dir);
    FILE *fp = fopen(path, "w");
    REQUIRE(fp);
    fprintf(fp, "image,caption\n");
    for (int i = 0; i < N_IMG; i++)
        for (int k = 0; k < 3; k++) {
            fprintf(fp, "img%02d.jpg,", i);
            int n = 3 + (int)imcap_rng_below(&rng, 8);
            for (int w = 0; w < n; w++)
                fprintf(fp, "%s%s", w ? " " : "", words[(i + w * (k + 1)) % (sizeof words / sizeof *words)]);
            fprintf(fp, " .\n");
        }
    fclose(fp);
    snprintf(path, sizeof path, "%s/train.txt", dir);
    fp = fopen(path, "w");
    REQUIRE(fp);
    for (int i = 0; i < 12; i++) fprintf(fp, "img%02d.jpg\n", i);
    fclose(fp);
    snprintf(path, sizeof path, "%s/val.txt", dir);
    fp = fopen(path, "w");
    REQUIRE(fp);
    for (int i = 12; i < N_IMG; i++) fprintf(fp, "img%02d.jpg\n", i);
    fclose(fp);
    char names[N_IMG][16];
    const char *np[N_IMG];
    float rows[N_IMG * 64];
    REQUIRE(dim <= 64);
    for (int i = 0; i < N_IMG; i++) {
        snprintf(names[i], sizeof names[i], "img%02d.jpg", i);
        np[i] = names[i];
        for (int k = 0; k < dim; k++) rows[i * dim + k] = (float)imcap_rng_normal(&rng);
    }
    snprintf(path, sizeof path, "%s/emb.bin", dir);
    REQUIRE_OK(imcap_embfile_write(path, (size_t)dim, "test", (size_t)n_emb, np, rows));
}

static char g_paths[6][1024];

static imcap_train_params small_params(const char *dir, const char *ckpt_name)
{
    imcap_train_params p = imcap_train_default_params();
    snprintf(g_paths[0], 1024, "%s/emb.bin", dir);
    snprintf(g_paths[1], 1024, "%s/captions.csv", dir);
    snprintf(g_paths[2], 1024, "%s/train.txt", dir);
    snprintf(g_paths[3], 1024, "%s/val.txt", dir);
    p.embeddings = g_paths[0];
    p.captions = g_paths[1];
    p.train_split = g_paths[2];
    p.val_split = g_paths[3];
    static char ckpt[3][1024];
    static int k;
    char *c = ckpt[k++ % 3];
    snprintf(c, 1024, "%s/%s", dir, ckpt_name);
    p.checkpoint = c;
    p.epochs = 3;
    p.batches_per_epoch = 5;
    p.batch_size = 4;
    p.max_len = 12;
    p.min_count = 1;
    p.val_batches = 2;
    p.checkpoint_every = 2;
    p.lr = 1e-2f;
    p.clip = 1.0f;
    p.n_img1 = 6;
    p.n_hid = 10;
    p.n_emb = 7;
    p.n_out1 = 9;
    p.seed = 99;
    return p;
}

static int stop_at_step(void *user, const imcap_train_report *r)
{
    return r->step >= *(const uint64_t *)user;
}

static void stopped_mid_run(float dropout)
{
    const char *dir = test_tmpdir();
    make_dataset(dir, N_IMG, DIM);
    /* uninterrupted */
    imcap_train_params a = small_params(dir, "a.gguf");
    a.dropout = dropout;
    char ha[1100], hb[1100], sa[1100], sb[1100];
    snprintf(ha, sizeof ha, "%s/a.csv", dir);
    snprintf(hb, sizeof hb, "%s/b.csv", dir);
    snprintf(sa, sizeof sa, "%s/a.svg", dir);
    snprintf(sb, sizeof sb, "%s/b.svg", dir);
    a.history_csv = ha;
    a.plot_svg = sa;
    REQUIRE_OK(imcap_train(&a));
    /* stopped at steps 8 and 13 (after checkpoints at 6 and 12), resumed */
    imcap_train_params b = small_params(dir, "b.gguf");
    b.dropout = dropout;
    b.history_csv = hb;
    b.plot_svg = sb;
    uint64_t stop = 8;
    b.report = stop_at_step;
    b.report_user = &stop;
    CHECK(imcap_train(&b) == IMCAP_E_ARG);
    CHECK(strstr(imcap_last_error(), "interrupted") != NULL);
    b.resume = 1;
    stop = 13;
    CHECK(imcap_train(&b) == IMCAP_E_ARG);
    b.report = NULL;
    REQUIRE_OK(imcap_train(&b));
    CHECK_SAME_FILE(a.checkpoint, b.checkpoint);
    CHECK_SAME_FILE(ha, hb);
    CHECK_SAME_FILE(sa, sb);
    /* the history: header + 3 epochs, losses falling */
    size_t len;
    char *csv = fixture_slurp(ha, &len);
    int lines = 0;
    for (size_t i = 0; i < len; i++) lines += csv[i] == '\n';
    CHECK(lines == 4);
    CHECK(strncmp(csv, "epoch,step,train_loss,val_loss\n1,5,", 35) == 0);
    float t1, v1, t3, v3;
    REQUIRE(sscanf(strchr(csv, '\n') + 1, "1,5,%f,%f", &t1, &v1) == 2);
    REQUIRE(sscanf(strstr(csv, "\n3,15,") + 1, "3,15,%f,%f", &t3, &v3) == 2);
    CHECK(t3 < t1);
    free(csv);
    char *svg = fixture_slurp(sa, &len);
    CHECK(strstr(svg, "<svg") && strstr(svg, "<polyline") && strstr(svg, "validation") && strstr(svg, "</svg>"));
    free(svg);
    /* the checkpoint is a decoder model file too */
    dec_model *m;
    imcap_vocab *v;
    REQUIRE_OK(dec_load(a.checkpoint, &m, &v));
    CHECK(m->cfg.n_img == DIM && m->cfg.n_hid == 10 && m->cfg.n_vocab == (int)imcap_vocab_size(v));
    dec_model_free(m);
    imcap_vocab_free(v);
    /* resuming a finished run does nothing */
    REQUIRE_OK(imcap_train(&b));
    CHECK_SAME_FILE(a.checkpoint, b.checkpoint);
}

TEST(train_stopped_mid_run_resumes_to_the_same_result) { stopped_mid_run(0.0f); }

/* With dropout the masks follow the step, so a resumed run still ends
 * byte-identical to an uninterrupted one; and dropout did change training. */
TEST(train_with_dropout_resumes_to_the_same_result)
{
    stopped_mid_run(0.3f);
    const char *dir = test_tmpdir();
    imcap_train_params c = small_params(dir, "c.gguf");
    REQUIRE_OK(imcap_train(&c));
    size_t la, lc;
    char *da = fixture_slurp(small_params(dir, "a.gguf").checkpoint, &la);
    char *dc = fixture_slurp(c.checkpoint, &lc);
    CHECK(la != lc || memcmp(da, dc, la) != 0);
    free(da);
    free(dc);
    dec_model *m;
    imcap_vocab *v;
    REQUIRE_OK(dec_load(c.checkpoint, &m, &v)); /* a plain decoder model: dropout is a training setting */
    dec_model_free(m);
    imcap_vocab_free(v);
}

static imcap_status run_train(void *p) { return imcap_train(p); }

/* A child process trains and is killed with SIGKILL at arbitrary moments
 * (checkpoints are written after every batch, so some kills land during a
 * write); each time the run is resumed; the end result equals an
 * uninterrupted run. */
TEST(train_killed_at_any_moment_resumes_to_the_same_result)
{
    const char *dir = test_tmpdir();
    make_dataset(dir, N_IMG, DIM);
    imcap_train_params a = small_params(dir, "a.gguf");
    const int big = getenv("IMCAP_SANITIZED") ? 24 : 64;
    a.n_hid = big;
    a.n_emb = big;
    a.epochs = 4;
    a.batches_per_epoch = 40;
    a.checkpoint_every = 1;
    REQUIRE_OK(imcap_train(&a));
    imcap_train_params b = a;
    char ck[1100];
    snprintf(ck, sizeof ck, "%s/b.gguf", dir);
    b.checkpoint = ck;
    b.resume = 1;
    CHECK(fixture_kill_runs(run_train, &b) >= 3);
    REQUIRE_OK(imcap_train(&b));
    CHECK_SAME_FILE(a.checkpoint, b.checkpoint);
}

TEST(train_bad_inputs_give_clear_errors)
{
    const char *dir = test_tmpdir();
    /* embeddings missing for 2 training images */
    make_dataset(dir, 10, DIM);
    imcap_train_params p = small_params(dir, "c.gguf");
    CHECK(imcap_train(&p) == IMCAP_E_MISMATCH);
    CHECK(strstr(imcap_last_error(), "img10.jpg") != NULL);
    CHECK(strstr(imcap_last_error(), "train.txt") != NULL);

    /* a checkpoint trained on dimension 8 resumed with dimension 12 */
    make_dataset(dir, N_IMG, DIM);
    p.epochs = 1;
    REQUIRE_OK(imcap_train(&p));
    make_dataset(dir, N_IMG, 12);
    p.resume = 1;
    p.epochs = 2;
    CHECK(imcap_train(&p) == IMCAP_E_MISMATCH);
    CHECK(strstr(imcap_last_error(), "dimension 12") && strstr(imcap_last_error(), "c.gguf"));

    /* a corrupt checkpoint: truncated, and with a flipped byte in the state */
    make_dataset(dir, N_IMG, DIM);
    size_t len;
    char *d = fixture_slurp(p.checkpoint, &len);
    FILE *fp = fopen(p.checkpoint, "wb");
    REQUIRE(fp);
    fwrite(d, 1, len / 2, fp);
    fclose(fp);
    imcap_status s = imcap_train(&p);
    CHECK(s == IMCAP_E_FORMAT);
    CHECK(strstr(imcap_last_error(), "c.gguf") != NULL);
    char *key = memmem(d, len, "imcap.train.batches_per_epoch", 29);
    REQUIRE(key);
    key[29 + 4] ^= 0x40; /* the u32 value after the type: 5 -> 0x40000005 batches */
    fp = fopen(p.checkpoint, "wb");
    REQUIRE(fp);
    fwrite(d, 1, len, fp);
    fclose(fp);
    CHECK(imcap_train(&p) == IMCAP_E_FORMAT);
    CHECK(strstr(imcap_last_error(), "inconsistent training state") || strstr(imcap_last_error(), "outside"));
    free(d);

    /* a batch larger than the training split */
    p = small_params(dir, "d.gguf");
    p.batch_size = 13;
    CHECK(imcap_train(&p) == IMCAP_E_ARG);
    CHECK(strstr(imcap_last_error(), "batch size 13") != NULL);
}

/* Validation losses of the history CSV (epoch,step,train_loss,val_loss). */
static int read_val_losses(const char *csv, double *val, int max)
{
    size_t len;
    char *d = fixture_slurp(csv, &len);
    int n = 0;
    for (char *line = strchr(d, '\n'); line && line[1] && n < max; line = strchr(line + 1, '\n')) {
        int e;
        unsigned long long step;
        double tr, v;
        REQUIRE(sscanf(line + 1, "%d,%llu,%lf,%lf", &e, &step, &tr, &v) == 4 && e == n + 1);
        val[n++] = v;
    }
    free(d);
    return n;
}

TEST(train_keeps_the_best_validation_model)
{
    const char *dir = test_tmpdir();
    make_dataset(dir, N_IMG, DIM);
    imcap_train_params p = small_params(dir, "run.gguf");
    p.epochs = 6;
    p.lr = 3e-2f; /* fast enough to overfit 12 images, so the best epoch need not be the last */
    char best[1200], hist[1200];
    snprintf(best, sizeof best, "%s/best.gguf", dir);
    snprintf(hist, sizeof hist, "%s/run.history.csv", dir);
    p.best_model = best;
    p.history_csv = hist;
    REQUIRE_OK(imcap_train(&p));
    double val[6];
    REQUIRE(read_val_losses(hist, val, 6) == 6);
    int k = 0;
    for (int e = 1; e < 6; e++)
        if (val[e] < val[k]) k = e;

    /* The same run stopped after epoch k+1 has exactly the best model's weights. */
    imcap_train_params q = small_params(dir, "short.gguf");
    q.epochs = k + 1;
    q.lr = p.lr;
    REQUIRE_OK(imcap_train(&q));
    dec_model *a, *b;
    imcap_vocab *va, *vb;
    REQUIRE_OK(dec_load(best, &a, &va));
    REQUIRE_OK(dec_load(q.checkpoint, &b, &vb));
    REQUIRE(a->n_params == b->n_params);
    CHECK(memcmp(a->params, b->params, a->n_params * sizeof(float)) == 0);
    CHECK(imcap_vocab_size(va) == imcap_vocab_size(vb));
    if (k < 5) { /* and differs from the last epoch's */
        dec_model *c;
        imcap_vocab *vc;
        REQUIRE_OK(dec_load(p.checkpoint, &c, &vc));
        CHECK(memcmp(a->params, c->params, a->n_params * sizeof(float)) != 0);
        dec_model_free(c);
        imcap_vocab_free(vc);
    }
    dec_model_free(a);
    dec_model_free(b);
    imcap_vocab_free(va);
    imcap_vocab_free(vb);

    /* Without a validation split, or onto the checkpoint itself: refused. */
    imcap_train_params r = small_params(dir, "x.gguf");
    r.best_model = best;
    r.val_split = NULL;
    CHECK(imcap_train(&r) == IMCAP_E_ARG);
    r = small_params(dir, "x.gguf");
    r.best_model = r.checkpoint;
    CHECK(imcap_train(&r) == IMCAP_E_ARG);
}

/* The attention decoder trains on a grid embeddings file through the same
 * loop: stopped and resumed, it ends byte-identical to an uninterrupted run
 * (regulariser and dropout on), and the checkpoint records the architecture
 * and the grid; a flat embeddings file is refused with a clear error. */
TEST(train_attention_decoder_on_a_grid_resumes_to_the_same_result)
{
    const char *dir = test_tmpdir();
    make_dataset(dir, N_IMG, DIM);
    static char grid[1100];
    snprintf(grid, sizeof grid, "%s/grid.bin", dir);
    fixture_grid_embeddings(grid, "test", "img%02d.jpg", N_IMG, 8, 0.0f);
    imcap_train_params a = small_params(dir, "att_a.gguf");
    a.decoder = "attention";
    a.n_att = 5;
    a.att_lambda = 0.5f;
    a.dropout = 0.2f;
    CHECK(imcap_train(&a) == IMCAP_E_MISMATCH); /* emb.bin is flat */
    CHECK(strstr(imcap_last_error(), "grid") != NULL);
    a.embeddings = grid;
    REQUIRE_OK(imcap_train(&a));
    imcap_train_params b = a;
    b.checkpoint = small_params(dir, "att_b.gguf").checkpoint;
    b.embeddings = grid;
    uint64_t stop = 8;
    b.report = stop_at_step;
    b.report_user = &stop;
    CHECK(imcap_train(&b) == IMCAP_E_ARG);
    b.resume = 1;
    b.report = NULL;
    b.decoder = NULL; /* the checkpoint's settings win */
    REQUIRE_OK(imcap_train(&b));
    CHECK_SAME_FILE(a.checkpoint, b.checkpoint);
    dec_model *m;
    imcap_vocab *v;
    REQUIRE_OK(dec_load(a.checkpoint, &m, &v));
    CHECK(m->cfg.arch == DEC_ARCH_ATTENTION && m->cfg.grid_h == 2 && m->cfg.grid_w == 3 && m->cfg.n_img == 4 &&
          m->cfg.n_att == 5 && m->cfg.n_hid == 10);
    dec_model_free(m);
    imcap_vocab_free(v);
}

/* Issue 14, finding 7: an output that cannot be written (here a directory)
 * is refused before the first batch, not after the whole run. */
static int count_reports(void *user, const imcap_train_report *r)
{
    (void)r;
    ++*(int *)user;
    return 0;
}

TEST(train_checks_every_output_before_training)
{
    const char *dir = test_tmpdir();
    make_dataset(dir, N_IMG, DIM);
    char sub[1100];
    snprintf(sub, sizeof sub, "%s/adir", dir);
    REQUIRE(mkdir(sub, 0755) == 0);
    for (int which = 0; which < 4; which++) {
        imcap_train_params p = small_params(dir, "ok.gguf");
        char best[1100], hist[1100], plot[1100];
        snprintf(best, sizeof best, "%s/best.gguf", dir);
        snprintf(hist, sizeof hist, "%s/h.csv", dir);
        snprintf(plot, sizeof plot, "%s/h.svg", dir);
        p.best_model = best, p.history_csv = hist, p.plot_svg = plot;
        if (which == 0) p.checkpoint = sub;
        if (which == 1) p.best_model = sub;
        if (which == 2) p.history_csv = sub;
        if (which == 3) p.plot_svg = sub;
        int n_reports = 0;
        p.report = count_reports;
        p.report_user = &n_reports;
        CHECK(imcap_train(&p) == IMCAP_E_IO);
        CHECK(n_reports == 0);
        CHECK(strstr(imcap_last_error(), sub) && strstr(imcap_last_error(), "directory"));
    }
}

/* Fault injection into the training writers (checkpoint, best model, loss
 * history CSV and plot): a failed open / write / fsync / rename at any of
 * them fails the run with an i/o error naming the file; every output is
 * then either its previous version or the complete new one, and no temp
 * file is left behind. */
static bool whole_output(const char *path, const unsigned char *d, size_t n)
{
    const char *end = strrchr(path, '.');
    if (!strcmp(end, ".csv")) return n > 30 && !memcmp(d, "epoch,step,", 11) && d[n - 1] == '\n';
    if (!strcmp(end, ".svg")) return n > 7 && !memcmp(d + n - 7, "</svg>\n", 7);
    dec_model *m;
    imcap_vocab *v;
    if (dec_load(path, &m, &v)) return false; /* torn or damaged: fails its tensor checksums */
    dec_model_free(m);
    imcap_vocab_free(v);
    return true;
}

TEST(train_write_faults_leave_previous_files_intact)
{
    const char *dir = test_tmpdir();
    make_dataset(dir, N_IMG, DIM);
    static const char *const names[4] = {"run.gguf", "best.gguf", "run.csv", "run.svg"};
    char paths[4][1100];
    for (int i = 0; i < 4; i++) snprintf(paths[i], sizeof paths[i], "%s/%s", dir, names[i]);
    imcap_train_params p = small_params(dir, "run.gguf");
    p.epochs = 2;
    p.best_model = paths[1], p.history_csv = paths[2], p.plot_svg = paths[3];
    unsigned char *prev[4], *next[4];
    size_t n_prev[4], n_next[4];
    REQUIRE_OK(imcap_train(&p));
    for (int i = 0; i < 4; i++) next[i] = (unsigned char *)fixture_slurp(paths[i], &n_next[i]);
    imcap_train_params q = p;
    q.seed = 7;
    REQUIRE_OK(imcap_train(&q));
    for (int i = 0; i < 4; i++) {
        prev[i] = (unsigned char *)fixture_slurp(paths[i], &n_prev[i]);
        CHECK(n_prev[i] != n_next[i] || memcmp(prev[i], next[i], n_prev[i]));
    }
    for (int k = 0; k < IMCAP_FAULT_KINDS; k++) {
        int a = 1, b = 1, ok = 0, faults = 0;
        while (!ok && a < 100000) {
            for (int i = 0; i < 4; i++) {
                FILE *fp = fopen(paths[i], "wb");
                REQUIRE(fp && fwrite(prev[i], 1, n_prev[i], fp) == n_prev[i] && fclose(fp) == 0);
            }
            imcap_fault_inject((imcap_fault_kind)k, a);
            imcap_status s = imcap_train(&p);
            imcap_fault_inject((imcap_fault_kind)k, 0);
            ok = s == IMCAP_OK;
            if (!ok) {
                faults++;
                if (s != IMCAP_E_IO || !strstr(imcap_last_error(), dir))
                    test_fail_at(__FILE__, __LINE__, "fault %d at %d: status %d: %s", k, a, (int)s, imcap_last_error());
            }
            for (int i = 0; i < 4; i++) {
                size_t n;
                unsigned char *d = (unsigned char *)fixture_slurp(paths[i], &n);
                bool is_prev = n == n_prev[i] && !memcmp(d, prev[i], n), is_next = n == n_next[i] && !memcmp(d, next[i], n);
                if (!ok && !is_prev && !is_next) is_next = whole_output(paths[i], d, n); /* an earlier epoch's */
                if (!(ok ? is_next : is_prev || is_next))
                    test_fail_at(__FILE__, __LINE__, "fault %d at %d: %s is neither the old nor the new file", k, a,
                                 names[i]);
                free(d);
            }
            DIR *dd = opendir(dir);
            REQUIRE(dd);
            for (struct dirent *e; (e = readdir(dd));)
                if (strstr(e->d_name, ".tmp."))
                    test_fail_at(__FILE__, __LINE__, "fault %d at %d left %s", k, a, e->d_name);
            closedir(dd);
            int c = a + b; /* Fibonacci steps through the run's hundreds of writes */
            a = b, b = c;
        }
        CHECK(ok && faults >= 3);
    }
    for (int i = 0; i < 4; i++) {
        free(prev[i]);
        free(next[i]);
    }
}

/* Issue 14, finding 6: `train --resume` from a checkpoint with one damaged
 * weight or Adam value (a weight that became 1e37) is refused, naming the
 * file and the tensor (train_fixture.c). */
TEST(train_resume_refuses_a_damaged_checkpoint)
{
    const char *dir = test_tmpdir();
    make_dataset(dir, N_IMG, DIM);
    imcap_train_params p = small_params(dir, "run.gguf");
    uint64_t stop = 3;
    p.report = stop_at_step;
    p.report_user = &stop;
    CHECK(imcap_train(&p) == IMCAP_E_ARG); /* stopped after the checkpoint at step 2 */
    imcap_train_params r = small_params(dir, "run.gguf");
    r.resume = 1;
    fixture_resume_refuses_damage(p.checkpoint, run_train, &r);
}
