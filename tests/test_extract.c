/*
 * test_extract.c - feature extraction with a tiny in-memory encoder:
 * rows equal a direct run of the graph, interruption + torn-row resume
 * give the same file as an uninterrupted run, failing images are reported.
 */
#define _POSIX_C_SOURCE 200809L
#include "test.h"
#include "extract.h"

#include <sys/stat.h>
#include <unistd.h>

enum { IN = 12, NIMG = 11 };

/* input 12x12x3 -> conv 3x3/2 SAME (5 ch, relu) -> GAP "embedding" (5)
 *                                               -> dense 3 "logits" */
static enc_graph *tiny_encoder(void)
{
    enc_graph *g = enc_graph_new("tiny test");
    REQUIRE(g);
    int x = enc_graph_add_input(g, "input", IN, IN, 3);
    float w[3 * 3 * 3 * 5], b[5], wd[5 * 3];
    for (int i = 0; i < 135; i++) w[i] = (float)((i * 37 % 19) - 9) / 20.f;
    for (int i = 0; i < 5; i++) b[i] = 0.05f * (float)i;
    for (int i = 0; i < 15; i++) wd[i] = (float)((i * 7 % 11) - 5) / 5.f;
    int wshape[4] = {3, 3, 3, 5}, bshape[1] = {5}, dshape[2] = {5, 3};
    int pw = enc_graph_add_param(g, "conv.w", 4, wshape, w);
    int pb = enc_graph_add_param(g, "conv.b", 1, bshape, b);
    int pd = enc_graph_add_param(g, "dense.w", 2, dshape, wd);
    REQUIRE(x >= 0 && pw >= 0 && pb >= 0 && pd >= 0);
    enc_node c = {0};
    c.op = ENC_CONV2D, c.n_inputs = 1, c.inputs[0] = x, c.kh = c.kw = 3, c.sh = c.sw = 2;
    c.pad = ENC_PAD_SAME, c.act = ENC_ACT_RELU, c.weight = pw, c.bias = pb;
    int y = enc_graph_add_node(g, &c, "conv");
    enc_node p = {0};
    p.op = ENC_GAP, p.n_inputs = 1, p.inputs[0] = y, p.weight = p.bias = -1;
    int e = enc_graph_add_node(g, &p, "pool");
    enc_node d = {0};
    d.op = ENC_DENSE, d.n_inputs = 1, d.inputs[0] = e, d.weight = pd, d.bias = -1;
    int l = enc_graph_add_node(g, &d, "dense");
    REQUIRE(y >= 0 && e >= 0 && l >= 0);
    REQUIRE_OK(enc_graph_set_output(g, "embedding", e));
    REQUIRE_OK(enc_graph_set_output(g, "logits", l));
    enc_preproc pre = {IN, IN, {2, 2, 2}, {-1, -1, -1}};
    enc_graph_set_preproc(g, &pre);
    return g;
}

/* Writes NIMG BMP images of various sizes into dir; names img<i>.bmp. */
static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v, p[1] = (uint8_t)(v >> 8), p[2] = (uint8_t)(v >> 16), p[3] = (uint8_t)(v >> 24);
}

static void write_bmp(const char *path, int w, int h, int seed)
{
    size_t stride = ((size_t)w * 3 + 3) & ~(size_t)3, n = 54 + stride * h;
    uint8_t *b = calloc(1, n);
    b[0] = 'B', b[1] = 'M';
    put32(b + 2, (uint32_t)n), put32(b + 10, 54), put32(b + 14, 40), put32(b + 18, (uint32_t)w);
    put32(b + 22, (uint32_t)h), b[26] = 1, b[28] = 24;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int c = 0; c < 3; c++)
                b[54 + stride * y + 3 * x + c] = (uint8_t)((x * (seed + 3) + y * (c + 5) * seed + c * 40) & 255);
    FILE *fp = fopen(path, "wb");
    REQUIRE(fp && fwrite(b, 1, n, fp) == n && fclose(fp) == 0);
    free(b);
}

static const char *tpath(const char *name)
{
    static char buf[8][700];
    static int k;
    char *b = buf[k++ & 7];
    snprintf(b, 700, "%s/%s", test_tmpdir(), name);
    return b;
}

static void make_images(void)
{
    mkdir(tpath("img"), 0755);
    FILE *list = fopen(tpath("list.txt"), "w");
    REQUIRE(list);
    fprintf(list, "# test list\n");
    for (int i = 0; i < NIMG; i++) {
        char name[64];
        snprintf(name, sizeof name, "img/im%02d.bmp", i);
        write_bmp(tpath(name), 9 + 3 * i, 30 - 2 * i, i + 1);
        fprintf(list, "im%02d.bmp%s\n", i, i == 3 ? "\r" : "");
        if (i == 5) fprintf(list, "\n");
    }
    REQUIRE(fclose(list) == 0);
}

/* Paths stay valid for the test (tpath's buffers are reused). */
static extract_ctx ctx(const char *out_name, int batch)
{
    static char dir[700], list[700], out[4][700];
    static int k;
    char *o = out[k++ & 3];
    snprintf(dir, sizeof dir, "%s/img", test_tmpdir());
    snprintf(list, sizeof list, "%s/list.txt", test_tmpdir());
    snprintf(o, 700, "%s/%s", test_tmpdir(), out_name);
    extract_ctx x = {"tiny.gguf", dir, list, o, "embedding", 2, batch, NULL, NULL, IMCAP_EMB_F32, NULL};
    return x;
}

/* The row of one image, computed directly. */
static void direct_row(const enc_graph *g, int i, float row[5])
{
    char name[64];
    snprintf(name, sizeof name, "img/im%02d.bmp", i);
    imcap_image img;
    REQUIRE_OK(imcap_image_load(tpath(name), &img));
    uint8_t u8[IN * IN * 3];
    float in[IN * IN * 3];
    REQUIRE_OK(imcap_image_prepare(&img, IN, IN, u8));
    const enc_preproc *pre = enc_graph_preproc(g);
    imcap_image_to_float(u8, IN * IN, pre->scale, pre->bias, in);
    int id = enc_graph_output(g, "embedding");
    REQUIRE_OK(enc_graph_run(g, in, 1, &id, 1, &row));
    imcap_image_free(&img);
}

TEST(extract_rows_match_a_direct_run)
{
    enc_graph *g = tiny_encoder();
    make_images();
    extract_ctx x = ctx("emb.f32", 3);
    imcap_extract_report rep;
    REQUIRE_OK(extract_run(g, &x, &rep));
    CHECK(rep.total == NIMG && rep.done == NIMG && rep.resumed == 0 && rep.n_failed == 0);
    imcap_extract_report_free(&rep);
    imcap_embfile *f;
    REQUIRE_OK(imcap_embfile_open(tpath("emb.f32"), &f));
    REQUIRE(imcap_embfile_count(f) == NIMG && imcap_embfile_dim(f) == 5);
    CHECK(strstr(imcap_embfile_encoder(f), "embedding") != NULL);
    for (int i = 0; i < NIMG; i++) {
        char name[32];
        snprintf(name, sizeof name, "im%02d.bmp", i);
        CHECK_STR(imcap_embfile_name(f, (size_t)i), name);
        float want[5];
        direct_row(g, i, want);
        const float *got = imcap_embfile_row(f, (size_t)i);
        for (int k = 0; k < 5; k++) CHECK_NEAR(got[k], want[k], 1e-5 + 1e-5 * fabs(want[k]));
    }
    imcap_embfile_close(f);
    /* running again finds everything done */
    REQUIRE_OK(extract_run(g, &x, &rep));
    CHECK(rep.resumed == NIMG && rep.done == 0);
    imcap_extract_report_free(&rep);
    enc_graph_free(g);
}

static int stop_after_5(void *user, uint64_t done, uint64_t total, const char *what)
{
    (void)user, (void)total, (void)what;
    return done >= 5;
}

TEST(extract_resumes_after_interrupt_and_torn_row)
{
    enc_graph *g = tiny_encoder();
    make_images();
    extract_ctx full = ctx("full.f32", 2);
    imcap_extract_report rep;
    REQUIRE_OK(extract_run(g, &full, &rep));
    imcap_extract_report_free(&rep);

    extract_ctx x = ctx("part.f32", 2);
    x.progress = stop_after_5;
    CHECK(extract_run(g, &x, &rep) == IMCAP_E_ARG);
    CHECK(strstr(imcap_last_error(), "interrupted") != NULL);
    CHECK(rep.done == 6); /* stops after the batch that reached 5 */
    imcap_extract_report_free(&rep);
    /* tear the last row, as a kill in the middle of a write would */
    struct stat st;
    REQUIRE(stat(tpath("part.f32"), &st) == 0);
    REQUIRE(truncate(tpath("part.f32"), st.st_size - 7) == 0);
    x.progress = NULL;
    REQUIRE_OK(extract_run(g, &x, &rep));
    CHECK(rep.resumed == 5 && rep.done == NIMG - 5 && rep.dropped == 1);
    imcap_extract_report_free(&rep);
    /* same rows as the uninterrupted run (batches were composed differently,
     * so allow GEMM rounding differences) */
    imcap_embfile *fa, *fb;
    REQUIRE_OK(imcap_embfile_open(tpath("full.f32"), &fa));
    REQUIRE_OK(imcap_embfile_open(tpath("part.f32"), &fb));
    REQUIRE(imcap_embfile_count(fa) == NIMG && imcap_embfile_count(fb) == NIMG);
    for (size_t i = 0; i < NIMG; i++) {
        CHECK_STR(imcap_embfile_name(fa, i), imcap_embfile_name(fb, i));
        for (int k = 0; k < 5; k++)
            CHECK_NEAR(imcap_embfile_row(fa, i)[k], imcap_embfile_row(fb, i)[k], 1e-5);
    }
    imcap_embfile_close(fa);
    imcap_embfile_close(fb);
    /* resuming with another output of the encoder is refused */
    x.output = "logits";
    CHECK(extract_run(g, &x, &rep) == IMCAP_E_MISMATCH);
    imcap_extract_report_free(&rep);
    enc_graph_free(g);
}

TEST(extract_reports_failing_images_and_bad_lists)
{
    enc_graph *g = tiny_encoder();
    make_images();
    FILE *fp = fopen(tpath("img/broken.jpg"), "wb");
    REQUIRE(fp && fwrite("\xff\xd8\xff\xe0 not really", 1, 15, fp) == 15 && fclose(fp) == 0);
    fp = fopen(tpath("list.txt"), "a");
    REQUIRE(fp);
    fprintf(fp, "broken.jpg\nmissing.png\n");
    REQUIRE(fclose(fp) == 0);
    extract_ctx x = ctx("emb.f32", 4);
    imcap_extract_report rep;
    REQUIRE_OK(extract_run(g, &x, &rep));
    CHECK(rep.total == NIMG + 2 && rep.done == NIMG && rep.n_failed == 2);
    if (rep.n_failed == 2) {
        CHECK(strstr(rep.failed[0], "broken.jpg") && strstr(rep.failed[0], "JPEG"));
        CHECK(strstr(rep.failed[1], "missing.png") && strstr(rep.failed[1], "cannot open"));
    }
    imcap_extract_report_free(&rep);
    imcap_embfile *f;
    REQUIRE_OK(imcap_embfile_open(tpath("emb.f32"), &f));
    CHECK(imcap_embfile_count(f) == NIMG && imcap_embfile_find(f, "broken.jpg") < 0);
    imcap_embfile_close(f);

    /* unknown output: the message lists the encoder's outputs */
    x.output = "mixed5";
    CHECK(extract_run(g, &x, &rep) == IMCAP_E_ARG);
    CHECK(strstr(imcap_last_error(), "mixed5") && strstr(imcap_last_error(), "logits"));
    imcap_extract_report_free(&rep);
    /* an image listed twice */
    fp = fopen(tpath("list.txt"), "a");
    REQUIRE(fp);
    fprintf(fp, "im02.bmp\n");
    REQUIRE(fclose(fp) == 0);
    x.output = "embedding";
    CHECK(extract_run(g, &x, &rep) == IMCAP_E_FORMAT);
    CHECK(strstr(imcap_last_error(), "im02.bmp") && strstr(imcap_last_error(), "twice"));
    imcap_extract_report_free(&rep);
    /* a name longer than the default name field */
    char longname[200];
    memset(longname, 'x', 150);
    strcpy(longname + 150, ".bmp");
    char lp[900];
    snprintf(lp, sizeof lp, "%s/img/%s", test_tmpdir(), longname);
    write_bmp(lp, 20, 10, 4);
    fp = fopen(tpath("long.txt"), "w");
    REQUIRE(fp && fprintf(fp, "im01.bmp\n%s\n", longname) > 0 && fclose(fp) == 0);
    char listp[700];
    snprintf(listp, sizeof listp, "%s", tpath("long.txt"));
    x.list = listp;
    x.out_path = tpath("long.f32");
    REQUIRE_OK(extract_run(g, &x, &rep));
    imcap_extract_report_free(&rep);
    REQUIRE_OK(imcap_embfile_open(x.out_path, &f));
    CHECK(imcap_embfile_count(f) == 2 && imcap_embfile_find(f, longname) == 1);
    imcap_embfile_close(f);
    /* a list naming nothing */
    fp = fopen(tpath("empty.txt"), "w");
    REQUIRE(fp && fputs("# nothing\n\n", fp) >= 0 && fclose(fp) == 0);
    char empty[700];
    snprintf(empty, sizeof empty, "%s", tpath("empty.txt"));
    x.list = empty;
    CHECK(extract_run(g, &x, &rep) == IMCAP_E_FORMAT);
    CHECK(strstr(imcap_last_error(), "empty.txt") != NULL);
    imcap_extract_report_free(&rep);
    enc_graph_free(g);
}

/* The public entry point with an encoder file (enc_graph_save/load). */
TEST(extract_public_api_with_an_encoder_file)
{
    enc_graph *g = tiny_encoder();
    make_images();
    char enc[700], out[700], dir[700], list[700];
    snprintf(enc, sizeof enc, "%s/tiny.gguf", test_tmpdir());
    snprintf(out, sizeof out, "%s/api.f32", test_tmpdir());
    snprintf(dir, sizeof dir, "%s/img", test_tmpdir());
    snprintf(list, sizeof list, "%s/list.txt", test_tmpdir());
    REQUIRE_OK(enc_graph_save(g, enc));
    imcap_extract_params p = imcap_extract_default_params();
    p.encoder = enc, p.image_dir = dir, p.list = list, p.out = out, p.batch = 4, p.threads = 1;
    imcap_extract_report rep;
    REQUIRE_OK(imcap_extract(&p, &rep));
    CHECK(rep.done == NIMG && rep.n_failed == 0);
    imcap_extract_report_free(&rep);
    imcap_embfile *f;
    REQUIRE_OK(imcap_embfile_open(out, &f));
    REQUIRE(imcap_embfile_count(f) == NIMG);
    float want[5];
    direct_row(g, 7, want);
    for (int k = 0; k < 5; k++) CHECK_NEAR(imcap_embfile_row(f, 7)[k], want[k], 1e-5 + 1e-5 * fabs(want[k]));
    imcap_embfile_close(f);
    p.encoder = out; /* not an encoder: clear error naming the file */
    CHECK(imcap_extract(&p, &rep) != IMCAP_OK);
    CHECK(strstr(imcap_last_error(), "api.f32") != NULL);
    enc_graph_free(g);
}

/* Two outputs in one pass, one file each; a file that already has some rows
 * gets only the missing ones. */
TEST(extract_several_outputs_in_one_pass)
{
    enc_graph *g = tiny_encoder();
    make_images();
    extract_ctx x = ctx("e.f32", 2);
    x.progress = stop_after_5;
    imcap_extract_report rep;
    CHECK(extract_run(g, &x, &rep) == IMCAP_E_ARG);
    imcap_extract_report_free(&rep);
    char outs[1500];
    snprintf(outs, sizeof outs, "%s/e.f32,%s/l.f32", test_tmpdir(), test_tmpdir());
    x.out_path = outs;
    x.output = "embedding,logits";
    x.progress = NULL;
    REQUIRE_OK(extract_run(g, &x, &rep));
    CHECK(rep.resumed == 0 && rep.done == NIMG);
    imcap_extract_report_free(&rep);
    imcap_embfile *fe, *fl;
    REQUIRE_OK(imcap_embfile_open(tpath("e.f32"), &fe));
    REQUIRE_OK(imcap_embfile_open(tpath("l.f32"), &fl));
    REQUIRE(imcap_embfile_count(fe) == NIMG && imcap_embfile_count(fl) == NIMG);
    CHECK(imcap_embfile_dim(fe) == 5 && imcap_embfile_dim(fl) == 3);
    CHECK(strstr(imcap_embfile_encoder(fl), "logits") != NULL);
    /* logits = dense(embedding), checked against the embedding file's rows */
    const float *wd = NULL;
    for (int i = 0; i < enc_graph_n_params(g); i++)
        if (!strcmp(enc_graph_param(g, i)->name, "dense.w")) wd = enc_graph_param_data(g, i);
    REQUIRE(wd);
    for (int i = 0; i < NIMG; i++) {
        char name[32];
        snprintf(name, sizeof name, "im%02d.bmp", i);
        int64_t re = imcap_embfile_find(fe, name), rl = imcap_embfile_find(fl, name);
        REQUIRE(re >= 0 && rl >= 0);
        for (int o = 0; o < 3; o++) {
            double want = 0;
            for (int c = 0; c < 5; c++) want += imcap_embfile_row(fe, (size_t)re)[c] * wd[c * 3 + o];
            CHECK_NEAR(imcap_embfile_row(fl, (size_t)rl)[o], want, 1e-4);
        }
    }
    imcap_embfile_close(fe);
    imcap_embfile_close(fl);
    x.output = "embedding,logits,probs";
    CHECK(extract_run(g, &x, &rep) == IMCAP_E_ARG);
    CHECK(strstr(imcap_last_error(), "one file per output") != NULL);
    enc_graph_free(g);
}

/* --output grid: the 6x6x5 conv map the embedding pools, as a grid file
 * (float32 and float16); its mean over the positions is the embedding;
 * resuming with another storage type is refused. */
TEST(extract_grid_output_float32_and_float16)
{
    enc_graph *g = tiny_encoder();
    make_images();
    REQUIRE(enc_graph_output(g, "grid") == enc_graph_node(g, 0)->output);
    extract_ctx x = ctx("g32.emb", 4);
    char outs[1500];
    snprintf(outs, sizeof outs, "%s/g32.emb,%s/e32.emb", test_tmpdir(), test_tmpdir());
    x.out_path = outs;
    x.output = "grid,embedding";
    imcap_extract_report rep;
    REQUIRE_OK(extract_run(g, &x, &rep));
    imcap_extract_report_free(&rep);
    extract_ctx x16 = ctx("g16.emb", 3);
    x16.output = "grid";
    x16.dtype = IMCAP_EMB_F16;
    REQUIRE_OK(extract_run(g, &x16, &rep));
    imcap_extract_report_free(&rep);
    imcap_embfile *f32, *f16, *fe;
    REQUIRE_OK(imcap_embfile_open(tpath("g32.emb"), &f32));
    REQUIRE_OK(imcap_embfile_open(tpath("g16.emb"), &f16));
    REQUIRE_OK(imcap_embfile_open(tpath("e32.emb"), &fe));
    imcap_emb_layout l = imcap_embfile_layout(f32), l16 = imcap_embfile_layout(f16), le = imcap_embfile_layout(fe);
    CHECK(l.rows == 6 && l.cols == 6 && l.channels == 5 && l.dtype == IMCAP_EMB_F32);
    CHECK(l16.rows == 6 && l16.cols == 6 && l16.channels == 5 && l16.dtype == IMCAP_EMB_F16);
    CHECK(le.rows == 1 && le.cols == 1 && le.channels == 5 && le.dtype == IMCAP_EMB_F32);
    CHECK(imcap_embfile_dim(f32) == 180 && strstr(imcap_embfile_encoder(f32), " grid ") != NULL);
    REQUIRE(imcap_embfile_count(f32) == NIMG && imcap_embfile_count(f16) == NIMG);
    double worst16 = 0;
    for (size_t i = 0; i < NIMG; i++) {
        const float *gr = imcap_embfile_row(f32, i), *gh = imcap_embfile_row(f16, i), *e = imcap_embfile_row(fe, i);
        CHECK_STR(imcap_embfile_name(f16, i), imcap_embfile_name(f32, i));
        for (int c = 0; c < 5; c++) {
            double s = 0;
            for (int p = 0; p < 36; p++) s += gr[p * 5 + c];
            CHECK_NEAR(s / 36, e[c], 1e-5);
        }
        for (int k = 0; k < 180; k++) {
            double d = fabs(gh[k] - gr[k]);
            if (d > worst16) worst16 = d;
            CHECK(d <= fabs(gr[k]) / 2048 + 1e-7); /* half precision: 11 significant bits */
        }
    }
    CHECK(worst16 > 0); /* really stored as float16 */
    imcap_embfile_close(f32);
    imcap_embfile_close(f16);
    imcap_embfile_close(fe);
    x16.out_path = tpath("g32.emb");
    CHECK(extract_run(g, &x16, &rep) == IMCAP_E_MISMATCH);
    CHECK(strstr(imcap_last_error(), "float32 rows; this run writes 6 x 6 x 5 float16") != NULL);
    imcap_extract_report_free(&rep);
    /* one storage type per output */
    extract_ctx xd = ctx("gd16.emb", 4);
    snprintf(outs, sizeof outs, "%s/ed32.emb,%s/gd16.emb", test_tmpdir(), test_tmpdir());
    xd.out_path = outs;
    xd.output = "embedding,grid";
    xd.dtypes = "f32,f16";
    REQUIRE_OK(extract_run(g, &xd, &rep));
    imcap_extract_report_free(&rep);
    REQUIRE_OK(imcap_embfile_open(tpath("ed32.emb"), &fe));
    REQUIRE_OK(imcap_embfile_open(tpath("gd16.emb"), &f16));
    CHECK(imcap_embfile_layout(fe).dtype == IMCAP_EMB_F32 && imcap_embfile_layout(f16).dtype == IMCAP_EMB_F16);
    CHECK(imcap_embfile_count(fe) == NIMG && imcap_embfile_count(f16) == NIMG);
    imcap_embfile_close(fe);
    imcap_embfile_close(f16);
    xd.dtypes = "f16,f32,f32";
    CHECK(extract_run(g, &xd, &rep) == IMCAP_E_ARG && strstr(imcap_last_error(), "give one, or one per output"));
    imcap_extract_report_free(&rep);
    xd.dtypes = "f32,f8";
    CHECK(extract_run(g, &xd, &rep) == IMCAP_E_ARG && strstr(imcap_last_error(), "'f8'"));
    imcap_extract_report_free(&rep);
    enc_graph_free(g);
}

/* Issue 14, finding 7: after a failed write in the middle of a batch (a full
 * disk), the report counts exactly the rows the file holds. */
TEST(extract_report_after_a_failed_write_counts_the_rows_in_the_file)
{
    enc_graph *g = tiny_encoder();
    make_images();
    for (int fail_at = 1; fail_at <= 8; fail_at++) {
        char name[32];
        snprintf(name, sizeof name, "full%d.f32", fail_at);
        extract_ctx x = ctx(name, 4);
        imcap_extract_report rep;
        imcap_fault_inject(IMCAP_FAULT_WRITE, fail_at + 1); /* the header is the first write */
        imcap_status s = extract_run(g, &x, &rep);
        imcap_fault_inject(IMCAP_FAULT_WRITE, 0);
        CHECK(s == IMCAP_E_IO);
        CHECK(strstr(imcap_last_error(), x.out_path) != NULL);
        imcap_embfile *f;
        REQUIRE_OK(imcap_embfile_open(x.out_path, &f));
        if (rep.resumed + rep.done != imcap_embfile_count(f))
            test_fail_at(__FILE__, __LINE__, "write %d failed: report says %llu stored, the file holds %zu", fail_at,
                         (unsigned long long)(rep.resumed + rep.done), imcap_embfile_count(f));
        CHECK(imcap_embfile_count(f) == (size_t)fail_at - 1);
        imcap_embfile_close(f);
        imcap_extract_report_free(&rep);
    }
    enc_graph_free(g);
}
