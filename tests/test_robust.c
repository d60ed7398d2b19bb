/*
 * test_robust.c - regression tests for the holes of issue 14 (hostile GGUF
 * counts, quadratic duplicate check, header sizes trusted before shapes,
 * overflowing weights in generation, tensor checksums) and fault injection
 * into every writer of the library: a failed open / write / fsync / rename
 * leaves the previous file intact, no temp file behind and a clear error.
 */
#define _GNU_SOURCE
#include "captioner.h"
#include "fixture.h"
#include "gguf.h"
#include "generate.h"
#include "tfjs.h"
#include "test.h"

#include <dirent.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

/* ------------------------------------------------------------ helpers */

typedef struct buf { unsigned char *p; size_t n, cap; } buf;

static void put(buf *b, const void *d, size_t n)
{
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
        REQUIRE(b->p);
    }
    memcpy(b->p + b->n, d, n);
    b->n += n;
}
static void put_u32(buf *b, uint32_t v) { put(b, &v, 4); }
static void put_u64(buf *b, uint64_t v) { put(b, &v, 8); }
static void put_str(buf *b, const char *s)
{
    put_u64(b, strlen(s));
    put(b, s, strlen(s));
}

static void write_bytes(const char *path, const void *d, size_t n)
{
    FILE *fp = fopen(path, "wb");
    REQUIRE(fp);
    REQUIRE(fwrite(d, 1, n, fp) == n);
    REQUIRE(fclose(fp) == 0);
}

static unsigned char *read_bytes(const char *path, size_t *n)
{
    char *d;
    REQUIRE_OK(imcap_read_file(path, 256u << 20, &d, n));
    return (unsigned char *)d;
}

static const char *tmp(const char *name)
{
    static char p[8][700];
    static int k;
    char *s = p[k++ % 8];
    snprintf(s, 700, "%s/%s", test_tmpdir(), name);
    return s;
}

/* Overwrites the u32 value of key in a GGUF file (the bytes after the key's
 * name and its type). */
static void patch_u32_key(const char *path, const char *key, uint32_t v)
{
    size_t n;
    unsigned char *d = read_bytes(path, &n);
    unsigned char *at = memmem(d, n, key, strlen(key));
    REQUIRE(at);
    at += strlen(key);
    uint32_t type;
    memcpy(&type, at, 4);
    REQUIRE(type == 4);
    memcpy(at + 4, &v, 4);
    write_bytes(path, d, n);
    free(d);
}

/* One changed byte in the stored data of a tensor. */
static void flip_tensor_byte(const char *path, const char *tensor)
{
    const unsigned char b = 0xA5;
    fixture_poke_tensor(path, tensor, 5, &b, 1);
}

/* --------------------------------------------------- GGUF container holes */

/* The folded (PCLMULQDQ) CRC-32 against a bit-at-a-time reference, for every
 * length around the 16- and 64-byte steps, unaligned starts and chaining. */
static uint32_t crc_bitwise(uint32_t crc, const unsigned char *p, size_t n)
{
    crc = ~crc;
    while (n--) {
        crc ^= *p++;
        for (int k = 0; k < 8; k++) crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1)));
    }
    return ~crc;
}

TEST(robust_crc32_every_path_and_the_fused_copy_match_bitwise_reference)
{
    enum { N = 1 << 16 };
    unsigned char *b = malloc(N + 16), *d = malloc(N + 16);
    REQUIRE(b && d);
    imcap_rng r;
    imcap_rng_seed(&r, 9);
    for (size_t i = 0; i < N + 16; i++) b[i] = (unsigned char)imcap_rng_next(&r);
    int paths = 0;
    for (crc_path p = CRC_TABLE; p <= CRC_VCLMUL; p++) {
        if (!imcap_crc32_path_supported(p)) continue;
        paths++;
        /* every tail of the 256-, 64- and 16-byte steps, at odd offsets */
        for (size_t len = 0; len <= 1100; len++)
            for (size_t off = 0; off < 3; off++) {
                const uint32_t want = crc_bitwise(0, b + off, len);
                if (imcap_crc32_on(p, 0, NULL, b + off, len) != want)
                    test_fail_at(__FILE__, __LINE__, "%s: length %zu at offset %zu", imcap_crc32_path_name(p), len, off);
                memset(d, 0xA5, len + 2);
                if (imcap_crc32_on(p, 0, d + 1, b + off, len) != want || memcmp(d + 1, b + off, len) ||
                    d[0] != 0xA5 || d[len + 1] != 0xA5)
                    test_fail_at(__FILE__, __LINE__, "%s copy: length %zu at offset %zu", imcap_crc32_path_name(p),
                                 len, off);
            }
        CHECK(imcap_crc32_on(p, 0, NULL, b + 5, N) == crc_bitwise(0, b + 5, N));
        uint32_t c = imcap_crc32_on(p, 0, d, b, 1000);
        CHECK(imcap_crc32_on(p, c, d + 1000, b + 1000, N - 1000) == crc_bitwise(0, b, N));
        CHECK(memcmp(d, b, N) == 0);
    }
    CHECK(paths >= 1 && imcap_crc32_path_supported(imcap_crc32_path()));
    CHECK(imcap_crc32(0, b, N) == crc_bitwise(0, b, N) && imcap_crc32_copy(0, d, b, N) == crc_bitwise(0, b, N));
    free(b);
    free(d);
}

/* The loaders' one-pass copy + non-finite search + CRC, on every path, at
 * every length up to 300 floats, with a NaN / inf / -inf planted at several
 * places (and none): index, copy and CRC as the plain loops give them. */
TEST(robust_f32_load_pass_finds_the_first_nonfinite_on_every_path)
{
    enum { N = 300 };
    float src[N + 1], dst[N + 1];
    imcap_rng r;
    imcap_rng_seed(&r, 17);
    const float specials[3] = {NAN, INFINITY, -INFINITY};
    int paths = 0;
    for (crc_path p = CRC_TABLE; p <= CRC_VCLMUL; p++) {
        if (!imcap_crc32_path_supported(p)) continue;
        paths++;
        for (size_t n = 0; n <= N; n++)
            for (int plant = -1; plant < 4; plant++) {
                for (size_t i = 0; i <= N; i++) src[i] = (float)imcap_rng_normal(&r) * 1e30f;
                size_t at = n;
                if (plant >= 0 && n > 0) {
                    const size_t pos[4] = {0, n / 2, n - 1, n > 70 ? 63 : n - 1};
                    at = pos[plant];
                    src[at] = specials[plant % 3];
                    if (at + 1 < n) src[n - 1] = NAN; /* a later one must not win */
                }
                for (int with_crc = 0; with_crc < 2; with_crc++) {
                    memset(dst, 0, sizeof dst);
                    uint32_t crc = 7;
                    const size_t got = imcap_copy_f32_checked_on(p, dst, src, n, with_crc ? &crc : NULL);
                    if (got != at || memcmp(dst, src, n * sizeof(float)) || dst[n] != 0.0f ||
                        (with_crc && crc != crc_bitwise(7, (const unsigned char *)src, n * sizeof(float))))
                        test_fail_at(__FILE__, __LINE__, "%s, %zu floats, planted at %zu, crc %d: got index %zu",
                                     imcap_crc32_path_name(p), n, at, with_crc, got);
                }
            }
    }
    CHECK(paths >= 1);
}

/* Finding 1: a 468-byte file claiming 16M tensors (or keys) is refused by its
 * size before anything is allocated for them. */
TEST(robust_gguf_counts_are_bounded_by_the_file_size)
{
    for (int which = 0; which < 2; which++) {
        buf b = {0};
        put(&b, "GGUF", 4);
        put_u32(&b, 3);
        put_u64(&b, which == 0 ? (1u << 24) : 1);
        put_u64(&b, which == 1 ? (1u << 24) : 0);
        while (b.n < 468) put(&b, "", 1);
        const char *path = tmp("counts.gguf");
        write_bytes(path, b.p, b.n);
        free(b.p);
        gguf_file *f;
        CHECK(gguf_open(path, &f) == IMCAP_E_FORMAT);
        CHECK(strstr(imcap_last_error(), path) && strstr(imcap_last_error(), "implausible counts"));
    }
    /* An array of 100k strings in a file that could hold 50 of them. */
    buf b = {0};
    put(&b, "GGUF", 4);
    put_u32(&b, 3);
    put_u64(&b, 0);
    put_u64(&b, 1);
    put_str(&b, "words");
    put_u32(&b, 9);
    put_u32(&b, 8);
    put_u64(&b, 100000);
    while (b.n < 468) put(&b, "", 1);
    const char *path = tmp("strings.gguf");
    write_bytes(path, b.p, b.n);
    free(b.p);
    gguf_file *f;
    CHECK(gguf_open(path, &f) == IMCAP_E_FORMAT);
    CHECK(strstr(imcap_last_error(), "bad array length"));
}

static void on_alarm(int sig)
{
    (void)sig;
    static const char msg[] = "duplicate check took more than 20 s (quadratic?)\n";
    ssize_t r = write(2, msg, sizeof msg - 1);
    (void)r;
    _exit(1);
}

/* Finding 2: 200,000 tensors with one duplicate name are refused at once
 * (the quadratic check needed 2e10 comparisons: minutes). */
TEST(robust_gguf_duplicate_names_are_found_fast)
{
    enum { N = 200000 };
    buf b = {0};
    put(&b, "GGUF", 4);
    put_u32(&b, 3);
    put_u64(&b, N);
    put_u64(&b, 0);
    char name[32];
    for (int i = 0; i < N; i++) {
        snprintf(name, sizeof name, "t%06d", i == N - 1 ? 4711 : i);
        put_str(&b, name);
        put_u32(&b, 1);
        put_u64(&b, 1);
        put_u32(&b, GGUF_T_F32);
        put_u64(&b, 0); /* all tensors share the first 4 data bytes */
    }
    while (b.n % 32) put(&b, "", 1);
    put(&b, "\0\0\0\0", 4);
    const char *path = tmp("dups.gguf");
    write_bytes(path, b.p, b.n);
    free(b.p);
    signal(SIGALRM, on_alarm);
    alarm(20);
    gguf_file *f;
    CHECK(gguf_open(path, &f) == IMCAP_E_FORMAT);
    alarm(0);
    CHECK(strstr(imcap_last_error(), "duplicate tensor name t004711"));
}

/* Files written before the checksum key existed still load (unverified);
 * files with it are verified. */
TEST(robust_gguf_without_checksum_still_loads)
{
    buf b = {0};
    put(&b, "GGUF", 4);
    put_u32(&b, 3);
    put_u64(&b, 1);
    put_u64(&b, 0);
    put_str(&b, "w");
    put_u32(&b, 1);
    put_u64(&b, 2);
    put_u32(&b, GGUF_T_F32);
    put_u64(&b, 0);
    while (b.n % 32) put(&b, "", 1);
    float w[2] = {1.5f, -2.0f};
    put(&b, w, sizeof w);
    const char *path = tmp("old.gguf");
    write_bytes(path, b.p, b.n);
    free(b.p);
    gguf_file *f;
    REQUIRE_OK(gguf_open(path, &f));
    CHECK(!gguf_has_key(f, "imcap.tensor_crc32"));
    CHECK(((const float *)gguf_find_tensor(f, "w")->data)[1] == -2.0f);
    gguf_close(f);
    /* the writer adds the key itself and refuses it from callers */
    gguf_writer *wr = gguf_writer_new();
    CHECK(gguf_set_u32(wr, "imcap.tensor_crc32", 1) == IMCAP_E_ARG);
    gguf_writer_free(wr);
}

/* -------------------------------------- sizes from headers, shapes first */

/* Finding 3: a captioner whose header claims n_hid = 65518 (68.7 GB of
 * weights) or 13700 (2.9 GB) is refused by its tensor shapes, not by an
 * allocation; so is a decoder checkpoint. */
TEST(robust_header_sizes_are_checked_against_the_tensors_first)
{
    char model[600], enc[600];
    fixture_captioner(test_tmpdir(), 3, 1, model, enc);
    const uint32_t bad[2] = {65518, 13700};
    for (int k = 0; k < 2; k++) {
        patch_u32_key(model, "imcap.captioner.decoder.n_hid", bad[k]);
        imcap_captioner *c = NULL;
        imcap_status s = imcap_captioner_load(model, enc, &c);
        CHECK(s == IMCAP_E_MISMATCH || s == IMCAP_E_FORMAT);
        CHECK(c == NULL);
        CHECK(strstr(imcap_last_error(), model) && strstr(imcap_last_error(), "tensor"));
    }
    imcap_vocab *v;
    dec_model *m = fixture_decoder(6, 1, &v);
    const char *ck = tmp("ckpt.gguf");
    REQUIRE_OK(dec_save(ck, m, v));
    dec_model_free(m);
    imcap_vocab_free(v);
    for (int k = 0; k < 2; k++) {
        patch_u32_key(ck, "imcap.decoder.n_hid", bad[k]);
        dec_model *m2 = NULL;
        imcap_vocab *v2 = NULL;
        imcap_status s = dec_load(ck, &m2, &v2);
        CHECK(s == IMCAP_E_MISMATCH || s == IMCAP_E_FORMAT);
        CHECK(m2 == NULL && v2 == NULL);
        CHECK(strstr(imcap_last_error(), ck) && strstr(imcap_last_error(), "tensor"));
    }
}

/* ------------------------------------------- overflowing weights (finding 4) */

TEST(robust_overflowing_weights_are_an_error_not_a_caption)
{
    imcap_vocab *v;
    dec_model *m = fixture_decoder(6, 2, &v);
    for (size_t i = 0; i < m->n_params; i++) m->params[i] *= 1e30f; /* finite, but overflows the LSTM */
    gen_special sp = {.start_id = imcap_vocab_start(v), .end_id = imcap_vocab_end(v), .n_masked = 2,
                      .masked = {imcap_vocab_pad(v), imcap_vocab_start(v)}};
    const float img[6] = {1, -1, 0.5f, 2, -2, 0.25f};
    for (int beam = 1; beam <= 3; beam += 2) {
        imcap_gen_params p = imcap_gen_default_params();
        p.beam = beam;
        p.max_len = 10;
        gen_hyp out[4];
        int n = -1;
        CHECK(gen_caption(m, img, &sp, &p, out, &n) == IMCAP_E_FORMAT);
        CHECK(strstr(imcap_last_error(), "non-finite"));
    }
    int32_t words[10];
    int len;
    CHECK(gen_greedy_batch(m, img, 1, &sp, 10, words, &len) == IMCAP_E_FORMAT);
    double lp;
    const int32_t seq[2] = {4, 5};
    CHECK(gen_sequence_logprob(m, img, &sp, seq, 2, true, &lp) == IMCAP_E_FORMAT);
    dec_model_free(m);
    imcap_vocab_free(v);
}

/* ------------------------------------------------- checksums (finding 6) */

TEST(robust_flipped_weight_byte_is_detected_with_file_and_tensor)
{
    char model[600], enc[600];
    fixture_captioner(test_tmpdir(), 4, 1, model, enc);
    imcap_captioner *c;
    REQUIRE_OK(imcap_captioner_load(model, enc, &c));
    imcap_captioner_free(c);
    flip_tensor_byte(model, "decoder.embed.weight");
    CHECK(imcap_captioner_load(model, enc, &c) == IMCAP_E_FORMAT);
    CHECK(strstr(imcap_last_error(), model) && strstr(imcap_last_error(), "decoder.embed.weight") &&
          strstr(imcap_last_error(), "checksum"));

    /* decoder checkpoint / best model (dec_save) and a training checkpoint's Adam state */
    imcap_vocab *v;
    dec_model *m = fixture_decoder(6, 1, &v);
    const char *ck = tmp("dec.gguf");
    REQUIRE_OK(dec_save(ck, m, v));
    dec_model *m2;
    imcap_vocab *v2;
    REQUIRE_OK(dec_load(ck, &m2, &v2));
    dec_model_free(m2);
    imcap_vocab_free(v2);
    dec_tensor_info ti = dec_tensor_at(&m->cfg, 0);
    flip_tensor_byte(ck, ti.name);
    CHECK(dec_load(ck, &m2, &v2) == IMCAP_E_FORMAT);
    CHECK(strstr(imcap_last_error(), ck) && strstr(imcap_last_error(), ti.name));
    dec_model_free(m);
    imcap_vocab_free(v);
}

/* -------------------------------------------------------- fault injection */

static int count_temp_files(const char *dir)
{
    DIR *d = opendir(dir);
    REQUIRE(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strstr(e->d_name, ".tmp.")) n++;
    closedir(d);
    return n;
}

typedef imcap_status (*writer_fn)(const char *path, int variant);

/* For each fault kind and each n = 1.. until the write succeeds: the write
 * fails with IMCAP_E_IO naming the file, the previous file (written by
 * variant 0) is byte-identical, and no temp file is left. The final
 * successful write (variant 1) differs from the previous one. */
static void fault_sweep(const char *name, writer_fn fn, int max_n)
{
    const char *path = tmp(name);
    REQUIRE_OK(fn(path, 0));
    size_t n0;
    unsigned char *before = read_bytes(path, &n0);
    for (int k = 0; k < IMCAP_FAULT_KINDS; k++) {
        int n = 1;
        for (; n <= max_n; n++) {
            imcap_fault_inject((imcap_fault_kind)k, n);
            imcap_status s = fn(path, 1);
            imcap_fault_inject((imcap_fault_kind)k, 0);
            if (s == IMCAP_OK) break;
            if (s != IMCAP_E_IO || !strstr(imcap_last_error(), path))
                test_fail_at(__FILE__, __LINE__, "%s: fault %d at %d: status %d, message \"%s\"", name, k, n, (int)s,
                             imcap_last_error());
            size_t n1;
            unsigned char *now = read_bytes(path, &n1);
            if (n1 != n0 || memcmp(now, before, n0))
                test_fail_at(__FILE__, __LINE__, "%s: fault %d at %d changed the previous file", name, k, n);
            free(now);
            if (count_temp_files(test_tmpdir()))
                test_fail_at(__FILE__, __LINE__, "%s: fault %d at %d left a temp file", name, k, n);
        }
        CHECK(n > 1);      /* the fault did hit the writer */
        CHECK(n <= max_n); /* and the write succeeds without it */
        REQUIRE_OK(fn(path, 0));
    }
    size_t n2;
    REQUIRE_OK(fn(path, 1));
    unsigned char *after = read_bytes(path, &n2);
    CHECK(n2 != n0 || memcmp(after, before, n0));
    free(after);
    free(before);
}

static imcap_status write_encoder(const char *path, int variant)
{
    enc_graph *g = fixture_encoder("tiny", 10 + (uint64_t)variant);
    imcap_status s = enc_graph_save(g, path);
    enc_graph_free(g);
    return s;
}

static imcap_status write_decoder(const char *path, int variant)
{
    imcap_vocab *v;
    dec_model *m = fixture_decoder(6, 20 + (uint64_t)variant, &v);
    imcap_status s = dec_save(path, m, v);
    dec_model_free(m);
    imcap_vocab_free(v);
    return s;
}

static imcap_status write_captioner(const char *path, int variant)
{
    imcap_vocab *v;
    dec_model *m = fixture_decoder(6, 30 + (uint64_t)variant, &v);
    enc_graph *g = fixture_encoder("tiny", 3);
    captioner_spec sp = {.dec = m, .vocab = v, .n_encoders = 1, .encoders = {g}, .encoder_files = {"tiny.gguf"},
                         .encoder_outputs = {"embedding"}, .gen = imcap_gen_default_params(), .source = "test"};
    imcap_status s = captioner_write(&sp, path);
    enc_graph_free(g);
    dec_model_free(m);
    imcap_vocab_free(v);
    return s;
}

static imcap_status write_wav(const char *path, int variant)
{
    int16_t pcm[3000];
    for (int i = 0; i < 3000; i++) pcm[i] = (int16_t)((i * (7 + variant)) % 2000 - 1000);
    return imcap_wav_write(path, pcm, 3000, 16000);
}

static imcap_status write_embeddings(const char *path, int variant)
{
    const char *names[3] = {"a.jpg", "b.jpg", "c.jpg"};
    float rows[3 * 4];
    for (int i = 0; i < 12; i++) rows[i] = (float)(i + variant);
    return imcap_embfile_write(path, 4, "test", 3, names, rows);
}

static imcap_status write_vocab(const char *path, int variant)
{
    static const char *const words[] = {"#END#", "#PAD#", "#START#", "#UNK#", "a", "dog", "runs"};
    imcap_vocab *v;
    imcap_status s = imcap_vocab_from_words(words, 6 + (size_t)variant, &v);
    if (s) return s;
    s = imcap_vocab_save_txt(v, path);
    imcap_vocab_free(v);
    return s;
}

TEST(robust_write_faults_encoder_file) { fault_sweep("enc.gguf", write_encoder, 400); }
TEST(robust_write_faults_decoder_checkpoint) { fault_sweep("dec.gguf", write_decoder, 400); }
TEST(robust_write_faults_captioner_model) { fault_sweep("model.imcap", write_captioner, 400); }
TEST(robust_write_faults_wav) { fault_sweep("speech.wav", write_wav, 50); }
TEST(robust_write_faults_embeddings_file) { fault_sweep("emb.f32", write_embeddings, 50); }
TEST(robust_write_faults_vocabulary) { fault_sweep("vocab.txt", write_vocab, 50); }

/* The appending embeddings writer (extract): a failed append keeps the rows
 * before it, and the file then resumes from them. */
TEST(robust_write_faults_embeddings_append)
{
    const char *path = tmp("app.f32");
    imcap_embfile_writer *w;
    REQUIRE_OK(imcap_embfile_create(path, 4, 16, "test", &w));
    const float row[4] = {1, 2, 3, 4};
    char name[16];
    for (int i = 0; i < 5; i++) {
        snprintf(name, sizeof name, "i%d.jpg", i);
        REQUIRE_OK(imcap_embfile_append(w, name, row));
    }
    REQUIRE_OK(imcap_embfile_flush(w));
    imcap_fault_inject(IMCAP_FAULT_WRITE, 1);
    CHECK(imcap_embfile_append(w, "x.jpg", row) == IMCAP_E_IO);
    imcap_fault_inject(IMCAP_FAULT_WRITE, 0);
    CHECK(strstr(imcap_last_error(), path) && strstr(imcap_last_error(), "write"));
    REQUIRE_OK(imcap_embfile_writer_close(w));
    imcap_embfile *f;
    REQUIRE_OK(imcap_embfile_open(path, &f));
    CHECK(imcap_embfile_count(f) == 5);
    imcap_embfile_close(f);
    size_t dropped;
    REQUIRE_OK(imcap_embfile_resume(path, 4, "test", &w, &dropped));
    CHECK(imcap_embfile_writer_count(w) == 5);
    REQUIRE_OK(imcap_embfile_writer_close(w));
}

/* Found by fuzz_tfjs: a weights shard of zero bytes offset a NULL buffer
 * (UBSan in the sanitized build); now it is just too short for the weights. */
TEST(robust_tfjs_empty_weights_shard)
{
    size_t n;
    unsigned char *json = read_bytes("tests/data/tfjs_seq/model.json", &n);
    write_bytes(tmp("model.json"), json, n);
    free(json);
    write_bytes(tmp("weights.bin"), "", 0);
    tfjs_options o;
    tfjs_default_options(&o);
    enc_graph *g = NULL;
    CHECK(tfjs_import(tmp("model.json"), &o, &g) == IMCAP_E_FORMAT);
    CHECK(g == NULL && strstr(imcap_last_error(), "weights"));
}

/* The table CRC (CPUs without PCLMULQDQ; forced by IMCAP_CRC_TABLE) reads
 * the checksums the folded CRC wrote: the CLI captions a fixture model. */
TEST(robust_crc32_table_path_verifies_files_written_by_the_fast_path)
{
    char model[600], enc[600], cmd[3000], out[4096], err[4096];
    fixture_captioner(test_tmpdir(), 5, 1, model, enc);
    snprintf(cmd, sizeof cmd, "IMCAP_QUIET=1 IMCAP_CRC_TABLE=1 '%s' caption --model '%s' --encoder '%s' "
             "tests/fuzz/seeds/image_png/rgb.png", test_imcap_bin(), model, enc);
    CHECK(test_run(cmd, out, sizeof out, err, sizeof err) == 0);
    CHECK(strstr(out, "rgb.png\t") != NULL);
    flip_tensor_byte(model, "decoder.out2.weight");
    CHECK(test_run(cmd, out, sizeof out, err, sizeof err) != 0);
    CHECK(strstr(err, "decoder.out2.weight") && strstr(err, "checksum"));
}
