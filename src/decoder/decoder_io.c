/*
 * decoder_io.c - the decoder in GGUF files: config, vocabulary and weights
 * (docs/FORMATS.md, "Decoder checkpoint"). Training checkpoints add their
 * own keys and tensors (train.c) to the same layout.
 */
#include "decoder.h"

#include <string.h>

#define DEC_ARCH "imcap.decoder"
#define DEC_VERSION 1u

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
        (s = gguf_set_u32(w, "imcap.decoder.n_img", (uint32_t)c->n_img)) ||
        (s = gguf_set_u32(w, "imcap.decoder.n_img1", (uint32_t)c->n_img1)) ||
        (s = gguf_set_u32(w, "imcap.decoder.n_hid", (uint32_t)c->n_hid)) ||
        (s = gguf_set_u32(w, "imcap.decoder.n_emb", (uint32_t)c->n_emb)) ||
        (s = gguf_set_u32(w, "imcap.decoder.n_out1", (uint32_t)c->n_out1)) ||
        (s = gguf_set_u32(w, "imcap.decoder.n_vocab", (uint32_t)c->n_vocab)) ||
        (s = gguf_set_i32(w, "imcap.decoder.pad_id", imcap_vocab_pad(v))) ||
        (s = gguf_set_i32(w, "imcap.decoder.start_id", imcap_vocab_start(v))) ||
        (s = gguf_set_i32(w, "imcap.decoder.end_id", imcap_vocab_end(v))) ||
        (s = gguf_set_i32(w, "imcap.decoder.unk_id", imcap_vocab_unk(v))) ||
        (s = gguf_set_arr_str(w, "imcap.decoder.vocab", imcap_vocab_words(v), imcap_vocab_size(v))))
        return s;
    for (int i = 0; i < DEC_N_TENSORS; i++) {
        dec_tensor_info t = dec_tensor_at(c, i);
        s = gguf_add_tensor(w, t.name, GGUF_T_F32, t.n_dims, t.shape, m->params + t.offset);
        if (s) return s;
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
    dec_config c;
    const int lim = 1 << 20;
    if ((s = get_dim(f, "imcap.decoder.n_img", 1, lim, &c.n_img)) ||
        (s = get_dim(f, "imcap.decoder.n_img1", 1, lim, &c.n_img1)) ||
        (s = get_dim(f, "imcap.decoder.n_hid", 1, 1 << 16, &c.n_hid)) ||
        (s = get_dim(f, "imcap.decoder.n_emb", 1, lim, &c.n_emb)) ||
        (s = get_dim(f, "imcap.decoder.n_out1", 1, lim, &c.n_out1)) ||
        (s = get_dim(f, "imcap.decoder.n_vocab", 2, 1 << 24, &c.n_vocab)))
        return s;
    const char *const *words;
    size_t n_words;
    if ((s = gguf_get_arr_str(f, "imcap.decoder.vocab", &words, &n_words))) return s;
    if (n_words != (size_t)c.n_vocab)
        return imcap_fail(IMCAP_E_FORMAT, "%s: imcap.decoder.vocab has %zu words but n_vocab is %d", gguf_path(f),
                          n_words, c.n_vocab);
    imcap_vocab *v;
    if ((s = imcap_vocab_from_words(words, n_words, &v))) return imcap_fail_prefix(s, "%s", gguf_path(f));
    c.pad_id = imcap_vocab_pad(v);
    if ((s = check_id(f, "imcap.decoder.pad_id", imcap_vocab_pad(v))) ||
        (s = check_id(f, "imcap.decoder.start_id", imcap_vocab_start(v))) ||
        (s = check_id(f, "imcap.decoder.end_id", imcap_vocab_end(v))) ||
        (s = check_id(f, "imcap.decoder.unk_id", imcap_vocab_unk(v)))) {
        imcap_vocab_free(v);
        return s;
    }
    /* Every tensor's shape is checked before allocating, so the sizes are
     * bounded by what the file holds, not by its header. */
    for (int i = 0; i < DEC_N_TENSORS; i++) {
        dec_tensor_info t = dec_tensor_at(&c, i);
        const gguf_tensor *gt;
        if ((s = gguf_expect_tensor(f, t.name, GGUF_T_F32, t.n_dims, t.shape, &gt))) {
            imcap_vocab_free(v);
            return s;
        }
    }
    dec_model *m;
    if ((s = dec_model_new(&c, false, &m))) {
        imcap_vocab_free(v);
        return s;
    }
    for (int i = 0; i < DEC_N_TENSORS; i++) {
        dec_tensor_info t = dec_tensor_at(&c, i);
        if ((s = gguf_tensor_copy(f, gguf_find_tensor(f, t.name), m->params + t.offset))) {
            dec_model_free(m);
            imcap_vocab_free(v);
            return s;
        }
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
