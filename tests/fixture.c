#define _GNU_SOURCE
#include "fixture.h"
#include "test.h"

#include <sys/stat.h>

dec_model *fixture_decoder(int n_img, uint64_t seed, imcap_vocab **v)
{
    static const char *const words[] = {"#END#", "#PAD#", "#START#", "#UNK#", "a", "dog", "runs"};
    REQUIRE_OK(imcap_vocab_from_words(words, 7, v));
    dec_config cf = {.n_img = n_img, .n_img1 = 5, .n_hid = 8, .n_emb = 4, .n_out1 = 7, .n_vocab = 7,
                     .pad_id = imcap_vocab_pad(*v)};
    dec_model *m;
    REQUIRE_OK(dec_model_new(&cf, false, &m));
    imcap_rng rng;
    imcap_rng_seed(&rng, seed);
    dec_model_init(m, &rng);
    return m;
}

enc_graph *fixture_encoder(const char *name, uint64_t seed)
{
    imcap_rng rng;
    imcap_rng_seed(&rng, seed);
    enc_graph *g = enc_graph_new(name);
    REQUIRE(g);
    int in = enc_graph_add_input(g, "input", 16, 16, 3);
    float w1[3 * 3 * 3 * 8], b1[8], w2[8 * 6], b2[6];
    for (size_t i = 0; i < sizeof w1 / sizeof *w1; i++) w1[i] = (float)imcap_rng_normal(&rng) * 0.5f;
    for (int i = 0; i < 8; i++) b1[i] = 0.1f;
    for (size_t i = 0; i < sizeof w2 / sizeof *w2; i++) w2[i] = (float)imcap_rng_normal(&rng);
    for (int i = 0; i < 6; i++) b2[i] = 0;
    int s1[4] = {3, 3, 3, 8}, n8 = 8, s2[2] = {8, 6}, n6 = 6;
    enc_node conv = {.op = ENC_CONV2D, .n_inputs = 1, .inputs = {in}, .kh = 3, .kw = 3, .sh = 2, .sw = 2,
                     .pad = ENC_PAD_SAME, .act = ENC_ACT_RELU, .weight = enc_graph_add_param(g, "w1", 4, s1, w1),
                     .bias = enc_graph_add_param(g, "b1", 1, &n8, b1)};
    int v1 = enc_graph_add_node(g, &conv, "conv");
    REQUIRE(v1 > 0);
    enc_node gap = {.op = ENC_GAP, .n_inputs = 1, .inputs = {v1}, .weight = -1, .bias = -1};
    int v2 = enc_graph_add_node(g, &gap, "gap");
    REQUIRE(v2 > 0);
    enc_node den = {.op = ENC_DENSE, .n_inputs = 1, .inputs = {v2}, .weight = enc_graph_add_param(g, "w2", 2, s2, w2),
                    .bias = enc_graph_add_param(g, "b2", 1, &n6, b2)};
    int v3 = enc_graph_add_node(g, &den, "dense");
    REQUIRE(v3 > 0);
    REQUIRE_OK(enc_graph_set_output(g, "embedding", v3));
    enc_preproc pre = {.in_h = 16, .in_w = 16, .scale = {2, 2, 2}, .bias = {-1, -1, -1}};
    enc_graph_set_preproc(g, &pre);
    return g;
}

void fixture_captioner(const char *dir, uint64_t seed, int beam, char *model_path, char *enc_path)
{
    static const char *const words[] = {"#END#", "#PAD#", "#START#", "#UNK#", "a",    "ball", "cat",
                                        "dog",   "grass", "man",     "on",    "red", "runs", "the"};
    const int nw = (int)(sizeof words / sizeof *words);
    char encdir[600];
    snprintf(encdir, sizeof encdir, "%s/encoders", dir);
    mkdir(encdir, 0755);
    snprintf(enc_path, 600, "%s/tiny.gguf", encdir);
    snprintf(model_path, 600, "%s/model.imcap", dir);
    enc_graph *g = fixture_encoder("tiny", seed);
    REQUIRE_OK(enc_graph_save(g, enc_path));
    imcap_vocab *v;
    REQUIRE_OK(imcap_vocab_from_words(words, (size_t)nw, &v));
    dec_config cf = {.n_img = 6, .n_img1 = 5, .n_hid = 8, .n_emb = 4, .n_out1 = 7, .n_vocab = nw,
                     .pad_id = imcap_vocab_pad(v)};
    dec_model *m;
    REQUIRE_OK(dec_model_new(&cf, false, &m));
    imcap_rng rng;
    imcap_rng_seed(&rng, seed + 1);
    dec_model_init(m, &rng);
    for (size_t i = 0; i < m->n_params; i++) m->params[i] += (float)(0.7 * imcap_rng_normal(&rng));
    captioner_spec s = {.dec = m, .vocab = v, .n_encoders = 1, .encoders = {g}, .encoder_files = {enc_path},
                        .encoder_outputs = {"embedding"}, .gen = imcap_gen_default_params(), .source = "test fixture"};
    s.gen.beam = beam;
    s.gen.max_len = 12;
    REQUIRE_OK(captioner_write(&s, model_path));
    dec_model_free(m);
    imcap_vocab_free(v);
    enc_graph_free(g);
}

void fixture_poke_tensor(const char *path, const char *tensor, size_t at, const void *bytes, size_t n)
{
    gguf_file *f;
    REQUIRE_OK(gguf_open(path, &f));
    const gguf_tensor *t = gguf_find_tensor(f, tensor);
    REQUIRE(t && t->n_bytes >= 32 && at + n <= t->n_bytes);
    unsigned char head[32];
    memcpy(head, t->data, 32);
    gguf_close(f);
    char *d;
    size_t len;
    REQUIRE_OK(imcap_read_file(path, (size_t)1 << 30, &d, &len));
    unsigned char *p = memmem(d, len, head, sizeof head);
    REQUIRE(p);
    memcpy(p + at, bytes, n);
    FILE *fp = fopen(path, "wb");
    REQUIRE(fp && fwrite(d, 1, len, fp) == len && fclose(fp) == 0);
    free(d);
}

int fixture_photos(const char *const *names, int count, int max_n, const enc_preproc *pp, float *x,
                   const char **used)
{
    const size_t px = (size_t)pp->in_h * pp->in_w * 3;
    uint8_t *u8 = malloc(px);
    REQUIRE(u8);
    int n = 0;
    for (int i = 0; i < count && n < max_n; i++) {
        char path[256];
        struct stat sb;
        snprintf(path, sizeof path, "data/images/%s", names[i]);
        if (stat(path, &sb) != 0) continue;
        imcap_image img;
        REQUIRE_OK(imcap_image_load(path, &img));
        REQUIRE_OK(imcap_image_prepare(&img, pp->in_h, pp->in_w, u8));
        imcap_image_to_float(u8, (size_t)pp->in_h * pp->in_w, pp->scale, pp->bias, x + (size_t)n * px);
        imcap_image_free(&img);
        if (used) used[n] = names[i];
        n++;
    }
    free(u8);
    return n;
}
