/*
 * make_seeds.c - writes the fuzzers' model-file seeds into DIR (argument):
 * DIR/encoders/tiny.gguf + DIR/model.imcap (the test fixture's tiny encoder
 * and captioner), DIR/dec.gguf (a decoder checkpoint), DIR/train/ (a small
 * dataset: embeddings, captions, splits) and DIR/train/ckpt.gguf (a training
 * checkpoint of one short run on it). Run by scripts/fuzz.sh; the files
 * follow the current formats, so seeds never go stale.
 */
#define _POSIX_C_SOURCE 200809L
#include "fixture.h"
#include "test.h"

#include <stdarg.h>
#include <sys/stat.h>

void test_fail_at(const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "make_seeds: %s:%d: ", file, line);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(1);
}

static const char *at(const char *dir, const char *name)
{
    static char p[8][1024];
    static int k;
    char *s = p[k++ % 8];
    snprintf(s, sizeof p[0], "%s/%s", dir, name);
    return s;
}

static int stop_at_first_step(void *user, const imcap_train_report *r)
{
    (void)user;
    return r->step >= 1;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: make_seeds DIR\n");
        return 2;
    }
    const char *dir = argv[1];
    mkdir(dir, 0755);
    char model[600], enc[600];
    fixture_captioner(dir, 1, 2, model, enc);

    imcap_vocab *v;
    dec_model *m = fixture_decoder(6, 2, &v);
    REQUIRE_OK(dec_save(at(dir, "dec.gguf"), m, v));
    dec_model_free(m);
    imcap_vocab_free(v);

    char tdir[1024];
    snprintf(tdir, sizeof tdir, "%s/train", dir);
    mkdir(tdir, 0755);
    static const char *const words[] = {"a", "dog", "runs", "on", "the", "grass", "cat", "red"};
    FILE *csv = fopen(at(tdir, "captions.csv"), "w"), *tr = fopen(at(tdir, "train.txt"), "w"),
         *va = fopen(at(tdir, "val.txt"), "w");
    REQUIRE(csv && tr && va);
    fprintf(csv, "image,caption\n");
    char names[8][16];
    const char *np[8];
    float rows[8 * 4];
    for (int i = 0; i < 8; i++) {
        snprintf(names[i], sizeof names[i], "i%d.jpg", i);
        np[i] = names[i];
        fprintf(i < 6 ? tr : va, "%s\n", names[i]);
        for (int k = 0; k < 2; k++)
            fprintf(csv, "%s,%s %s %s .\n", names[i], words[i % 8], words[(i + k + 1) % 8], words[(i * 3 + k) % 8]);
        for (int d = 0; d < 4; d++) rows[i * 4 + d] = (float)((i * 7 + d * 3) % 11) / 5.0f - 1.0f;
    }
    REQUIRE(fclose(csv) == 0 && fclose(tr) == 0 && fclose(va) == 0);
    REQUIRE_OK(imcap_embfile_write(at(tdir, "emb.f32"), 4, "seed", 8, np, rows));
    imcap_train_params p = imcap_train_default_params();
    p.embeddings = at(tdir, "emb.f32");
    p.captions = at(tdir, "captions.csv");
    p.train_split = at(tdir, "train.txt");
    p.val_split = at(tdir, "val.txt");
    p.checkpoint = at(tdir, "ckpt.gguf");
    p.epochs = 1, p.batches_per_epoch = 2, p.batch_size = 2, p.max_len = 8, p.min_count = 1;
    p.val_batches = 1, p.checkpoint_every = 1;
    p.n_img1 = 3, p.n_hid = 4, p.n_emb = 3, p.n_out1 = 3;
    p.report = stop_at_first_step; /* a checkpoint in the middle of the run, as resume meets it */
    imcap_status ts = imcap_train(&p);
    if (ts != IMCAP_E_ARG) test_fail_at(__FILE__, __LINE__, "training: status %d: %s", (int)ts, imcap_last_error());
    return 0;
}
