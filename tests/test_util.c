#include "test.h"
#include "internal.h"

#include <sys/stat.h>

TEST(util_crc32_known_value)
{
    CHECK(imcap_crc32(0, "123456789", 9) == 0xCBF43926u);
    uint32_t c = imcap_crc32(0, "12345", 5);
    CHECK(imcap_crc32(c, "6789", 4) == 0xCBF43926u);
}

TEST(util_size_overflow_is_refused)
{
    size_t out;
    CHECK(!imcap_mul_size(SIZE_MAX / 2 + 1, 2, &out));
    CHECK(imcap_mul_size(1000, 1000, &out) && out == 1000000);
    CHECK(imcap_alloc(SIZE_MAX / 4, 8) == NULL);
    CHECK(strstr(imcap_last_error(), "overflow") != NULL);
}

TEST(util_atomic_write_commit_and_abort)
{
    char path[600];
    snprintf(path, sizeof path, "%s/f.bin", test_tmpdir());
    imcap_atomic_file af;
    REQUIRE_OK(imcap_atomic_open(&af, path));
    REQUIRE_OK(imcap_atomic_write(&af, "hello", 5));
    REQUIRE_OK(imcap_atomic_commit(&af));
    char *data;
    size_t len;
    REQUIRE_OK(imcap_read_file(path, 100, &data, &len));
    CHECK(len == 5 && memcmp(data, "hello", 5) == 0);
    free(data);
    /* An aborted rewrite leaves the old content. */
    REQUIRE_OK(imcap_atomic_open(&af, path));
    REQUIRE_OK(imcap_atomic_write(&af, "garbage", 7));
    imcap_atomic_abort(&af);
    REQUIRE_OK(imcap_read_file(path, 100, &data, &len));
    CHECK(len == 5 && memcmp(data, "hello", 5) == 0);
    free(data);
}

TEST(util_read_file_errors_name_the_file)
{
    char *data;
    size_t len;
    CHECK(imcap_read_file("/nonexistent/x.txt", 100, &data, &len) == IMCAP_E_IO);
    CHECK(strstr(imcap_last_error(), "/nonexistent/x.txt") != NULL);
    CHECK(imcap_read_file("/etc/passwd", 1, &data, &len) == IMCAP_E_FORMAT);
}

TEST(util_rng_is_deterministic_and_uniform)
{
    imcap_rng a, b;
    imcap_rng_seed(&a, 42);
    imcap_rng_seed(&b, 42);
    for (int i = 0; i < 100; i++) CHECK(imcap_rng_next(&a) == imcap_rng_next(&b));
    double sum = 0;
    int hist[10] = {0};
    for (int i = 0; i < 100000; i++) {
        double u = imcap_rng_uniform(&a);
        sum += u;
        hist[imcap_rng_below(&a, 10)]++;
    }
    CHECK_NEAR(sum / 100000, 0.5, 0.01);
    for (int i = 0; i < 10; i++) CHECK(hist[i] > 9500 && hist[i] < 10500);
}
