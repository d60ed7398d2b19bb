#define _DEFAULT_SOURCE
#include "test.h"
#include "imcap.h"
#include "internal.h"
#include "f16.h"

#include <stdint.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *tmp_file(const char *name)
{
    static char paths[8][700];
    static int k;
    char *p = paths[k++ & 7];
    snprintf(p, 700, "%s/%s", test_tmpdir(), name);
    return p;
}

static float value(size_t row, size_t j) { return (float)row * 0.5f - (float)j * 0.25f + 1.0f / (float)(j + 3); }

static void fill_row(float *r, size_t dim, size_t row)
{
    for (size_t j = 0; j < dim; j++) r[j] = value(row, j);
}

static long file_size(const char *p)
{
    struct stat sb;
    return stat(p, &sb) == 0 ? (long)sb.st_size : -1;
}

static void check_rows(const imcap_embfile *f, size_t n, size_t dim)
{
    REQUIRE(imcap_embfile_count(f) == n);
    REQUIRE(imcap_embfile_dim(f) == dim);
    for (size_t i = 0; i < n; i++) {
        char name[32];
        snprintf(name, sizeof name, "img_%03zu.jpg", i);
        CHECK_STR(imcap_embfile_name(f, i), name);
        CHECK(imcap_embfile_find(f, name) == (int64_t)i);
        const float *r = imcap_embfile_row(f, i);
        int same = 1;
        for (size_t j = 0; j < dim; j++) same &= r[j] == value(i, j);
        CHECK(same);
        CHECK(r == imcap_embfile_data(f) + i * dim);
    }
}

/* Patches bytes of a file in place. */
static void patch(const char *path, long at, const void *bytes, size_t n)
{
    FILE *fp = fopen(path, "r+b");
    REQUIRE(fp);
    REQUIRE(fseek(fp, at, SEEK_SET) == 0);
    REQUIRE(fwrite(bytes, 1, n, fp) == n);
    fclose(fp);
}

static void expect_open_error(const char *path, imcap_status want, const char *needle)
{
    imcap_embfile *f = (imcap_embfile *)1;
    imcap_status st = imcap_embfile_open(path, &f);
    CHECK(st == want);
    CHECK(f == NULL);
    if (!strstr(imcap_last_error(), path) || !strstr(imcap_last_error(), needle))
        test_fail_at(__FILE__, __LINE__, "message '%s' lacks '%s'", imcap_last_error(), needle);
}

#define DIM 7
#define REC (64 + 4 * DIM + 4)

static const char *write_file(const char *name, size_t n)
{
    const char *p = tmp_file(name);
    imcap_embfile_writer *w;
    REQUIRE_OK(imcap_embfile_create(p, DIM, 0, "test-encoder", &w));
    float row[DIM];
    for (size_t i = 0; i < n; i++) {
        char nm[32];
        snprintf(nm, sizeof nm, "img_%03zu.jpg", i);
        fill_row(row, DIM, i);
        REQUIRE_OK(imcap_embfile_append(w, nm, row));
    }
    REQUIRE_OK(imcap_embfile_writer_close(w));
    return p;
}

TEST(embfile_write_read_roundtrip)
{
    const char *p = write_file("e.emb", 10);
    CHECK(file_size(p) == 128 + 10 * REC);
    imcap_embfile *f;
    REQUIRE_OK(imcap_embfile_open(p, &f));
    check_rows(f, 10, DIM);
    CHECK_STR(imcap_embfile_encoder(f), "test-encoder");
    CHECK(imcap_embfile_find(f, "nope.jpg") == -1);
    CHECK(imcap_embfile_name(f, 10) == NULL && imcap_embfile_row(f, 10) == NULL);
    CHECK(((uintptr_t)imcap_embfile_data(f) & 63) == 0);
    imcap_embfile_close(f);
    /* An empty file is valid too. */
    p = write_file("empty.emb", 0);
    REQUIRE_OK(imcap_embfile_open(p, &f));
    CHECK(imcap_embfile_count(f) == 0);
    imcap_embfile_close(f);
}

TEST(embfile_layout_is_as_documented)
{
    const char *p = write_file("l.emb", 2);
    FILE *fp = fopen(p, "rb");
    REQUIRE(fp);
    unsigned char b[128 + 2 * REC];
    REQUIRE(fread(b, 1, sizeof b, fp) == sizeof b);
    fclose(fp);
    CHECK(memcmp(b, "IMCAPEMB", 8) == 0);
    uint32_t u;
    uint64_t c;
    memcpy(&u, b + 8, 4);
    CHECK(u == 1);
    memcpy(&u, b + 12, 4);
    CHECK(u == 128);
    memcpy(&u, b + 16, 4);
    CHECK(u == DIM);
    memcpy(&u, b + 20, 4);
    CHECK(u == 64);
    memcpy(&c, b + 24, 8);
    CHECK(c == 2);
    CHECK(strcmp((const char *)b + 32, "test-encoder") == 0);
    /* Record 1: name, floats, CRC of both. */
    const unsigned char *r = b + 128 + REC;
    CHECK(strcmp((const char *)r, "img_001.jpg") == 0);
    float x;
    memcpy(&x, r + 64 + 4 * 3, 4);
    CHECK(x == value(1, 3));
    /* CRC-32 computed here bit by bit (independent of imcap_crc32). */
    uint32_t crc = 0xFFFFFFFFu;
    for (size_t i = 0; i < 64 + 4 * DIM; i++) {
        crc ^= r[i];
        for (int k = 0; k < 8; k++) crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1)));
    }
    memcpy(&u, r + 64 + 4 * DIM, 4);
    CHECK(u == ~crc);
}

TEST(embfile_reader_rejects_bad_files)
{
    const char *p = write_file("bad.emb", 3);
    char cmd[1600];
    const char *q = tmp_file("q.emb");
#define RESET() do { snprintf(cmd, sizeof cmd, "cp %s %s", p, q); REQUIRE(system(cmd) == 0); } while (0)
    RESET();
    patch(q, 0, "IMCAPEMX", 8);
    expect_open_error(q, IMCAP_E_FORMAT, "magic");
    RESET();
    REQUIRE(truncate(q, 100) == 0);
    expect_open_error(q, IMCAP_E_FORMAT, "truncated header (100 of 128 bytes)");
    RESET();
    patch(q, 16, "\x08", 1); /* dim 7 -> 8 without fixing the CRC */
    expect_open_error(q, IMCAP_E_FORMAT, "header CRC mismatch");
    RESET();
    REQUIRE(truncate(q, 128 + 2 * REC + 10) == 0);
    expect_open_error(q, IMCAP_E_FORMAT, "truncated: the header counts 3 rows");
    RESET();
    patch(q, 128 + REC + 64 + 4, "\x01", 1); /* a value byte of row 1 */
    expect_open_error(q, IMCAP_E_FORMAT, "row 1: CRC mismatch");
    RESET();
    FILE *fp = fopen(q, "ab");
    REQUIRE(fp);
    fputs("extra", fp);
    fclose(fp);
    expect_open_error(q, IMCAP_E_FORMAT, "5 bytes after the 3 rows");
    expect_open_error(tmp_file("missing.emb"), IMCAP_E_IO, "cannot open");
    fp = fopen(tmp_file("text.emb"), "wb");
    REQUIRE(fp);
    fputs("image,caption\n", fp);
    fclose(fp);
    expect_open_error(tmp_file("text.emb"), IMCAP_E_FORMAT, "not an imcap embeddings file");
#undef RESET
}

TEST(embfile_writer_refuses_bad_rows)
{
    const char *p = tmp_file("w.emb");
    imcap_embfile_writer *w;
    imcap_embfile_writer *bad;
    CHECK(imcap_embfile_create(p, 0, 0, NULL, &bad) == IMCAP_E_ARG);
    CHECK(imcap_embfile_create(p, 4, 30, NULL, &bad) == IMCAP_E_ARG);
    CHECK(strstr(imcap_last_error(), "name width 30") != NULL);
    char longenc[80];
    memset(longenc, 'e', 79);
    longenc[79] = 0;
    CHECK(imcap_embfile_create(p, 4, 0, longenc, &bad) == IMCAP_E_ARG);
    REQUIRE_OK(imcap_embfile_create(p, 4, 16, NULL, &w));
    float row[4] = {1, 2, 3, 4};
    CHECK(imcap_embfile_append(w, "exactly15bytes_", row) == IMCAP_OK);
    CHECK(imcap_embfile_append(w, "sixteen_bytes___", row) == IMCAP_E_ARG);
    CHECK(strstr(imcap_last_error(), "longer than 15 bytes") != NULL);
    CHECK(imcap_embfile_append(w, "", row) == IMCAP_E_ARG);
    CHECK(imcap_embfile_append(w, "exactly15bytes_", row) == IMCAP_E_ARG);
    CHECK(strstr(imcap_last_error(), "already has a row") != NULL);
    row[2] = NAN;
    CHECK(imcap_embfile_append(w, "nan.jpg", row) == IMCAP_E_ARG);
    CHECK(strstr(imcap_last_error(), "value 2 is not finite") != NULL);
    CHECK(imcap_embfile_writer_count(w) == 1);
    REQUIRE_OK(imcap_embfile_writer_close(w));
    imcap_embfile *f;
    REQUIRE_OK(imcap_embfile_open(p, &f));
    CHECK(imcap_embfile_count(f) == 1);
    CHECK_STR(imcap_embfile_encoder(f), "");
    imcap_embfile_close(f);
}

/* A writer that dies without closing: a child process appends n rows with
 * the given flush interval and exits at once (as if killed), so the header
 * counts only the rows of the last flush. Then `cut` bytes are removed from
 * the end (cut > 0 leaves a partial last row). */
static const char *killed_writer(const char *name, size_t n, size_t flush_every, size_t cut)
{
    const char *p = tmp_file(name);
    fflush(NULL);
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        imcap_embfile_writer *w;
        if (imcap_embfile_create(p, DIM, 0, "enc", &w)) _exit(2);
        imcap_embfile_writer_set_flush_every(w, flush_every);
        float row[DIM];
        for (size_t i = 0; i < n; i++) {
            char nm[32];
            snprintf(nm, sizeof nm, "img_%03zu.jpg", i);
            fill_row(row, DIM, i);
            if (imcap_embfile_append(w, nm, row)) _exit(3);
        }
        _exit(0);
    }
    int status;
    REQUIRE(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    if (cut) REQUIRE(truncate(p, file_size(p) - (long)cut) == 0);
    return p;
}

static void resume_and_finish(const char *p, size_t n_total, size_t want_kept, size_t want_dropped)
{
    imcap_embfile_writer *w;
    size_t dropped = 99;
    REQUIRE_OK(imcap_embfile_resume(p, DIM, "enc", &w, &dropped));
    CHECK(dropped == want_dropped);
    CHECK(imcap_embfile_writer_count(w) == want_kept);
    CHECK(file_size(p) == 128 + (long)want_kept * REC);
    float row[DIM];
    for (size_t i = 0; i < n_total; i++) {
        char nm[32];
        snprintf(nm, sizeof nm, "img_%03zu.jpg", i);
        CHECK(imcap_embfile_writer_has(w, nm) == (i < want_kept));
        if (imcap_embfile_writer_has(w, nm)) continue;
        fill_row(row, DIM, i);
        REQUIRE_OK(imcap_embfile_append(w, nm, row));
    }
    REQUIRE_OK(imcap_embfile_writer_close(w));
    imcap_embfile *f;
    REQUIRE_OK(imcap_embfile_open(p, &f));
    check_rows(f, n_total, DIM);
    imcap_embfile_close(f);
}

TEST(embfile_resume_drops_torn_row)
{
    /* 10 rows written, header flushed at 8; the reader refuses the tail. */
    const char *p = killed_writer("a.emb", 10, 4, 0);
    expect_open_error(p, IMCAP_E_FORMAT, "after the 8 rows the header counts");
    resume_and_finish(p, 12, 10, 0);
    /* The 10th row cut in half: kept 9, dropped the partial one. */
    p = killed_writer("b.emb", 10, 4, REC / 2);
    resume_and_finish(p, 12, 9, 1);
    /* Only the CRC of the last row is cut off. */
    p = killed_writer("c.emb", 10, 4, 4);
    resume_and_finish(p, 10, 9, 1);
    /* A complete but corrupted row 9 (bad CRC) is dropped as torn too. */
    p = killed_writer("d.emb", 10, 4, 0);
    patch(p, 128 + 9 * REC + 70, "\xff", 1);
    resume_and_finish(p, 10, 9, 1);
    /* Killed before the first flush: nothing in the header, rows still kept. */
    p = killed_writer("e.emb", 3, 100, 0);
    resume_and_finish(p, 5, 3, 0);
}

TEST(embfile_resume_survives_sigkill)
{
    /* A child writes rows as fast as it can and is SIGKILLed at some moment;
     * resuming and finishing always gives a complete, valid file. */
    for (int round = 0; round < 3; round++) {
        char name[32];
        snprintf(name, sizeof name, "k%d.emb", round);
        const char *p = tmp_file(name);
        int sync[2];
        REQUIRE(pipe(sync) == 0);
        fflush(NULL);
        pid_t pid = fork();
        REQUIRE(pid >= 0);
        if (pid == 0) {
            imcap_embfile_writer *w;
            if (imcap_embfile_create(p, DIM, 0, "enc", &w)) _exit(2);
            imcap_embfile_writer_set_flush_every(w, 7);
            if (write(sync[1], "x", 1) != 1) _exit(4);
            float row[DIM];
            for (size_t i = 0; i < 400; i++) {
                char nm[32];
                snprintf(nm, sizeof nm, "img_%03zu.jpg", i);
                fill_row(row, DIM, i);
                if (imcap_embfile_append(w, nm, row)) _exit(3);
            }
            pause();
            _exit(0);
        }
        char x;
        REQUIRE(read(sync[0], &x, 1) == 1);
        close(sync[0]);
        close(sync[1]);
        usleep((useconds_t)(1000 + 4000 * round));
        kill(pid, SIGKILL);
        int status;
        REQUIRE(waitpid(pid, &status, 0) == pid);
        imcap_embfile_writer *w;
        size_t dropped;
        REQUIRE_OK(imcap_embfile_resume(p, DIM, NULL, &w, &dropped));
        size_t kept = imcap_embfile_writer_count(w);
        fprintf(stderr, "    round %d: kept %zu rows, dropped %zu\n", round, kept, dropped);
        REQUIRE_OK(imcap_embfile_writer_close(w));
        resume_and_finish(p, 400, kept, 0);
    }
}

TEST(embfile_resume_checks_dim_and_encoder)
{
    const char *p = write_file("r.emb", 2);
    imcap_embfile_writer *w = (imcap_embfile_writer *)1;
    CHECK(imcap_embfile_resume(p, DIM + 1, NULL, &w, NULL) == IMCAP_E_MISMATCH && w == NULL);
    CHECK(strstr(imcap_last_error(), "dimension 7, expected 8") != NULL);
    CHECK(imcap_embfile_resume(p, DIM, "other", &w, NULL) == IMCAP_E_MISMATCH);
    CHECK(strstr(imcap_last_error(), "'test-encoder', not 'other'") != NULL);
    patch(p, 0, "XXXX", 4);
    CHECK(imcap_embfile_resume(p, DIM, NULL, &w, NULL) == IMCAP_E_FORMAT);
    CHECK(strstr(imcap_last_error(), "magic") != NULL);
    CHECK(imcap_embfile_resume(tmp_file("none.emb"), DIM, NULL, &w, NULL) == IMCAP_E_IO);
}

TEST(embfile_atomic_whole_file_and_match)
{
    const char *p = tmp_file("whole.emb");
    const char *names[3] = {"img_000.jpg", "img_001.jpg", "img_002.jpg"};
    float rows[3 * DIM];
    for (size_t i = 0; i < 3; i++) fill_row(rows + i * DIM, DIM, i);
    REQUIRE_OK(imcap_embfile_write(p, DIM, "enc", 3, names, rows));
    imcap_embfile *f;
    REQUIRE_OK(imcap_embfile_open(p, &f));
    check_rows(f, 3, DIM);
    /* Duplicate names are refused and the old file stays. */
    const char *dup[3] = {"a", "b", "a"};
    CHECK(imcap_embfile_write(p, DIM, "enc", 3, dup, rows) == IMCAP_E_ARG);
    CHECK(strstr(imcap_last_error(), "same image name 'a'") != NULL);
    imcap_embfile *g;
    REQUIRE_OK(imcap_embfile_open(p, &g));
    CHECK(imcap_embfile_count(g) == 3);
    imcap_embfile_close(g);
    /* Matching a caption dataset to rows. */
    const char *csv = tmp_file("c.csv");
    FILE *fp = fopen(csv, "wb");
    REQUIRE(fp);
    fputs("image,caption\nimg_002.jpg,a\nimg_000.jpg,b\n", fp);
    fclose(fp);
    imcap_captions *c;
    REQUIRE_OK(imcap_captions_load_csv(csv, &c));
    int32_t map[2];
    REQUIRE_OK(imcap_embfile_match(f, c, map));
    CHECK(map[0] == 2 && map[1] == 0);
    imcap_captions_free(c);
    fp = fopen(csv, "wb");
    REQUIRE(fp);
    fputs("image,caption\nimg_002.jpg,a\nzz.jpg,b\nyy.jpg,c\n", fp);
    fclose(fp);
    REQUIRE_OK(imcap_captions_load_csv(csv, &c));
    int32_t map3[3];
    CHECK(imcap_embfile_match(f, c, map3) == IMCAP_E_MISMATCH);
    CHECK(strstr(imcap_last_error(), "no embedding for image 'zz.jpg' (2 of 3 images missing)") != NULL);
    imcap_captions_free(c);
    imcap_embfile_close(f);
}

/* Random byte flips and cuts of a valid file: the reader refuses every one
 * with a message naming the file; resume, when it accepts the header, always
 * leaves a file the reader accepts. */

TEST(embfile_mutations_are_caught)
{
    const char *good = write_file("good.emb", 4);
    char *orig;
    size_t n;
    REQUIRE_OK(imcap_read_file(good, 1 << 20, &orig, &n));
    imcap_rng rng;
    imcap_rng_seed(&rng, 777);
    int refused = 0, accepted = 0, rounds = getenv("IMCAP_SANITIZED") ? 30 : 80;
    const char *p = tmp_file("mut.emb");
    for (int r = 0; r < rounds; r++) {
        size_t len = n;
        FILE *fp = fopen(p, "wb");
        REQUIRE(fp);
        REQUIRE(fwrite(orig, 1, n, fp) == n);
        fclose(fp);
        size_t at = (size_t)imcap_rng_below(&rng, n);
        if (imcap_rng_below(&rng, 4) == 0) {
            len = at;
            REQUIRE(truncate(p, (off_t)len) == 0);
        } else {
            unsigned char x = (unsigned char)(1 + imcap_rng_below(&rng, 255));
            unsigned char v = (unsigned char)orig[at] ^ x;
            patch(p, (long)at, &v, 1);
        }
        imcap_embfile *f = NULL;
        imcap_status st = imcap_embfile_open(p, &f);
        if (st == IMCAP_OK) {
            accepted++; /* every byte is covered by a CRC or a size check: must not happen */
            imcap_embfile_close(f);
        } else {
            refused++;
            CHECK(st == IMCAP_E_FORMAT || st == IMCAP_E_UNSUPPORTED);
            CHECK(strstr(imcap_last_error(), p) != NULL);
        }
        imcap_embfile_writer *w = NULL;
        size_t dropped;
        if (imcap_embfile_resume(p, 0, NULL, &w, &dropped) == IMCAP_OK) {
            CHECK(imcap_embfile_writer_count(w) <= 4);
            REQUIRE_OK(imcap_embfile_writer_close(w));
            REQUIRE_OK(imcap_embfile_open(p, &f));
            imcap_embfile_close(f);
        }
    }
    CHECK(accepted == 0 && refused == rounds);
    free(orig);
}

/* ------------------------------------------------------ float16 and grids */

static uint16_t f16c_encode(float x)
{
    float v[8] = {x, x, x, x, x, x, x, x};
    uint16_t h[8];
    imcap_f32_to_f16_n(v, h, 8); /* F16C in this build (x86-64-v3) */
    return h[0];
}

TEST(f16_conversions_agree_with_f16c_and_round_to_even)
{
    /* every half: decoded the same both ways, and encodes back to itself */
    static uint16_t all[65536];
    static float dec[65536];
    for (uint32_t i = 0; i < 65536; i++) all[i] = (uint16_t)i;
    imcap_f16_to_f32_n(all, dec, 65536);
    int bad = 0;
    for (uint32_t i = 0; i < 65536 && bad < 5; i++) {
        float s = imcap_f16_to_f32((uint16_t)i);
        int nan = (i & 0x7c00) == 0x7c00 && (i & 0x3ff);
        if (nan ? !(isnan(s) && isnan(dec[i])) : memcmp(&s, &dec[i], 4) != 0) bad++;
        if (!nan && imcap_f32_to_f16(s) != i) bad++;
        if (bad) test_fail_at(__FILE__, __LINE__, "half %04x: %g vs %g", i, (double)s, (double)dec[i]);
    }
    /* a sweep over float bit patterns (every exponent, many mantissas and
     * the halfway cases): the portable rounding equals F16C's */
    for (uint64_t u = 0; u < 0x100000000ull && bad < 5; u += 65521) {
        for (uint32_t d = 0; d < 3; d++) {
            uint32_t b = (uint32_t)u, t = (b & ~0x1fffu) | (0x1000u + d - 1); /* just below / at / above a tie */
            for (int k = 0; k < 2; k++) {
                uint32_t v = k ? t : b + d;
                float x;
                memcpy(&x, &v, 4);
                uint16_t s = imcap_f32_to_f16(x), h = f16c_encode(x);
                if (s != h && !(isnan(x) && (s & 0x7c00) == 0x7c00 && (s & 0x3ff) && (h & 0x3ff))) {
                    test_fail_at(__FILE__, __LINE__, "float %08x: %04x vs F16C %04x", v, s, h);
                    bad++;
                }
            }
        }
    }
    CHECK(bad == 0);
    CHECK(imcap_f32_to_f16(1.0f) == 0x3c00 && imcap_f32_to_f16(-2.0f) == 0xc000);
    CHECK(imcap_f32_to_f16(65504.0f) == 0x7bff && imcap_f32_to_f16(65519.99f) == 0x7bff);
    CHECK(imcap_f32_to_f16(65520.0f) == 0x7c00 && imcap_f32_to_f16(1e9f) == 0x7c00);
    CHECK(imcap_f32_to_f16(0x1p-24f) == 0x0001 && imcap_f32_to_f16(0x1p-25f) == 0 &&
          imcap_f32_to_f16(0x1.8p-24f) == 0x0002); /* 1.5 ulp ties to even 2 */
    CHECK(imcap_f32_to_f16(0.1f) == 0x2e66 && imcap_f16_to_f32(0x2e66) == 0.0999755859375f);
    CHECK(imcap_f32_to_f16(1.0f + 0x1p-11f) == 0x3c00 && imcap_f32_to_f16(1.0f + 0x1.8p-10f) == 0x3c02);
}

static float grid_value(size_t row, size_t j) { return (float)((int)((row * 31 + j * 17) % 97) - 40) * 0.37f; }

/* A 3 x 2 x 5 grid file in float16 and float32: layout on disk as
 * documented, values back as float32 (rounded to half in the f16 file). */
static const char *write_grid(const char *name, int dtype, size_t n)
{
    const char *p = tmp_file(name);
    imcap_emb_layout l = {3, 2, 5, dtype};
    imcap_embfile_writer *w;
    REQUIRE_OK(imcap_embfile_create_grid(p, &l, 0, "grid-encoder", &w));
    for (size_t i = 0; i < n; i++) {
        float row[30];
        char nm[32];
        snprintf(nm, sizeof nm, "img_%03zu.jpg", i);
        for (size_t j = 0; j < 30; j++) row[j] = grid_value(i, j);
        REQUIRE_OK(imcap_embfile_append(w, nm, row));
    }
    REQUIRE_OK(imcap_embfile_writer_close(w));
    return p;
}

TEST(embfile_grid_float16_and_float32_roundtrip)
{
    for (int dt = 0; dt < 2; dt++) {
        const char *p = write_grid(dt ? "g16.emb" : "g32.emb", dt ? IMCAP_EMB_F16 : IMCAP_EMB_F32, 5);
        size_t rec = 64 + (dt ? 2 : 4) * 30 + 4;
        CHECK(file_size(p) == (long)(128 + 5 * rec));
        unsigned char b[128 + 2 * 188];
        FILE *fp = fopen(p, "rb");
        REQUIRE(fp && fread(b, 1, 128 + 2 * rec, fp) == 128 + 2 * rec);
        fclose(fp);
        uint32_t u[4];
        memcpy(u, b + 8, 4);
        CHECK(u[0] == 2);
        memcpy(u, b + 96, 16);
        CHECK(u[0] == 3 && u[1] == 2 && u[2] == 5 && u[3] == (uint32_t)dt);
        memcpy(u, b + 16, 4);
        CHECK(u[0] == 30);
        const unsigned char *r = b + 128 + rec; /* row 1, value 7 as stored */
        if (dt) {
            uint16_t h;
            memcpy(&h, r + 64 + 2 * 7, 2);
            CHECK(h == imcap_f32_to_f16(grid_value(1, 7)));
        } else {
            float x;
            memcpy(&x, r + 64 + 4 * 7, 4);
            CHECK(x == grid_value(1, 7));
        }
        imcap_embfile *f;
        REQUIRE_OK(imcap_embfile_open(p, &f));
        imcap_emb_layout l = imcap_embfile_layout(f);
        CHECK(l.rows == 3 && l.cols == 2 && l.channels == 5 && l.dtype == dt);
        REQUIRE(imcap_embfile_count(f) == 5 && imcap_embfile_dim(f) == 30);
        int same = 1;
        for (size_t i = 0; i < 5; i++)
            for (size_t j = 0; j < 30; j++) {
                float want = dt ? imcap_f16_to_f32(imcap_f32_to_f16(grid_value(i, j))) : grid_value(i, j);
                same &= imcap_embfile_row(f, i)[j] == want;
            }
        CHECK(same);
        imcap_embfile_close(f);
    }
    /* flat float32 stays version 1; flat float16 is version 2, 1 x 1 x dim */
    imcap_emb_layout flat16 = {1, 1, 7, IMCAP_EMB_F16}, bad = {0, 2, 5, IMCAP_EMB_F16}, bad2 = {2, 2, 5, 9};
    imcap_embfile_writer *w;
    CHECK(imcap_embfile_create_grid(tmp_file("bad.emb"), &bad, 0, NULL, &w) == IMCAP_E_ARG);
    CHECK(imcap_embfile_create_grid(tmp_file("bad.emb"), &bad2, 0, NULL, &w) == IMCAP_E_ARG);
    REQUIRE_OK(imcap_embfile_create_grid(tmp_file("flat16.emb"), &flat16, 0, NULL, &w));
    imcap_emb_layout wl = imcap_embfile_writer_layout(w);
    CHECK(wl.rows == 1 && wl.channels == 7 && wl.dtype == IMCAP_EMB_F16);
    float row[7] = {1, 2, 3, 4, 5, 6, 70000.f};
    CHECK(imcap_embfile_append(w, "big.jpg", row) == IMCAP_E_ARG);
    CHECK(strstr(imcap_last_error(), "value 6 (70000) is outside the float16 range") != NULL);
    row[6] = -65504.f;
    REQUIRE_OK(imcap_embfile_append(w, "ok.jpg", row));
    REQUIRE_OK(imcap_embfile_writer_close(w));
    imcap_embfile *f;
    REQUIRE_OK(imcap_embfile_open(tmp_file("flat16.emb"), &f));
    CHECK(imcap_embfile_count(f) == 1 && imcap_embfile_row(f, 0)[6] == -65504.f);
    imcap_embfile_close(f);
}

/* Rewrites the header CRC after a patch of header bytes. */
static void fix_header_crc(const char *path)
{
    unsigned char b[128];
    FILE *fp = fopen(path, "r+b");
    REQUIRE(fp && fread(b, 1, 128, fp) == 128);
    uint32_t crc = imcap_crc32(0, b, 124);
    REQUIRE(fseek(fp, 124, SEEK_SET) == 0 && fwrite(&crc, 4, 1, fp) == 1);
    fclose(fp);
}

TEST(embfile_grid_bad_files_and_resume)
{
    const char *p = write_grid("g.emb", IMCAP_EMB_F16, 4);
    const long rec = 64 + 2 * 30 + 4;
    const char *q = tmp_file("q.emb");
    char cmd[1600];
#define RESET() do { snprintf(cmd, sizeof cmd, "cp %s %s", p, q); REQUIRE(system(cmd) == 0); } while (0)
    RESET();
    patch(q, 128 + rec + 64 + 6, "\x55", 1);
    expect_open_error(q, IMCAP_E_FORMAT, "row 1: CRC mismatch");
    RESET();
    patch(q, 96, "\x04", 1); /* 4 x 2 x 5 != 30 */
    fix_header_crc(q);
    expect_open_error(q, IMCAP_E_FORMAT, "grid 4 x 2 x 5 does not fit dimension 30");
    RESET();
    patch(q, 108, "\x02", 1);
    fix_header_crc(q);
    expect_open_error(q, IMCAP_E_FORMAT, "value type 2");
    RESET();
    patch(q, 112, "\x01", 1);
    fix_header_crc(q);
    expect_open_error(q, IMCAP_E_FORMAT, "reserved header byte 112");
    RESET();
    patch(q, 8, "\x03", 1);
    fix_header_crc(q);
    expect_open_error(q, IMCAP_E_UNSUPPORTED, "version 3");
    /* an infinite half with a valid record CRC */
    RESET();
    {
        unsigned char r[188];
        FILE *fp = fopen(q, "r+b");
        REQUIRE(fp && fseek(fp, 128 + 2 * rec, SEEK_SET) == 0 && fread(r, 1, (size_t)rec, fp) == (size_t)rec);
        r[64 + 2 * 3] = 0x00, r[64 + 2 * 3 + 1] = 0x7c;
        uint32_t crc = imcap_crc32(0, r, (size_t)rec - 4);
        memcpy(r + rec - 4, &crc, 4);
        REQUIRE(fseek(fp, 128 + 2 * rec, SEEK_SET) == 0 && fwrite(r, 1, (size_t)rec, fp) == (size_t)rec);
        fclose(fp);
    }
    expect_open_error(q, IMCAP_E_FORMAT, "row 2 ('img_002.jpg'): value 3 is not finite");
    /* a torn row at the end: resume keeps the 4 rows and the layout */
    RESET();
    FILE *fp = fopen(q, "ab");
    REQUIRE(fp && fwrite(cmd, 1, 50, fp) == 50);
    fclose(fp);
    expect_open_error(q, IMCAP_E_FORMAT, "50 bytes after the 4 rows");
    imcap_embfile_writer *w;
    size_t dropped = 0;
    REQUIRE_OK(imcap_embfile_resume(q, 30, "grid-encoder", &w, &dropped));
    CHECK(dropped == 1 && imcap_embfile_writer_count(w) == 4);
    imcap_emb_layout l = imcap_embfile_writer_layout(w);
    CHECK(l.rows == 3 && l.cols == 2 && l.channels == 5 && l.dtype == IMCAP_EMB_F16);
    float row[30];
    for (size_t j = 0; j < 30; j++) row[j] = grid_value(4, j);
    REQUIRE_OK(imcap_embfile_append(w, "img_004.jpg", row));
    REQUIRE_OK(imcap_embfile_writer_close(w));
    const char *full = write_grid("full.emb", IMCAP_EMB_F16, 5);
    snprintf(cmd, sizeof cmd, "cmp -s %s %s", full, q);
    CHECK(system(cmd) == 0);
#undef RESET
}
