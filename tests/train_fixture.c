/* train_fixture.c - scaffolding of the training tests (train_fixture.h). */
#include "train_fixture.h"
#include "fixture.h"
#include "internal.h"
#include "test.h"

#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

char *fixture_slurp(const char *path, size_t *len)
{
    char *d;
    REQUIRE_OK(imcap_read_file(path, 64u << 20, &d, len));
    return d;
}

void fixture_same_file_at(const char *file, int line, const char *a, const char *b)
{
    size_t la, lb;
    char *da = fixture_slurp(a, &la), *db = fixture_slurp(b, &lb);
    if (la != lb || memcmp(da, db, la) != 0)
        test_fail_at(file, line, "%s (%zu bytes) differs from %s (%zu bytes)", a, la, b, lb);
    free(da);
    free(db);
}

int fixture_kill_runs(imcap_status (*run)(void *ctx), void *ctx)
{
    const long delays_us[] = {30000, 70000, 5000, 110000, 1000, 50000};
    int kills = 0;
    for (size_t k = 0; k < sizeof delays_us / sizeof *delays_us; k++) {
        pid_t pid = fork();
        REQUIRE(pid >= 0);
        if (pid == 0) _exit(run(ctx) == IMCAP_OK ? 0 : 3);
        struct timespec ts = {0, delays_us[k] * 1000};
        nanosleep(&ts, NULL);
        kill(pid, SIGKILL);
        int st;
        REQUIRE(waitpid(pid, &st, 0) == pid);
        if (WIFSIGNALED(st)) kills++;
        else REQUIRE(WIFEXITED(st) && WEXITSTATUS(st) == 0); /* finished before the kill */
    }
    return kills;
}

void fixture_resume_refuses_damage(const char *checkpoint, imcap_status (*resume)(void *ctx), void *ctx)
{
    size_t n;
    char *good = fixture_slurp(checkpoint, &n);
    const char *base = strrchr(checkpoint, '/') ? strrchr(checkpoint, '/') + 1 : checkpoint;
    static const char *const tensors[3] = {"lstm.weight_hh", "adam.m", "adam.v"};
    for (int k = 0; k < 3; k++) {
        FILE *fp = fopen(checkpoint, "wb");
        REQUIRE(fp && fwrite(good, 1, n, fp) == n && fclose(fp) == 0);
        const float big = 1e37f;
        fixture_poke_tensor(checkpoint, tensors[k], 4, &big, sizeof big);
        const imcap_status s = resume(ctx);
        const char *e = imcap_last_error();
        if (s != IMCAP_E_FORMAT || !strstr(e, base) || !strstr(e, tensors[k]) || !strstr(e, "checksum"))
            test_fail_at(__FILE__, __LINE__, "%s damaged in %s: status %d, \"%s\"", base, tensors[k], (int)s, e);
    }
    free(good);
}

void fixture_grid_embeddings(const char *path, const char *encoder, const char *name_fmt, int n, uint64_t seed,
                             float shift)
{
    imcap_emb_layout lay = {.rows = 2, .cols = 3, .channels = 4, .dtype = IMCAP_EMB_F32};
    imcap_embfile_writer *ew;
    REQUIRE_OK(imcap_embfile_create_grid(path, &lay, 0, encoder, &ew));
    imcap_rng rng;
    imcap_rng_seed(&rng, seed);
    for (int i = 0; i < n; i++) {
        char name[64];
        float row[24];
        snprintf(name, sizeof name, name_fmt, i);
        for (int k = 0; k < 24; k++) {
            row[k] = (float)imcap_rng_normal(&rng);
            if (shift != 0.0f) row[k] += i < n / 2 ? shift : -shift;
        }
        REQUIRE_OK(imcap_embfile_append(ew, name, row));
    }
    REQUIRE_OK(imcap_embfile_writer_close(ew));
}
