/* fuzz_checkpoint.c - the decoder checkpoint / best model (dec_load) and,
 * for a training checkpoint, `train --resume` from it on the seed
 * generator's small dataset (build-fuzz/seeds/train/), stopped after the
 * first report. */
#include "fuzz.h"
#include "decoder.h"

static int stop(void *user, const imcap_train_report *r)
{
    (void)user, (void)r;
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fuzz_file("c.gguf", data, size);
    dec_model *m;
    imcap_vocab *v;
    if (dec_load(path, &m, &v) != IMCAP_OK) return 0;
    dec_model_free(m);
    imcap_vocab_free(v);
    imcap_train_params p = imcap_train_default_params();
    p.embeddings = "build-fuzz/seeds/train/emb.f32";
    p.captions = "build-fuzz/seeds/train/captions.csv";
    p.train_split = "build-fuzz/seeds/train/train.txt";
    p.val_split = "build-fuzz/seeds/train/val.txt";
    p.checkpoint = path;
    p.resume = 1;
    p.report = stop;
    (void)imcap_train(&p);
    return 0;
}
