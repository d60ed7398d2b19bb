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
#include "qgraph.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define ARCH "imcap.captioner"
#define K_ARCH "general.architecture"
#define K_VERSION "imcap.captioner.version"
#define K_SOURCE "imcap.captioner.source"
#define K_CHECKPOINT "imcap.captioner.checkpoint"
#define K_ENC_COUNT "imcap.captioner.encoder.count"
/* Per encoder k: "imcap.captioner.encoder.<k>.<field>". */
#define K_ENC_FMT "imcap.captioner.encoder.%d.%s"
#define K_VOCAB "imcap.captioner.vocab"
#define K_GEN_BEAM "imcap.captioner.gen.beam"
#define K_GEN_MAXLEN "imcap.captioner.gen.max_len"
#define K_GEN_ALPHA "imcap.captioner.gen.length_alpha"
#define K_GEN_BLOCK "imcap.captioner.gen.block_ngram" /* absent in older files: 0 */
#define TENSOR_PREFIX "decoder."

#define DEC_KEY_PREFIX "imcap.captioner.decoder."
#define K_DEC_PAD DEC_KEY_PREFIX "pad_id"


typedef struct cap_encoder {
    char *name, *path;
    enc_graph *g;    /* owned unless owner >= 0 */
    int owner;       /* index of an earlier part that loaded the same file (-1: none) */
    int out_id;      /* value id of the output used */
    int size;        /* its floats: this encoder's slice of the embedding */
    enc_preproc pre;
} cap_encoder;

struct imcap_captioner {
    char *model_path, *checkpoint;
    char *encoder_names, *encoder_paths; /* joined with '+' / ',' */
    dec_model *dec;
    imcap_vocab *vocab;
    int n_enc;
    cap_encoder enc[CAPTIONER_MAX_ENCODERS];
    int emb_size; /* = dec->cfg.n_img = sum of enc[].size */
    gen_special sp;
    imcap_gen_params gen;
};

static void enc_key(char *buf, size_t n, int k, const char *field) { snprintf(buf, n, K_ENC_FMT, k, field); }

static const char *base_name(const char *p)
{
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

/* An attention decoder reads one encoder's grid: its output must be the
 * decoder's grid_h x grid_w x n_img map. */
static imcap_status check_grid(const dec_config *cf, int n_enc, const enc_value *v, const char *path)
{
    if (!dec_has_grid(cf)) return IMCAP_OK;
    if (n_enc != 1 || v->h != cf->grid_h || v->w != cf->grid_w || v->c != cf->n_img)
        return imcap_fail(IMCAP_E_MISMATCH,
                          "%s: the attention decoder reads one encoder's %dx%dx%d grid, but the encoder output is "
                          "%dx%dx%d (%d encoders); export with the encoder's 'grid' output",
                          path, cf->grid_h, cf->grid_w, cf->n_img, v->h, v->w, v->c, n_enc);
    return IMCAP_OK;
}

/* ------------------------------------------------------------------ write */

imcap_status captioner_write(const captioner_spec *s, const char *path)
{
    const dec_config *cf = &s->dec->cfg;
    imcap_status st = s->dec->n_members ? IMCAP_OK : dec_config_check(cf); /* members: checked when made */
    if (st) return st;
    if ((st = imcap_gen_params_check(&s->gen))) return st;
    if ((size_t)cf->n_vocab != imcap_vocab_size(s->vocab))
        return imcap_fail(IMCAP_E_MISMATCH, "%s: the decoder has %d output tokens but the vocabulary %zu words",
                          path, cf->n_vocab, imcap_vocab_size(s->vocab));
    if (cf->pad_id != imcap_vocab_pad(s->vocab))
        return imcap_fail(IMCAP_E_MISMATCH, "%s: the decoder's PAD id %d is not the vocabulary's %d", path,
                          cf->pad_id, (int)imcap_vocab_pad(s->vocab));
    if (s->n_encoders < 1 || s->n_encoders > CAPTIONER_MAX_ENCODERS)
        return imcap_fail(IMCAP_E_ARG, "%s: %d encoders (1 to %d)", path, s->n_encoders, CAPTIONER_MAX_ENCODERS);
    int64_t total = 0;
    for (int k = 0; k < s->n_encoders; k++) {
        const enc_graph *g = s->encoders[k];
        int out_id = enc_graph_output(g, s->encoder_outputs[k]);
        if (out_id < 0)
            return imcap_fail(IMCAP_E_MISMATCH, "%s: encoder '%s' has no output '%s'", path, enc_graph_name(g),
                              s->encoder_outputs[k]);
        const enc_value *v = enc_graph_value(g, out_id);
        total += (int64_t)v->h * v->w * v->c;
        if (!enc_graph_preproc(g))
            return imcap_fail(IMCAP_E_FORMAT, "%s: encoder '%s' has no preprocessing settings", path,
                              enc_graph_name(g));
    }
    if (total != (int64_t)dec_input_floats(cf))
        return imcap_fail(IMCAP_E_MISMATCH,
                          "%s: the encoder output%s '%s'%s give%s %lld values but the decoder reads %d-float "
                          "embeddings",
                          path, s->n_encoders > 1 ? "s" : "", s->encoder_outputs[0],
                          s->n_encoders > 1 ? " ..." : "", s->n_encoders > 1 ? "" : "s", (long long)total, (int)dec_input_floats(cf));
    if ((st = check_grid(cf, s->n_encoders, enc_graph_value(s->encoders[0], enc_graph_output(s->encoders[0], s->encoder_outputs[0])),
                         path)))
        return st;

    gguf_writer *w = gguf_writer_new();
    if (!w) return imcap_fail(IMCAP_E_NOMEM, "%s: out of memory", path);
    if ((st = gguf_set_str(w, K_ARCH, ARCH)) || (st = gguf_set_u32(w, K_VERSION, CAPTIONER_VERSION)) ||
        (st = gguf_set_str(w, K_SOURCE, s->source ? s->source : "")) ||
        (st = gguf_set_str(w, K_CHECKPOINT, s->checkpoint ? s->checkpoint : "")) ||
        (st = gguf_set_u32(w, K_ENC_COUNT, (uint32_t)s->n_encoders)) ||
        (st = gguf_set_arr_str(w, K_VOCAB, imcap_vocab_words(s->vocab), imcap_vocab_size(s->vocab))) ||
        (st = gguf_set_u32(w, K_GEN_BEAM, (uint32_t)s->gen.beam)) ||
        (st = gguf_set_u32(w, K_GEN_MAXLEN, (uint32_t)s->gen.max_len)) ||
        (st = gguf_set_f32(w, K_GEN_ALPHA, s->gen.length_alpha)) ||
        (s->gen.block_ngram && (st = gguf_set_u32(w, K_GEN_BLOCK, (uint32_t)s->gen.block_ngram))))
        goto out;
    for (int k = 0; k < s->n_encoders; k++) {
        const enc_graph *g = s->encoders[k];
        const enc_preproc *pre = enc_graph_preproc(g);
        int32_t size[2] = {pre->in_h, pre->in_w};
        char key[128];
        enc_key(key, sizeof key, k, "name");
        if ((st = gguf_set_str(w, key, enc_graph_name(g)))) goto out;
        enc_key(key, sizeof key, k, "file");
        if ((st = gguf_set_str(w, key, base_name(s->encoder_files[k])))) goto out;
        enc_key(key, sizeof key, k, "output");
        if ((st = gguf_set_str(w, key, s->encoder_outputs[k]))) goto out;
        enc_key(key, sizeof key, k, "checksum");
        if ((st = gguf_set_u32(w, key, enc_graph_checksum(g)))) goto out;
        enc_key(key, sizeof key, k, "preproc.size");
        if ((st = gguf_set_arr_i32(w, key, size, 2))) goto out;
        enc_key(key, sizeof key, k, "preproc.scale");
        if ((st = gguf_set_arr_f32(w, key, pre->scale, 3))) goto out;
        enc_key(key, sizeof key, k, "preproc.bias");
        if ((st = gguf_set_arr_f32(w, key, pre->bias, 3))) goto out;
    }
    if ((st = dec_gguf_put(w, s->dec, DEC_KEY_PREFIX, TENSOR_PREFIX)) ||
        (st = gguf_set_u32(w, K_DEC_PAD, (uint32_t)cf->pad_id)))
        goto out;
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
    free(c->encoder_names);
    free(c->encoder_paths);
    free(c->checkpoint);
    dec_model_free(c->dec);
    imcap_vocab_free(c->vocab);
    for (int k = 0; k < c->n_enc; k++) {
        free(c->enc[k].name);
        free(c->enc[k].path);
        if (c->enc[k].owner < 0) enc_graph_free(c->enc[k].g);
    }
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
    uint32_t pad;
    imcap_status st = gguf_get_u32(f, K_DEC_PAD, &pad);
    if (st) return st;
    if (pad > (1u << 24)) return imcap_fail(IMCAP_E_FORMAT, "%s: %s = %u is out of range", path, K_DEC_PAD, pad);
    return dec_gguf_get(f, DEC_KEY_PREFIX, TENSOR_PREFIX, (int)pad, out);
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

static int split_list(char *s, char **items, int max)
{
    int n = 0;
    for (char *p = s, *q; p; p = q) {
        q = strchr(p, ',');
        if (q) *q++ = 0;
        if (n == max) return -1;
        items[n++] = p;
    }
    return n;
}

static imcap_status read_decoder_one(const char *path, dec_model **m, imcap_vocab **v)
{
    *m = NULL;
    *v = NULL;
    gguf_file *f;
    imcap_status st = gguf_open(path, &f);
    if (st) return st;
    const char *arch = NULL;
    if (!gguf_has_key(f, K_ARCH) || gguf_get_str(f, K_ARCH, &arch) || strcmp(arch, ARCH) != 0) {
        gguf_close(f);
        return dec_load(path, m, v);
    }
    const char *const *words;
    size_t n_words;
    if ((st = check_header(f, path)) || (st = load_decoder(f, path, m))) goto out;
    if ((st = gguf_get_arr_str(f, K_VOCAB, &words, &n_words))) goto out;
    if ((st = imcap_vocab_from_words(words, n_words, v))) {
        imcap_fail_prefix(st, "%s: vocabulary", path);
        goto out;
    }
    if ((int64_t)n_words != (*m)->cfg.n_vocab || (*m)->cfg.pad_id != imcap_vocab_pad(*v))
        st = imcap_fail(IMCAP_E_FORMAT, "%s: the vocabulary (%zu words) does not fit the decoder (%d outputs)", path,
                        n_words, (*m)->cfg.n_vocab);
out:
    gguf_close(f);
    if (st) {
        dec_model_free(*m);
        imcap_vocab_free(*v);
        *m = NULL;
        *v = NULL;
    }
    return st;
}

/* The stored generation defaults of an open captioner file. */
static imcap_status read_gen(const gguf_file *f, const char *path, imcap_gen_params *out)
{
    uint32_t beam, max_len, block = 0;
    float alpha;
    imcap_status st;
    if ((st = gguf_get_u32(f, K_GEN_BEAM, &beam)) || (st = gguf_get_u32(f, K_GEN_MAXLEN, &max_len)) ||
        (st = gguf_get_f32(f, K_GEN_ALPHA, &alpha)))
        return st;
    if (gguf_has_key(f, K_GEN_BLOCK) && (st = gguf_get_u32(f, K_GEN_BLOCK, &block))) return st;
    *out = imcap_gen_default_params();
    out->beam = beam > GEN_MAX_BEAM ? 0 : (int)beam;
    out->max_len = max_len > GEN_MAX_LEN ? 0 : (int)max_len;
    out->length_alpha = alpha;
    out->block_ngram = block > 8 ? -1 : (int)block;
    if ((st = imcap_gen_params_check(out))) return imcap_fail_prefix(st, "%s: stored generation settings", path);
    return IMCAP_OK;
}

imcap_status captioner_read_gen(const char *path, imcap_gen_params *out)
{
    *out = imcap_gen_default_params();
    gguf_file *f;
    if (strchr(path, ',') || gguf_open(path, &f)) {
        imcap_clear_error();
        return IMCAP_OK;
    }
    const char *arch = NULL;
    imcap_status st = IMCAP_OK;
    if (gguf_has_key(f, K_ARCH) && !gguf_get_str(f, K_ARCH, &arch) && !strcmp(arch, ARCH)) st = read_gen(f, path, out);
    gguf_close(f);
    return st;
}

static bool same_words(const imcap_vocab *a, const imcap_vocab *b)
{
    const size_t n = imcap_vocab_size(a);
    if (n != imcap_vocab_size(b)) return false;
    const char *const *wa = imcap_vocab_words(a), *const *wb = imcap_vocab_words(b);
    for (size_t i = 0; i < n; i++)
        if (strcmp(wa[i], wb[i]) != 0) return false;
    return true;
}

imcap_status captioner_read_decoder(const char *path, dec_model **m, imcap_vocab **v)
{
    *m = NULL;
    *v = NULL;
    if (!strchr(path, ',')) return read_decoder_one(path, m, v);
    char *buf = imcap_strdup(path), *paths[DEC_MAX_MEMBERS];
    if (!buf) return IMCAP_E_NOMEM;
    dec_model *mem[DEC_MAX_MEMBERS] = {0};
    imcap_vocab *voc[DEC_MAX_MEMBERS] = {0};
    const int k = split_list(buf, paths, DEC_MAX_MEMBERS);
    imcap_status st = IMCAP_OK;
    if (k < 2) st = imcap_fail(IMCAP_E_ARG, "%s: an ensemble of 2 to %d decoders, comma-separated", path, DEC_MAX_MEMBERS);
    for (int i = 0; !st && i < k; i++)
        if (!(st = read_decoder_one(paths[i], &mem[i], &voc[i])) && !same_words(voc[0], voc[i]))
            st = imcap_fail(IMCAP_E_MISMATCH, "%s: its vocabulary is not that of %s: ensemble members must share it",
                            paths[i], paths[0]);
    if (!st && !(st = dec_ensemble_new(mem, k, m))) {
        *v = voc[0];
        voc[0] = NULL;
        memset(mem, 0, sizeof mem);
    }
    for (int i = 0; i < (k > 0 ? k : 0); i++) {
        dec_model_free(mem[i]);
        imcap_vocab_free(voc[i]);
    }
    free(buf);
    return st;
}

imcap_status imcap_captioner_load(const char *model_path, const char *encoder_path, imcap_captioner **out)
{
    *out = NULL;
    char default_path[4096];
    if (!model_path) {
        imcap_status dst = imcap_default_model_path(default_path, sizeof default_path);
        if (dst) return dst;
        model_path = default_path;
    }
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

    if ((st = read_gen(f, model_path, &c->gen))) goto fail;

    const char *ckpt;
    if ((st = gguf_get_str(f, K_CHECKPOINT, &ckpt))) goto fail;
    if (!(c->checkpoint = imcap_strdup(ckpt))) {
        st = IMCAP_E_NOMEM;
        goto fail;
    }

    /* The encoders, each with its preprocessing; their outputs concatenated
     * form the decoder's input. */
    uint32_t n_enc;
    if ((st = gguf_get_u32(f, K_ENC_COUNT, &n_enc))) goto fail;
    if (n_enc < 1 || n_enc > CAPTIONER_MAX_ENCODERS) {
        st = imcap_fail(IMCAP_E_FORMAT, "%s: %s = %u (1 to %d)", model_path, K_ENC_COUNT, n_enc,
                        CAPTIONER_MAX_ENCODERS);
        goto fail;
    }
    /* Explicit encoder files: a comma-separated list, one per encoder. */
    char *given[CAPTIONER_MAX_ENCODERS] = {0};
    char *given_buf = NULL;
    if (encoder_path) {
        if (!(given_buf = imcap_strdup(encoder_path))) {
            st = IMCAP_E_NOMEM;
            goto fail;
        }
        int ng = 0;
        for (char *p = given_buf, *q; p; p = q) {
            q = strchr(p, ',');
            if (q) *q++ = 0;
            if (ng < CAPTIONER_MAX_ENCODERS) given[ng] = p;
            ng++;
        }
        if (ng != (int)n_enc) {
            free(given_buf);
            st = imcap_fail(IMCAP_E_ARG, "%s: the model uses %u encoder%s but %d encoder file%s given (%s)",
                            model_path, n_enc, n_enc > 1 ? "s" : "", ng, ng > 1 ? "s were" : " was",
                            encoder_path);
            goto fail;
        }
    }
    size_t names_len = 1, paths_len = 1;
    int64_t total = 0;
    for (int k = 0; k < (int)n_enc; k++) {
        cap_encoder *e = &c->enc[k];
        c->n_enc = k + 1;
        char key[4][128];
        const char *name, *file, *output;
        uint32_t sum;
        enc_key(key[0], sizeof key[0], k, "name");
        enc_key(key[1], sizeof key[1], k, "file");
        enc_key(key[2], sizeof key[2], k, "output");
        enc_key(key[3], sizeof key[3], k, "checksum");
        if ((st = gguf_get_str(f, key[0], &name)) || (st = gguf_get_str(f, key[1], &file)) ||
            (st = gguf_get_str(f, key[2], &output)) || (st = gguf_get_u32(f, key[3], &sum)))
            break;
        const int32_t *size;
        const float *scale, *bias;
        size_t n_size, n_scale, n_bias;
        enc_key(key[0], sizeof key[0], k, "preproc.size");
        enc_key(key[1], sizeof key[1], k, "preproc.scale");
        enc_key(key[2], sizeof key[2], k, "preproc.bias");
        if ((st = gguf_get_arr_i32(f, key[0], &size, &n_size)) ||
            (st = gguf_get_arr_f32(f, key[1], &scale, &n_scale)) ||
            (st = gguf_get_arr_f32(f, key[2], &bias, &n_bias)))
            break;
        if (n_size != 2 || n_scale != 3 || n_bias != 3 || size[0] < 1 || size[0] > 4096 || size[1] < 1 ||
            size[1] > 4096) {
            st = imcap_fail(IMCAP_E_FORMAT, "%s: bad preprocessing settings of encoder %d", model_path, k);
            break;
        }
        e->pre.in_h = size[0];
        e->pre.in_w = size[1];
        memcpy(e->pre.scale, scale, sizeof e->pre.scale);
        memcpy(e->pre.bias, bias, sizeof e->pre.bias);
        if (!(e->name = imcap_strdup(name))) {
            st = IMCAP_E_NOMEM;
            break;
        }
        if (given[k]) {
            if (!(e->path = imcap_strdup(given[k]))) {
                st = IMCAP_E_NOMEM;
                break;
            }
        } else if ((st = find_encoder(model_path, file, &e->path))) {
            break;
        }
        /* Two outputs of one encoder (e.g. embedding + mixed5): load and run it once. */
        e->owner = -1;
        for (int j = 0; j < k && e->owner < 0; j++)
            if (!strcmp(c->enc[j].path, e->path)) e->owner = j;
        if (e->owner >= 0) e->g = c->enc[e->owner].g;
        else if ((st = enc_graph_load(e->path, &e->g))) break;
        else enc_graph_set_precision(e->g, ENC_PREC_FLOAT); /* the decoder's embeddings: float unless asked */
        uint32_t got_sum = enc_graph_checksum(e->g);
        if (got_sum != sum) {
            st = imcap_fail(IMCAP_E_MISMATCH,
                            "%s: encoder '%s' (checksum %08x) is not the one the model %s was trained with: "
                            "'%s', checksum %08x",
                            e->path, enc_graph_name(e->g), got_sum, model_path, name, sum);
            break;
        }
        e->out_id = enc_graph_output(e->g, output);
        if (e->out_id < 0) {
            st = imcap_fail(IMCAP_E_MISMATCH, "%s: the encoder has no output '%s' (needed by %s)", e->path, output,
                            model_path);
            break;
        }
        const enc_value *ov = enc_graph_value(e->g, e->out_id);
        e->size = ov->h * ov->w * ov->c;
        total += e->size;
        const enc_preproc *ep = enc_graph_preproc(e->g);
        if (!ep || ep->in_h != e->pre.in_h || ep->in_w != e->pre.in_w ||
            memcmp(ep->scale, e->pre.scale, sizeof e->pre.scale) ||
            memcmp(ep->bias, e->pre.bias, sizeof e->pre.bias)) {
            st = imcap_fail(IMCAP_E_MISMATCH,
                            "%s: the encoder's preprocessing differs from the one recorded in %s (input %dx%d)",
                            e->path, model_path, e->pre.in_h, e->pre.in_w);
            break;
        }
        names_len += strlen(e->name) + 1;
        paths_len += strlen(e->path) + 1;
    }
    free(given_buf);
    if (st) goto fail;
    c->emb_size = (int)dec_input_floats(&c->dec->cfg);
    if (total != c->emb_size) {
        st = imcap_fail(IMCAP_E_MISMATCH, "%s: the encoder output%s give%s %lld values, the decoder of %s reads %d",
                        c->enc[0].path, n_enc > 1 ? "s" : "", n_enc > 1 ? "" : "s", (long long)total, model_path,
                        c->emb_size);
        goto fail;
    }
    if ((st = check_grid(&c->dec->cfg, n_enc, enc_graph_value(c->enc[0].g, c->enc[0].out_id), model_path))) goto fail;
    c->encoder_names = malloc(names_len);
    c->encoder_paths = malloc(paths_len);
    if (!c->encoder_names || !c->encoder_paths) {
        st = imcap_fail(IMCAP_E_NOMEM, "out of memory");
        goto fail;
    }
    c->encoder_names[0] = c->encoder_paths[0] = 0;
    for (int k = 0; k < c->n_enc; k++) {
        if (k) {
            strcat(c->encoder_names, "+");
            strcat(c->encoder_paths, ",");
        }
        strcat(c->encoder_names, c->enc[k].name);
        strcat(c->encoder_paths, c->enc[k].path);
    }
    gguf_close(f);
    *out = c;
    return IMCAP_OK;
fail:
    gguf_close(f);
    imcap_captioner_free(c);
    return st;
}

imcap_status imcap_captioner_set_precision(imcap_captioner *c, imcap_precision p)
{
    for (int k = 0; k < c->n_enc; k++) {
        imcap_status st = c->enc[k].owner < 0 ? enc_graph_set_precision(c->enc[k].g, enc_precision_for_decoder((enc_precision)p))
                                              : IMCAP_OK;
        if (st) return st;
    }
    return IMCAP_OK;
}

imcap_gen_params imcap_captioner_gen_params(const imcap_captioner *c) { return c->gen; }
const char *imcap_captioner_encoder_name(const imcap_captioner *c) { return c->encoder_names; }
const char *imcap_captioner_encoder_path(const imcap_captioner *c) { return c->encoder_paths; }
const char *imcap_captioner_checkpoint(const imcap_captioner *c) { return c->checkpoint; }
int imcap_captioner_vocab_size(const imcap_captioner *c) { return c->dec->cfg.n_vocab; }
const imcap_vocab *imcap_captioner_vocab(const imcap_captioner *c) { return c->vocab; }
int imcap_captioner_embedding_size(const imcap_captioner *c) { return c->emb_size; }

/* ---------------------------------------------------------------- caption */

imcap_status imcap_captioner_embed(const imcap_captioner *c, const imcap_image *img, float *embedding)
{
    imcap_status st = IMCAP_OK;
    int offset[CAPTIONER_MAX_ENCODERS];
    for (int k = 0, off = 0; k < c->n_enc; k++) {
        offset[k] = off;
        off += c->enc[k].size;
    }
    /* One run per encoder file, computing every output the model takes from it. */
    for (int k = 0; k < c->n_enc && !st; k++) {
        const cap_encoder *e = &c->enc[k];
        if (e->owner >= 0) continue;
        int ids[CAPTIONER_MAX_ENCODERS], n_ids = 0;
        float *outs[CAPTIONER_MAX_ENCODERS];
        for (int j = k; j < c->n_enc; j++)
            if (j == k || c->enc[j].owner == k) {
                ids[n_ids] = c->enc[j].out_id;
                outs[n_ids++] = embedding + offset[j];
            }
        const size_t np = (size_t)e->pre.in_h * e->pre.in_w;
        uint8_t *px = imcap_alloc(np, 3);
        float *x = imcap_alloc(np * 3, sizeof(float));
        st = IMCAP_E_NOMEM;
        if (px && x && !(st = imcap_image_prepare(img, e->pre.in_h, e->pre.in_w, px))) {
            imcap_image_to_float(px, np, e->pre.scale, e->pre.bias, x);
            st = enc_graph_run(e->g, x, 1, ids, n_ids, outs);
        }
        imcap_free(px);
        imcap_free(x);
    }
    return st;
}

void imcap_caption_free(imcap_caption *cap)
{
    if (!cap) return;
    for (int i = 0; i < cap->n_alt; i++) {
        free(cap->alt[i].text);
        free(cap->alt[i].attention);
    }
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
        if (dec_has_grid(&c->dec->cfg)) {
            const size_t L = (size_t)dec_regions(&c->dec->cfg);
            if (!(cap->alt[i].attention = malloc(sizeof(float) * L * (size_t)(hyp[i].n_words > 0 ? hyp[i].n_words : 1)))) {
                st = imcap_fail(IMCAP_E_NOMEM, "out of memory for attention weights");
                goto out;
            }
            if ((st = gen_attention(c->dec, emb, &c->sp, hyp[i].words, hyp[i].n_words, cap->alt[i].attention)))
                goto out;
            cap->grid_rows = c->dec->cfg.grid_h;
            cap->grid_cols = c->dec->cfg.grid_w;
        }
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

/* Splits a comma-separated list in place into at most max items; returns the count (or -1 if more). */
imcap_status imcap_captioner_export(const char *checkpoint, const char *encoder_path, const char *output,
                                    const char *embeddings, const imcap_gen_params *gen, const char *out_path)
{
    if (!checkpoint || !encoder_path || !out_path)
        return imcap_fail(IMCAP_E_ARG, "export: a checkpoint, an encoder and an output path are needed");
    if (!output) output = "embedding";
    dec_model *m = NULL;
    imcap_vocab *v = NULL;
    enc_graph *g[CAPTIONER_MAX_ENCODERS] = {0};
    gguf_file *f = NULL;
    imcap_embfile *ef = NULL;
    char *paths_buf = imcap_strdup(encoder_path), *outs_buf = imcap_strdup(output);
    char *paths[CAPTIONER_MAX_ENCODERS], *outs[CAPTIONER_MAX_ENCODERS];
    int n_enc = 0, n_out;
    imcap_status st = IMCAP_OK;
    if (!paths_buf || !outs_buf) {
        st = IMCAP_E_NOMEM;
        goto out;
    }
    n_enc = split_list(paths_buf, paths, CAPTIONER_MAX_ENCODERS);
    n_out = split_list(outs_buf, outs, CAPTIONER_MAX_ENCODERS);
    if (n_enc < 1 || n_out < 1 || (n_out != 1 && n_out != n_enc)) {
        st = imcap_fail(IMCAP_E_ARG, "export: %s encoders (at most %d) with %s outputs (one, or one per encoder)",
                        encoder_path, CAPTIONER_MAX_ENCODERS, output);
        n_enc = 0;
        goto out;
    }
    for (int k = n_out; k < n_enc; k++) outs[k] = outs[0];
    if ((st = captioner_read_decoder(checkpoint, &m, &v))) goto out;
    for (int k = 0; k < n_enc; k++)
        if ((st = enc_graph_load(paths[k], &g[k]))) goto out;
    /* The id the embeddings file records: "name output checksum", joined
     * with '+' for concatenated files (imcap embcat), cut to the header. */
    char id[1024] = "";
    for (int k = 0; k < n_enc; k++) {
        size_t l = strlen(id);
        snprintf(id + l, sizeof id - l, "%s%s %s %08x", k ? "+" : "", enc_graph_name(g[k]), outs[k],
                 (unsigned)enc_graph_checksum(g[k]));
    }
    if (embeddings) {
        if ((st = imcap_embfile_open(embeddings, &ef))) goto out;
        const char *eid = imcap_embfile_encoder(ef);
        char want[IMCAP_EMB_ENCODER_MAX + 1];
        snprintf(want, sizeof want, "%s", id);
        if (strcmp(eid, want) != 0) {
            st = imcap_fail(IMCAP_E_MISMATCH,
                            "%s: the embeddings were made by encoder '%s', not by %s ('%s'): the decoder was "
                            "trained on another encoder's features",
                            embeddings, eid[0] ? eid : "(unknown)", encoder_path, want);
            goto out;
        }
        if ((size_t)imcap_embfile_dim(ef) != dec_input_floats(&m->cfg)) {
            st = imcap_fail(IMCAP_E_MISMATCH, "%s: %zu-float embeddings, but the decoder %s reads %d", embeddings,
                            imcap_embfile_dim(ef), checkpoint, (int)dec_input_floats(&m->cfg));
            goto out;
        }
    }
    char source[1600];
    uint64_t step = 0;
    if (!gguf_open(checkpoint, &f) && gguf_has_key(f, "imcap.train.step") &&
        !gguf_get_u64(f, "imcap.train.step", &step))
        snprintf(source, sizeof source, "imcap export of %s (training step %llu) with %s", checkpoint,
                 (unsigned long long)step, id);
    else
        snprintf(source, sizeof source, "imcap export of %s with %s", checkpoint, id);
    imcap_clear_error();
    captioner_spec s = {.dec = m, .vocab = v, .n_encoders = n_enc,
                        .gen = gen ? *gen : imcap_gen_default_params(), .source = source, .checkpoint = checkpoint};
    for (int k = 0; k < n_enc; k++) {
        s.encoders[k] = g[k];
        s.encoder_files[k] = paths[k];
        s.encoder_outputs[k] = outs[k];
    }
    s.gen.n_best = 1;
    s.gen.temperature = 0.0f;
    st = captioner_write(&s, out_path);
out:
    gguf_close(f);
    imcap_embfile_close(ef);
    dec_model_free(m);
    imcap_vocab_free(v);
    for (int k = 0; k < n_enc; k++) enc_graph_free(g[k]);
    free(paths_buf);
    free(outs_buf);
    return st;
}
