/*
 * decoder_io.c - the decoder in GGUF files: config, vocabulary and weights
 * (docs/FORMATS.md, "Decoder checkpoint"). Training checkpoints add their
 * own keys and tensors (train.c) to the same layout.
 */
#include "decoder.h"

#include <stddef.h>

#include <math.h>
#include <stdio.h>
#include <string.h>

#define DEC_ARCH "imcap.decoder"
#define DEC_VERSION 1u

/* The u32 config keys every architecture stores; lo / hi bound them on read
 * (dec_config_check has the last word). */
static const struct { const char *key; size_t off; int lo, hi; } dim_keys[] = {
    {"n_img", offsetof(dec_config, n_img), 1, 1 << 20},    {"n_img1", offsetof(dec_config, n_img1), 0, 1 << 20},
    {"n_hid", offsetof(dec_config, n_hid), 1, 1 << 16},    {"n_emb", offsetof(dec_config, n_emb), 1, 1 << 20},
    {"n_out1", offsetof(dec_config, n_out1), 1, 1 << 20},  {"n_vocab", offsetof(dec_config, n_vocab), 2, 1 << 24},
};
/* ... and those of architectures with a grid (absent from recipe files). */
static const struct { const char *key; size_t off; int lo, hi; } grid_keys[] = {
    {"grid_h", offsetof(dec_config, grid_h), 1, 1024},
    {"grid_w", offsetof(dec_config, grid_w), 1, 1024},
    {"n_att", offsetof(dec_config, n_att), 1, 1 << 20},
};

static int *cfg_field(dec_config *c, size_t off) { return (int *)((char *)c + off); }

static imcap_status put_one(gguf_writer *w, const dec_model *m, const char *key_prefix, const char *tensor_prefix)
{
    const dec_config *c = &m->cfg;
    char key[256];
    imcap_status s = dec_config_check(c);
    if (s) return s;
    snprintf(key, sizeof key, "%sarch", key_prefix);
    if ((s = gguf_set_str(w, key, dec_arch_name(c->arch)))) return s;
    dec_config cc = *c;
    for (size_t i = 0; i < sizeof dim_keys / sizeof dim_keys[0]; i++) {
        snprintf(key, sizeof key, "%s%s", key_prefix, dim_keys[i].key);
        if ((s = gguf_set_u32(w, key, (uint32_t)*cfg_field(&cc, dim_keys[i].off)))) return s;
    }
    if (c->arch != DEC_ARCH_RECIPE)
        for (size_t i = 0; i < sizeof grid_keys / sizeof grid_keys[0]; i++) {
            snprintf(key, sizeof key, "%s%s", key_prefix, grid_keys[i].key);
            if ((s = gguf_set_u32(w, key, (uint32_t)*cfg_field(&cc, grid_keys[i].off)))) return s;
        }
    for (int i = 0; i < dec_n_tensors(c); i++) {
        dec_tensor_info t = dec_tensor_at(c, i);
        snprintf(key, sizeof key, "%s%s", tensor_prefix, t.name);
        if ((s = gguf_add_tensor(w, key, GGUF_T_F32, t.n_dims, t.shape, m->params + t.offset))) return s;
    }
    return IMCAP_OK;
}

static imcap_status get_dim(const gguf_file *f, const char *key, int lo, int hi, int *out)
{
    uint32_t v;
    imcap_status s = gguf_get_u32(f, key, &v);
    if (s) return s;
    if (v < (uint32_t)lo || v > (uint32_t)hi)
        return imcap_fail(IMCAP_E_FORMAT, "%s: %s = %u is outside [%d, %d]", gguf_path(f), key, v, lo, hi);
    *out = (int)v;
    return IMCAP_OK;
}

static imcap_status get_one(const gguf_file *f, const char *key_prefix, const char *tensor_prefix, int pad_id,
                            dec_model **out)
{
    *out = NULL;
    dec_config c;
    memset(&c, 0, sizeof c);
    c.pad_id = pad_id;
    char key[256];
    imcap_status s;
    snprintf(key, sizeof key, "%sarch", key_prefix);
    c.arch = DEC_ARCH_RECIPE; /* files from before the architecture was recorded */
    if (gguf_has_key(f, key)) {
        const char *name;
        if ((s = gguf_get_str(f, key, &name))) return s;
        if ((c.arch = dec_arch_from_name(name)) < 0)
            return imcap_fail(IMCAP_E_UNSUPPORTED, "%s: %s = \"%s\" is not a decoder architecture this build knows",
                              gguf_path(f), key, name);
    }
    for (size_t i = 0; i < sizeof dim_keys / sizeof dim_keys[0]; i++) {
        snprintf(key, sizeof key, "%s%s", key_prefix, dim_keys[i].key);
        if ((s = get_dim(f, key, dim_keys[i].lo, dim_keys[i].hi, cfg_field(&c, dim_keys[i].off)))) return s;
    }
    if (c.arch != DEC_ARCH_RECIPE)
        for (size_t i = 0; i < sizeof grid_keys / sizeof grid_keys[0]; i++) {
            snprintf(key, sizeof key, "%s%s", key_prefix, grid_keys[i].key);
            if ((s = get_dim(f, key, grid_keys[i].lo, grid_keys[i].hi, cfg_field(&c, grid_keys[i].off)))) return s;
        }
    if ((s = dec_config_check(&c))) return imcap_fail_prefix(s, "%s", gguf_path(f));
    /* Every tensor's shape is checked before allocating, so the sizes are
     * bounded by what the file holds, not by its header. */
    for (int i = 0; i < dec_n_tensors(&c); i++) {
        dec_tensor_info t = dec_tensor_at(&c, i);
        const gguf_tensor *gt;
        snprintf(key, sizeof key, "%s%s", tensor_prefix, t.name);
        if (gguf_expect_tensor(f, key, GGUF_T_F32, t.n_dims, t.shape, &gt))
            return IMCAP_E_FORMAT; /* the file disagrees with itself; the message names file and tensor */
    }
    dec_model *m;
    if ((s = dec_model_new(&c, false, &m))) return s;
    for (int i = 0; i < dec_n_tensors(&c); i++) {
        dec_tensor_info t = dec_tensor_at(&c, i);
        snprintf(key, sizeof key, "%s%s", tensor_prefix, t.name);
        if ((s = gguf_tensor_load_f32(f, gguf_find_tensor(f, key), m->params + t.offset))) { /* checksum, finite */
            dec_model_free(m);
            return s;
        }
    }
    *out = m;
    return IMCAP_OK;
}

/* Member k's prefixes: member 0 is stored as a single decoder. */
static void member_prefix(char *kp, char *tp, size_t n, const char *key_prefix, const char *tensor_prefix, int k)
{
    if (k == 0) {
        snprintf(kp, n, "%s", key_prefix);
        snprintf(tp, n, "%s", tensor_prefix);
        return;
    }
    snprintf(kp, n, "%sm%d.", key_prefix, k);
    snprintf(tp, n, "%sm%d.", tensor_prefix, k);
}

imcap_status dec_gguf_put(gguf_writer *w, const dec_model *m, const char *key_prefix, const char *tensor_prefix)
{
    if (!m->n_members) return put_one(w, m, key_prefix, tensor_prefix);
    char key[256], kp[200], tp[200];
    snprintf(key, sizeof key, "%smembers", key_prefix);
    imcap_status s = gguf_set_u32(w, key, (uint32_t)m->n_members);
    for (int k = 0; !s && k < m->n_members; k++) {
        member_prefix(kp, tp, sizeof kp, key_prefix, tensor_prefix, k);
        s = put_one(w, m->member[k], kp, tp);
    }
    return s;
}

imcap_status dec_gguf_get(const gguf_file *f, const char *key_prefix, const char *tensor_prefix, int pad_id,
                          dec_model **out)
{
    *out = NULL;
    char key[256], kp[200], tp[200];
    snprintf(key, sizeof key, "%smembers", key_prefix);
    if (!gguf_has_key(f, key)) return get_one(f, key_prefix, tensor_prefix, pad_id, out);
    int k = 0;
    imcap_status s = get_dim(f, key, 2, DEC_MAX_MEMBERS, &k);
    if (s) return s;
    dec_model *mem[DEC_MAX_MEMBERS] = {0};
    for (int i = 0; !s && i < k; i++) {
        member_prefix(kp, tp, sizeof kp, key_prefix, tensor_prefix, i);
        s = get_one(f, kp, tp, pad_id, &mem[i]);
    }
    if (!s && (s = dec_ensemble_new(mem, k, out))) imcap_fail_prefix(s, "%s", gguf_path(f));
    if (s)
        for (int i = 0; i < k; i++) dec_model_free(mem[i]);
    return s;
}

imcap_status dec_gguf_add(gguf_writer *w, const dec_model *m, const imcap_vocab *v)
{
    const dec_config *c = &m->cfg;
    if (imcap_vocab_size(v) != (size_t)c->n_vocab)
        return imcap_fail(IMCAP_E_MISMATCH, "decoder has %d output words but the vocabulary %zu", c->n_vocab,
                          imcap_vocab_size(v));
    if (imcap_vocab_pad(v) != c->pad_id)
        return imcap_fail(IMCAP_E_MISMATCH, "decoder pad id %d is not the vocabulary's %d", c->pad_id,
                          (int)imcap_vocab_pad(v));
    imcap_status s;
    if ((s = gguf_set_str(w, "general.architecture", DEC_ARCH)) ||
        (s = gguf_set_u32(w, "imcap.decoder.version", DEC_VERSION)) ||
        (s = dec_gguf_put(w, m, "imcap.decoder.", "")) ||
        (s = gguf_set_i32(w, "imcap.decoder.pad_id", imcap_vocab_pad(v))) ||
        (s = gguf_set_i32(w, "imcap.decoder.start_id", imcap_vocab_start(v))) ||
        (s = gguf_set_i32(w, "imcap.decoder.end_id", imcap_vocab_end(v))) ||
        (s = gguf_set_i32(w, "imcap.decoder.unk_id", imcap_vocab_unk(v))) ||
        (s = gguf_set_arr_str(w, "imcap.decoder.vocab", imcap_vocab_words(v), imcap_vocab_size(v))))
        return s;
    return IMCAP_OK;
}

static imcap_status check_id(const gguf_file *f, const char *key, int32_t want)
{
    int32_t v;
    imcap_status s = gguf_get_i32(f, key, &v);
    if (s) return s;
    if (v != want)
        return imcap_fail(IMCAP_E_FORMAT, "%s: %s = %d but the stored vocabulary has it at %d", gguf_path(f), key,
                          (int)v, (int)want);
    return IMCAP_OK;
}

imcap_status dec_gguf_read(const gguf_file *f, dec_model **out_m, imcap_vocab **out_v)
{
    *out_m = NULL;
    *out_v = NULL;
    const char *arch;
    uint32_t version;
    imcap_status s = gguf_get_str(f, "general.architecture", &arch);
    if (s) return s;
    if (strcmp(arch, DEC_ARCH) != 0)
        return imcap_fail(IMCAP_E_FORMAT, "%s: not a decoder file (architecture \"%s\", expected \"%s\")",
                          gguf_path(f), arch, DEC_ARCH);
    if ((s = gguf_get_u32(f, "imcap.decoder.version", &version))) return s;
    if (version != DEC_VERSION)
        return imcap_fail(IMCAP_E_UNSUPPORTED, "%s: decoder format version %u (this build reads %u)", gguf_path(f),
                          version, DEC_VERSION);
    uint32_t n_vocab;
    if ((s = gguf_get_u32(f, "imcap.decoder.n_vocab", &n_vocab))) return s;
    const char *const *words;
    size_t n_words;
    if ((s = gguf_get_arr_str(f, "imcap.decoder.vocab", &words, &n_words))) return s;
    if (n_words != (size_t)n_vocab)
        return imcap_fail(IMCAP_E_FORMAT, "%s: imcap.decoder.vocab has %zu words but n_vocab is %u", gguf_path(f),
                          n_words, n_vocab);
    imcap_vocab *v;
    if ((s = imcap_vocab_from_words(words, n_words, &v))) return imcap_fail_prefix(s, "%s", gguf_path(f));
    if ((s = check_id(f, "imcap.decoder.pad_id", imcap_vocab_pad(v))) ||
        (s = check_id(f, "imcap.decoder.start_id", imcap_vocab_start(v))) ||
        (s = check_id(f, "imcap.decoder.end_id", imcap_vocab_end(v))) ||
        (s = check_id(f, "imcap.decoder.unk_id", imcap_vocab_unk(v)))) {
        imcap_vocab_free(v);
        return s;
    }
    dec_model *m;
    if ((s = dec_gguf_get(f, "imcap.decoder.", "", imcap_vocab_pad(v), &m))) {
        imcap_vocab_free(v);
        return s;
    }
    *out_m = m;
    *out_v = v;
    return IMCAP_OK;
}

imcap_status dec_save(const char *path, const dec_model *m, const imcap_vocab *v)
{
    gguf_writer *w = gguf_writer_new();
    if (!w) return IMCAP_E_NOMEM;
    imcap_status s = dec_gguf_add(w, m, v);
    if (!s) s = gguf_write(w, path);
    gguf_writer_free(w);
    return s;
}

imcap_status dec_load(const char *path, dec_model **m, imcap_vocab **v)
{
    gguf_file *f;
    imcap_status s = gguf_open(path, &f);
    if (s) return s;
    s = dec_gguf_read(f, m, v);
    gguf_close(f);
    return s;
}
