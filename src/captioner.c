/*
 * captioner.c - the captioning model file and the end-to-end API:
 * image -> preprocessing -> encoder graph -> embedding -> decoder
 * generation -> words.
 *
 * The captioner file is a GGUF container (docs/FORMATS.md, "Captioner
 * file"). Everything in it is checked on load; the encoder file it names is
 * loaded too and must carry the recorded checksum, produce an output of the
 * decoder's input size and use the same preprocessing. After loading, the
 * captioner is immutable, so caption calls on it may run concurrently
 * (enc_graph_run and dec_step only read the models; each call has its own
 * buffers).
 */
#define _POSIX_C_SOURCE 200809L
#include "captioner.h"
#include "generate.h"
#include "gguf.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define ARCH "imcap.captioner"
#define K_ARCH "general.architecture"
#define K_VERSION "imcap.captioner.version"
#define K_SOURCE "imcap.captioner.source"
#define K_CHECKPOINT "imcap.captioner.checkpoint"
#define K_ENC_NAME "imcap.captioner.encoder.name"
#define K_ENC_FILE "imcap.captioner.encoder.file"
#define K_ENC_OUTPUT "imcap.captioner.encoder.output"
#define K_ENC_CHECKSUM "imcap.captioner.encoder.checksum"
#define K_PRE_SIZE "imcap.captioner.preproc.size"
#define K_PRE_SCALE "imcap.captioner.preproc.scale"
#define K_PRE_BIAS "imcap.captioner.preproc.bias"
#define K_VOCAB "imcap.captioner.vocab"
#define K_GEN_BEAM "imcap.captioner.gen.beam"
#define K_GEN_MAXLEN "imcap.captioner.gen.max_len"
#define K_GEN_ALPHA "imcap.captioner.gen.length_alpha"
#define TENSOR_PREFIX "decoder."

static const struct { const char *key; size_t off; } dec_keys[] = {
    {"imcap.captioner.decoder.n_img", offsetof(dec_config, n_img)},
    {"imcap.captioner.decoder.n_img1", offsetof(dec_config, n_img1)},
    {"imcap.captioner.decoder.n_hid", offsetof(dec_config, n_hid)},
    {"imcap.captioner.decoder.n_emb", offsetof(dec_config, n_emb)},
    {"imcap.captioner.decoder.n_out1", offsetof(dec_config, n_out1)},
    {"imcap.captioner.decoder.n_vocab", offsetof(dec_config, n_vocab)},
    {"imcap.captioner.decoder.pad_id", offsetof(dec_config, pad_id)},
};
enum { N_DEC_KEYS = sizeof dec_keys / sizeof dec_keys[0] };

struct imcap_captioner {
    char *model_path, *encoder_path, *encoder_name, *checkpoint;
    dec_model *dec;
    imcap_vocab *vocab;
    enc_graph *enc;
    int enc_out;  /* value id of the embedding output */
    int emb_size; /* = dec->cfg.n_img */
    enc_preproc pre;
    gen_special sp;
    imcap_gen_params gen;
};

static const char *base_name(const char *p)
{
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

/* ------------------------------------------------------------------ write */

imcap_status captioner_write(const captioner_spec *s, const char *path)
{
    const dec_config *cf = &s->dec->cfg;
    const enc_graph *g = s->encoder;
    imcap_status st = dec_config_check(cf);
    if (st) return st;
    if ((st = imcap_gen_params_check(&s->gen))) return st;
    if ((size_t)cf->n_vocab != imcap_vocab_size(s->vocab))
        return imcap_fail(IMCAP_E_MISMATCH, "%s: the decoder has %d output tokens but the vocabulary %zu words",
                          path, cf->n_vocab, imcap_vocab_size(s->vocab));
    if (cf->pad_id != imcap_vocab_pad(s->vocab))
        return imcap_fail(IMCAP_E_MISMATCH, "%s: the decoder's PAD id %d is not the vocabulary's %d", path,
                          cf->pad_id, (int)imcap_vocab_pad(s->vocab));
    int out_id = enc_graph_output(g, s->encoder_output);
    if (out_id < 0)
        return imcap_fail(IMCAP_E_MISMATCH, "%s: encoder '%s' has no output '%s'", path, enc_graph_name(g),
                          s->encoder_output);
    const enc_value *v = enc_graph_value(g, out_id);
    if ((int64_t)v->h * v->w * v->c != cf->n_img)
        return imcap_fail(IMCAP_E_MISMATCH,
                          "%s: encoder output '%s' has %dx%dx%d values but the decoder reads %d-float embeddings",
                          path, s->encoder_output, v->h, v->w, v->c, cf->n_img);
    const enc_preproc *pre = enc_graph_preproc(g);
    if (!pre) return imcap_fail(IMCAP_E_FORMAT, "%s: encoder '%s' has no preprocessing settings", path,
                                enc_graph_name(g));

    gguf_writer *w = gguf_writer_new();
    if (!w) return imcap_fail(IMCAP_E_NOMEM, "%s: out of memory", path);
    int32_t size[2] = {pre->in_h, pre->in_w};
    const char *file = base_name(s->encoder_file);
    if ((st = gguf_set_str(w, K_ARCH, ARCH)) || (st = gguf_set_u32(w, K_VERSION, CAPTIONER_VERSION)) ||
        (st = gguf_set_str(w, K_SOURCE, s->source ? s->source : "")) ||
        (st = gguf_set_str(w, K_CHECKPOINT, s->checkpoint ? s->checkpoint : "")) ||
        (st = gguf_set_str(w, K_ENC_NAME, enc_graph_name(g))) || (st = gguf_set_str(w, K_ENC_FILE, file)) ||
        (st = gguf_set_str(w, K_ENC_OUTPUT, s->encoder_output)) ||
        (st = gguf_set_u32(w, K_ENC_CHECKSUM, enc_graph_checksum(g))) ||
        (st = gguf_set_arr_i32(w, K_PRE_SIZE, size, 2)) || (st = gguf_set_arr_f32(w, K_PRE_SCALE, pre->scale, 3)) ||
        (st = gguf_set_arr_f32(w, K_PRE_BIAS, pre->bias, 3)) ||
        (st = gguf_set_arr_str(w, K_VOCAB, imcap_vocab_words(s->vocab), imcap_vocab_size(s->vocab))) ||
        (st = gguf_set_u32(w, K_GEN_BEAM, (uint32_t)s->gen.beam)) ||
        (st = gguf_set_u32(w, K_GEN_MAXLEN, (uint32_t)s->gen.max_len)) ||
        (st = gguf_set_f32(w, K_GEN_ALPHA, s->gen.length_alpha)))
        goto out;
    for (int i = 0; i < N_DEC_KEYS; i++) {
        int val = *(const int *)((const char *)cf + dec_keys[i].off);
        if ((st = gguf_set_u32(w, dec_keys[i].key, (uint32_t)val))) goto out;
    }
    char names[DEC_N_TENSORS][96];
    for (int i = 0; i < DEC_N_TENSORS; i++) {
        dec_tensor_info ti = dec_tensor_at(cf, i);
        snprintf(names[i], sizeof names[i], TENSOR_PREFIX "%s", ti.name);
        if ((st = gguf_add_tensor(w, names[i], GGUF_T_F32, ti.n_dims, ti.shape, s->dec->params + ti.offset)))
            goto out;
    }
    st = gguf_write(w, path);
out:
    gguf_writer_free(w);
    return st;
}

/* ------------------------------------------------------------------- load */

void imcap_captioner_free(imcap_captioner *c)
{
    if (!c) return;
    free(c->model_path);
    free(c->encoder_path);
    free(c->encoder_name);
    free(c->checkpoint);
    dec_model_free(c->dec);
    imcap_vocab_free(c->vocab);
    enc_graph_free(c->enc);
    free(c);
}

static bool file_exists(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

/* The encoder file next to the model: <dir>/encoders/F, <dir>/F,
 * models/encoders/F. */
static imcap_status find_encoder(const char *model_path, const char *file, char **out)
{
    *out = NULL;
    if (!file[0] || strchr(file, '/') || !strcmp(file, "..") || !strcmp(file, "."))
        return imcap_fail(IMCAP_E_FORMAT, "%s: bad encoder file name '%s' in the model", model_path, file);
    const char *slash = strrchr(model_path, '/');
    int dlen = slash ? (int)(slash - model_path) : 1;
    const char *dir = slash ? model_path : ".";
    char cand[3][4096];
    snprintf(cand[0], sizeof cand[0], "%.*s/encoders/%s", dlen, dir, file);
    snprintf(cand[1], sizeof cand[1], "%.*s/%s", dlen, dir, file);
    snprintf(cand[2], sizeof cand[2], "models/encoders/%s", file);
    for (int i = 0; i < 3; i++)
        if (file_exists(cand[i])) {
            *out = imcap_strdup(cand[i]);
            return *out ? IMCAP_OK : IMCAP_E_NOMEM;
        }
    return imcap_fail(IMCAP_E_IO,
                      "%s: the encoder file '%s' it needs was not found (looked in %s, %s, %s); prepare the "
                      "encoders (setup.sh) or name the file explicitly",
                      model_path, file, cand[0], cand[1], cand[2]);
}

static imcap_status load_decoder(const gguf_file *f, const char *path, dec_model **out)
{
    dec_config cf;
    memset(&cf, 0, sizeof cf);
    imcap_status st;
    for (int i = 0; i < N_DEC_KEYS; i++) {
        uint32_t v;
        if ((st = gguf_get_u32(f, dec_keys[i].key, &v))) return st;
        if (v > (1u << 24))
            return imcap_fail(IMCAP_E_FORMAT, "%s: %s = %u is out of range", path, dec_keys[i].key, v);
        *(int *)((char *)&cf + dec_keys[i].off) = (int)v;
    }
    if ((st = dec_config_check(&cf))) return imcap_fail_prefix(st, "%s", path);
    dec_model *m;
    if ((st = dec_model_new(&cf, false, &m))) return st;
    for (int i = 0; i < DEC_N_TENSORS; i++) {
        dec_tensor_info ti = dec_tensor_at(&cf, i);
        char name[96];
        snprintf(name, sizeof name, TENSOR_PREFIX "%s", ti.name);
        const gguf_tensor *t;
        if (gguf_expect_tensor(f, name, GGUF_T_F32, ti.n_dims, ti.shape, &t)) {
            dec_model_free(m);
            return IMCAP_E_FORMAT; /* the file disagrees with itself; message names file and tensor */
        }
        const float *src = t->data;
        for (size_t k = 0; k < ti.size; k++)
            if (!isfinite(src[k])) {
                dec_model_free(m);
                return imcap_fail(IMCAP_E_FORMAT, "%s: tensor %s has a non-finite value at index %zu", path, name,
                                  k);
            }
        memcpy(m->params + ti.offset, src, ti.size * sizeof(float));
    }
    *out = m;
    return IMCAP_OK;
}

static imcap_status check_header(const gguf_file *f, const char *path)
{
    const char *arch = NULL;
    if (!gguf_has_key(f, K_ARCH) || gguf_get_str(f, K_ARCH, &arch) || strcmp(arch, ARCH) != 0)
        return imcap_fail(IMCAP_E_FORMAT, "%s: not an imcap captioner model (architecture '%s', expected '%s')",
                          path, arch ? arch : "none", ARCH);
    uint32_t ver;
    imcap_status st = gguf_get_u32(f, K_VERSION, &ver);
    if (st) return st;
    if (ver != CAPTIONER_VERSION)
        return imcap_fail(IMCAP_E_UNSUPPORTED,
                          "%s: captioner format version %u; this imcap reads version %d (%s)", path, ver,
                          CAPTIONER_VERSION,
                          ver > CAPTIONER_VERSION ? "made by a newer imcap" : "re-export the model");
    return IMCAP_OK;
}

imcap_status imcap_captioner_load(const char *model_path, const char *encoder_path, imcap_captioner **out)
{
    *out = NULL;
    if (!model_path) return imcap_fail(IMCAP_E_ARG, "captioner: no model file given");
    imcap_captioner *c = calloc(1, sizeof *c);
    if (!c) return imcap_fail(IMCAP_E_NOMEM, "%s: out of memory", model_path);
    gguf_file *f = NULL;
    imcap_status st;
    if (!(c->model_path = imcap_strdup(model_path))) {
        st = IMCAP_E_NOMEM;
        goto fail;
    }
    if ((st = gguf_open(model_path, &f)) || (st = check_header(f, model_path))) goto fail;
    if ((st = load_decoder(f, model_path, &c->dec))) goto fail;

    /* Vocabulary. */
    const char *const *words;
    size_t n_words;
    if ((st = gguf_get_arr_str(f, K_VOCAB, &words, &n_words))) goto fail;
    if ((st = imcap_vocab_from_words(words, n_words, &c->vocab))) {
        imcap_fail_prefix(st, "%s: vocabulary", model_path);
        goto fail;
    }
    if ((int64_t)n_words != c->dec->cfg.n_vocab || c->dec->cfg.pad_id != imcap_vocab_pad(c->vocab)) {
        st = imcap_fail(IMCAP_E_FORMAT,
                        "%s: the vocabulary (%zu words, PAD %d) does not fit the decoder (%d outputs, PAD %d)",
                        model_path, n_words, (int)imcap_vocab_pad(c->vocab), c->dec->cfg.n_vocab,
                        c->dec->cfg.pad_id);
        goto fail;
    }
    c->sp.start_id = imcap_vocab_start(c->vocab);
    c->sp.end_id = imcap_vocab_end(c->vocab);
    c->sp.n_masked = 3;
    c->sp.masked[0] = imcap_vocab_pad(c->vocab);
    c->sp.masked[1] = imcap_vocab_start(c->vocab);
    c->sp.masked[2] = imcap_vocab_unk(c->vocab);

    /* Generation defaults. */
    uint32_t beam, max_len;
    float alpha;
    if ((st = gguf_get_u32(f, K_GEN_BEAM, &beam)) || (st = gguf_get_u32(f, K_GEN_MAXLEN, &max_len)) ||
        (st = gguf_get_f32(f, K_GEN_ALPHA, &alpha)))
        goto fail;
    c->gen = imcap_gen_default_params();
    c->gen.beam = beam > GEN_MAX_BEAM ? 0 : (int)beam;
    c->gen.max_len = max_len > GEN_MAX_LEN ? 0 : (int)max_len;
    c->gen.length_alpha = alpha;
    if ((st = imcap_gen_params_check(&c->gen))) {
        imcap_fail_prefix(st, "%s: stored generation settings", model_path);
        goto fail;
    }

    /* Preprocessing. */
    const int32_t *size;
    const float *scale, *bias;
    size_t n_size, n_scale, n_bias;
    if ((st = gguf_get_arr_i32(f, K_PRE_SIZE, &size, &n_size)) ||
        (st = gguf_get_arr_f32(f, K_PRE_SCALE, &scale, &n_scale)) ||
        (st = gguf_get_arr_f32(f, K_PRE_BIAS, &bias, &n_bias)))
        goto fail;
    if (n_size != 2 || n_scale != 3 || n_bias != 3 || size[0] < 1 || size[0] > 4096 || size[1] < 1 ||
        size[1] > 4096) {
        st = imcap_fail(IMCAP_E_FORMAT, "%s: bad preprocessing settings (%s, %s, %s)", model_path, K_PRE_SIZE,
                        K_PRE_SCALE, K_PRE_BIAS);
        goto fail;
    }
    c->pre.in_h = size[0];
    c->pre.in_w = size[1];
    memcpy(c->pre.scale, scale, sizeof c->pre.scale);
    memcpy(c->pre.bias, bias, sizeof c->pre.bias);

    /* The encoder. */
    const char *enc_name, *enc_file, *enc_output;
    uint32_t enc_sum;
    if ((st = gguf_get_str(f, K_ENC_NAME, &enc_name)) || (st = gguf_get_str(f, K_ENC_FILE, &enc_file)) ||
        (st = gguf_get_str(f, K_ENC_OUTPUT, &enc_output)) || (st = gguf_get_u32(f, K_ENC_CHECKSUM, &enc_sum)))
        goto fail;
    const char *ckpt;
    if ((st = gguf_get_str(f, K_CHECKPOINT, &ckpt))) goto fail;
    if (!(c->checkpoint = imcap_strdup(ckpt)) || !(c->encoder_name = imcap_strdup(enc_name))) {
        st = IMCAP_E_NOMEM;
        goto fail;
    }
    if (encoder_path) {
        if (!(c->encoder_path = imcap_strdup(encoder_path))) {
            st = IMCAP_E_NOMEM;
            goto fail;
        }
    } else if ((st = find_encoder(model_path, enc_file, &c->encoder_path))) {
        goto fail;
    }
    if ((st = enc_graph_load(c->encoder_path, &c->enc))) goto fail;
    uint32_t got_sum = enc_graph_checksum(c->enc);
    if (got_sum != enc_sum) {
        st = imcap_fail(IMCAP_E_MISMATCH,
                        "%s: encoder '%s' (checksum %08x) is not the one the model %s was trained with: "
                        "'%s', checksum %08x",
                        c->encoder_path, enc_graph_name(c->enc), got_sum, model_path, enc_name, enc_sum);
        goto fail;
    }
    c->enc_out = enc_graph_output(c->enc, enc_output);
    if (c->enc_out < 0) {
        st = imcap_fail(IMCAP_E_MISMATCH, "%s: the encoder has no output '%s' (needed by %s)", c->encoder_path,
                        enc_output, model_path);
        goto fail;
    }
    const enc_value *ov = enc_graph_value(c->enc, c->enc_out);
    c->emb_size = c->dec->cfg.n_img;
    if ((int64_t)ov->h * ov->w * ov->c != c->emb_size) {
        st = imcap_fail(IMCAP_E_MISMATCH, "%s: output '%s' has %dx%dx%d values, the decoder of %s reads %d",
                        c->encoder_path, enc_output, ov->h, ov->w, ov->c, model_path, c->emb_size);
        goto fail;
    }
    const enc_preproc *ep = enc_graph_preproc(c->enc);
    if (!ep || ep->in_h != c->pre.in_h || ep->in_w != c->pre.in_w ||
        memcmp(ep->scale, c->pre.scale, sizeof c->pre.scale) || memcmp(ep->bias, c->pre.bias, sizeof c->pre.bias)) {
        st = imcap_fail(IMCAP_E_MISMATCH,
                        "%s: the encoder's preprocessing differs from the one recorded in %s (input %dx%d)",
                        c->encoder_path, model_path, c->pre.in_h, c->pre.in_w);
        goto fail;
    }
    gguf_close(f);
    *out = c;
    return IMCAP_OK;
fail:
    gguf_close(f);
    imcap_captioner_free(c);
    return st;
}

imcap_gen_params imcap_captioner_gen_params(const imcap_captioner *c) { return c->gen; }
const char *imcap_captioner_encoder_name(const imcap_captioner *c) { return c->encoder_name; }
const char *imcap_captioner_encoder_path(const imcap_captioner *c) { return c->encoder_path; }
const char *imcap_captioner_checkpoint(const imcap_captioner *c) { return c->checkpoint; }
int imcap_captioner_vocab_size(const imcap_captioner *c) { return c->dec->cfg.n_vocab; }
int imcap_captioner_embedding_size(const imcap_captioner *c) { return c->emb_size; }

/* ---------------------------------------------------------------- caption */

imcap_status imcap_captioner_embed(const imcap_captioner *c, const imcap_image *img, float *embedding)
{
    const size_t np = (size_t)c->pre.in_h * c->pre.in_w;
    uint8_t *px = imcap_alloc(np, 3);
    float *x = imcap_alloc(np * 3, sizeof(float));
    imcap_status st = IMCAP_E_NOMEM;
    if (px && x && !(st = imcap_image_prepare(img, c->pre.in_h, c->pre.in_w, px))) {
        imcap_image_to_float(px, np, c->pre.scale, c->pre.bias, x);
        float *outs[1] = {embedding};
        st = enc_graph_run(c->enc, x, 1, &c->enc_out, 1, outs);
    }
    imcap_free(px);
    imcap_free(x);
    return st;
}

void imcap_caption_free(imcap_caption *cap)
{
    if (!cap) return;
    for (int i = 0; i < cap->n_alt; i++) free(cap->alt[i].text);
    free(cap->alt);
    free(cap);
}

static imcap_status words_to_text(const imcap_captioner *c, const gen_hyp *h, char **out)
{
    size_t len = 1;
    for (int i = 0; i < h->n_words; i++) len += strlen(imcap_vocab_word(c->vocab, h->words[i])) + 1;
    char *s = malloc(len), *p = s;
    if (!s) return imcap_fail(IMCAP_E_NOMEM, "out of memory for a caption");
    for (int i = 0; i < h->n_words; i++) {
        const char *w = imcap_vocab_word(c->vocab, h->words[i]);
        size_t n = strlen(w);
        if (i) *p++ = ' ';
        memcpy(p, w, n);
        p += n;
    }
    *p = 0;
    *out = s;
    return IMCAP_OK;
}

static imcap_status caption_embedded(const imcap_captioner *c, const imcap_image *img, const imcap_gen_params *p,
                                     imcap_caption *cap)
{
    const imcap_gen_params *gp = p ? p : &c->gen;
    imcap_status st = imcap_gen_params_check(gp);
    if (st) return st;
    float *emb = imcap_alloc((size_t)c->emb_size, sizeof(float));
    gen_hyp *hyp = calloc((size_t)gp->n_best, sizeof *hyp);
    if (!emb || !hyp) {
        st = imcap_fail(IMCAP_E_NOMEM, "out of memory captioning an image");
        goto out;
    }
    double t0 = imcap_now();
    if ((st = imcap_captioner_embed(c, img, emb))) goto out;
    double t1 = imcap_now();
    int n = 0;
    if ((st = gen_caption(c->dec, emb, &c->sp, gp, hyp, &n))) goto out;
    cap->alt = calloc((size_t)(n > 0 ? n : 1), sizeof *cap->alt);
    if (!cap->alt) {
        st = imcap_fail(IMCAP_E_NOMEM, "out of memory captioning an image");
        goto out;
    }
    for (int i = 0; i < n; i++) {
        if ((st = words_to_text(c, &hyp[i], &cap->alt[i].text))) goto out;
        cap->n_alt = i + 1;
        cap->alt[i].logprob = hyp[i].logprob;
        cap->alt[i].score = hyp[i].score;
        cap->alt[i].n_words = hyp[i].n_words;
        cap->alt[i].ended = hyp[i].ended;
    }
    cap->t_encode = t1 - t0;
    cap->t_generate = imcap_now() - t1;
out:
    imcap_free(emb);
    free(hyp);
    return st;
}

imcap_status imcap_caption_image(const imcap_captioner *c, const imcap_image *img, const imcap_gen_params *p,
                                 imcap_caption **out)
{
    *out = NULL;
    imcap_caption *cap = calloc(1, sizeof *cap);
    if (!cap) return imcap_fail(IMCAP_E_NOMEM, "out of memory captioning an image");
    imcap_status st = caption_embedded(c, img, p, cap);
    if (st) {
        imcap_caption_free(cap);
        return st;
    }
    *out = cap;
    return IMCAP_OK;
}

imcap_status imcap_caption_memory(const imcap_captioner *c, const void *data, size_t len, const char *name,
                                  const imcap_gen_params *p, imcap_caption **out)
{
    *out = NULL;
    double t0 = imcap_now();
    imcap_image img;
    imcap_status st = imcap_image_decode(data, len, name ? name : "(memory)", &img);
    if (st) return st;
    double t1 = imcap_now();
    st = imcap_caption_image(c, &img, p, out);
    imcap_image_free(&img);
    if (st) return imcap_fail_prefix(st, "%s", name ? name : "(memory)");
    (*out)->t_decode = t1 - t0;
    return IMCAP_OK;
}

imcap_status imcap_caption_file(const imcap_captioner *c, const char *path, const imcap_gen_params *p,
                                imcap_caption **out)
{
    *out = NULL;
    double t0 = imcap_now();
    imcap_image img;
    imcap_status st = imcap_image_load(path, &img);
    if (st) return st;
    double t1 = imcap_now();
    st = imcap_caption_image(c, &img, p, out);
    imcap_image_free(&img);
    if (st) return imcap_fail_prefix(st, "%s", path);
    (*out)->t_decode = t1 - t0;
    return IMCAP_OK;
}

/* ----------------------------------------------------------------- export */

imcap_status imcap_captioner_export(const char *checkpoint, const char *encoder_path, const char *output,
                                    const char *embeddings, const imcap_gen_params *gen, const char *out_path)
{
    if (!checkpoint || !encoder_path || !out_path)
        return imcap_fail(IMCAP_E_ARG, "export: a checkpoint, an encoder and an output path are needed");
    if (!output) output = "embedding";
    dec_model *m = NULL;
    imcap_vocab *v = NULL;
    enc_graph *g = NULL;
    gguf_file *f = NULL;
    imcap_embfile *ef = NULL;
    imcap_status st;
    if ((st = dec_load(checkpoint, &m, &v)) || (st = enc_graph_load(encoder_path, &g))) goto out;
    char id[160];
    snprintf(id, sizeof id, "%s %s %08x", enc_graph_name(g), output, (unsigned)enc_graph_checksum(g));
    if (embeddings) {
        if ((st = imcap_embfile_open(embeddings, &ef))) goto out;
        const char *eid = imcap_embfile_encoder(ef);
        if (strcmp(eid, id) != 0) {
            st = imcap_fail(IMCAP_E_MISMATCH,
                            "%s: the embeddings were made by encoder '%s', not by %s ('%s'): the decoder was "
                            "trained on another encoder's features",
                            embeddings, eid[0] ? eid : "(unknown)", encoder_path, id);
            goto out;
        }
        if ((int64_t)imcap_embfile_dim(ef) != m->cfg.n_img) {
            st = imcap_fail(IMCAP_E_MISMATCH, "%s: %zu-float embeddings, but the decoder %s reads %d", embeddings,
                            imcap_embfile_dim(ef), checkpoint, m->cfg.n_img);
            goto out;
        }
    }
    char source[1200];
    uint64_t step = 0;
    if (!gguf_open(checkpoint, &f) && gguf_has_key(f, "imcap.train.step") &&
        !gguf_get_u64(f, "imcap.train.step", &step))
        snprintf(source, sizeof source, "imcap export of %s (training step %llu) with %s", checkpoint,
                 (unsigned long long)step, id);
    else
        snprintf(source, sizeof source, "imcap export of %s with %s", checkpoint, id);
    imcap_clear_error();
    captioner_spec s = {.dec = m, .vocab = v, .encoder = g, .encoder_file = encoder_path,
                        .encoder_output = output, .gen = gen ? *gen : imcap_gen_default_params(),
                        .source = source, .checkpoint = checkpoint};
    s.gen.n_best = 1;
    s.gen.temperature = 0.0f;
    st = captioner_write(&s, out_path);
out:
    gguf_close(f);
    imcap_embfile_close(ef);
    dec_model_free(m);
    imcap_vocab_free(v);
    enc_graph_free(g);
    return st;
}
