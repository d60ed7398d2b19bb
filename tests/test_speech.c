#define _POSIX_C_SOURCE 200809L
#include "test.h"
#include "internal.h"

#include <dirent.h>
#include <pthread.h>
#include <sys/stat.h>

static uint32_t rd32(const unsigned char *b) { return b[0] | b[1] << 8 | b[2] << 16 | (uint32_t)b[3] << 24; }
static uint16_t rd16(const unsigned char *b) { return (uint16_t)(b[0] | b[1] << 8); }

/* Parse a canonical 44-byte-header PCM WAV; returns the sample count or -1. */
static long check_wav(const char *path, int *rate, double *rms)
{
    char *d;
    size_t n;
    if (imcap_read_file(path, 1 << 26, &d, &n)) return -1;
    const unsigned char *b = (const unsigned char *)d;
    long out = -1;
    if (n >= 44 && !memcmp(b, "RIFF", 4) && rd32(b + 4) == n - 8 && !memcmp(b + 8, "WAVEfmt ", 8) &&
        rd32(b + 16) == 16 && rd16(b + 20) == 1 && rd16(b + 22) == 1 && rd16(b + 34) == 16 &&
        rd16(b + 32) == 2 && rd32(b + 28) == 2 * rd32(b + 24) && !memcmp(b + 36, "data", 4) &&
        rd32(b + 40) == n - 44 && (n - 44) % 2 == 0) {
        *rate = (int)rd32(b + 24);
        out = (long)(n - 44) / 2;
        double s = 0;
        for (long i = 0; i < out; i++) {
            double v = (int16_t)rd16(b + 44 + 2 * i);
            s += v * v;
        }
        *rms = out ? sqrt(s / (double)out) : 0;
    }
    free(d);
    return out;
}

TEST(speech_wav_for_a_sentence_has_valid_header_and_duration)
{
    char path[600];
    snprintf(path, sizeof path, "%s/say.wav", test_tmpdir());
    imcap_speech_params p = imcap_speech_default_params();
    REQUIRE_OK(imcap_speech_write_wav("a brown dog runs through the grass", &p, path));
    int rate = 0;
    double rms = 0;
    long n = check_wav(path, &rate, &rms);
    REQUIRE(n > 0);
    CHECK(rate == 22050);
    /* 7 words at 175 words/minute is about 2.4 s of speech; allow pauses. */
    double secs = (double)n / rate;
    CHECK(secs > 1.0 && secs < 5.0);
    CHECK(rms > 300); /* not silence */

    /* imcap_speech_synth gives the same speech (espeak-ng adds a little
     * random noise to unvoiced sounds, so lengths differ by a few samples). */
    int16_t *pcm;
    size_t m;
    int r2;
    REQUIRE_OK(imcap_speech_synth("a brown dog runs through the grass", &p, &pcm, &m, &r2));
    CHECK(labs((long)m - n) < n / 100 && r2 == rate);
    imcap_speech_free(pcm);
}

TEST(speech_rate_changes_duration)
{
    imcap_speech_params slow = imcap_speech_default_params(), fast = slow;
    slow.rate = 100;
    fast.rate = 350;
    int16_t *a, *b;
    size_t na, nb;
    int ra, rb;
    const char *t = "two children are playing football in a park";
    REQUIRE_OK(imcap_speech_synth(t, &slow, &a, &na, &ra));
    REQUIRE_OK(imcap_speech_synth(t, &fast, &b, &nb, &rb));
    CHECK(na > 2 * nb);
    imcap_speech_free(a);
    imcap_speech_free(b);
}

TEST(speech_other_voice_differs)
{
    imcap_speech_params p = imcap_speech_default_params(), q = p;
    q.voice = "en+f3";
    int16_t *a, *b;
    size_t na, nb;
    int ra, rb;
    REQUIRE_OK(imcap_speech_synth("a man rides a bike", &p, &a, &na, &ra));
    REQUIRE_OK(imcap_speech_synth("a man rides a bike", &q, &b, &nb, &rb));
    CHECK(na != nb || memcmp(a, b, na * 2) != 0);
    imcap_speech_free(a);
    imcap_speech_free(b);
}

TEST(speech_bad_arguments_are_refused_and_write_nothing)
{
    char path[600];
    snprintf(path, sizeof path, "%s/bad.wav", test_tmpdir());
    imcap_speech_params p = imcap_speech_default_params();
    p.voice = "no-such-voice-xyz";
    CHECK(imcap_speech_write_wav("hello", &p, path) == IMCAP_E_ARG);
    CHECK(strstr(imcap_last_error(), "no-such-voice-xyz") != NULL);
    struct stat st;
    CHECK(stat(path, &st) != 0);

    p.voice = "../../etc/passwd";
    CHECK(imcap_speech_write_wav("hello", &p, path) == IMCAP_E_ARG);
    CHECK(strstr(imcap_last_error(), "voice name") != NULL);

    p = imcap_speech_default_params();
    p.rate = 10;
    CHECK(imcap_speech_write_wav("hello", &p, path) == IMCAP_E_ARG);
    CHECK(strstr(imcap_last_error(), "rate") != NULL);

    p = imcap_speech_default_params();
    CHECK(imcap_speech_write_wav("  \n", &p, path) == IMCAP_E_ARG);
    CHECK(strstr(imcap_last_error(), "empty") != NULL);
    CHECK(stat(path, &st) != 0);

    /* After failures a good call still works (no stale espeak-ng state). */
    REQUIRE_OK(imcap_speech_write_wav("hello", &p, path));
    CHECK(stat(path, &st) == 0);
}

TEST(speech_wav_to_unwritable_place_names_the_file)
{
    int16_t s[4] = {0, 1000, -1000, 0};
    CHECK(imcap_wav_write("/nonexistent-dir/x.wav", s, 4, 22050) == IMCAP_E_IO);
    CHECK(strstr(imcap_last_error(), "/nonexistent-dir/x") != NULL);
    char path[600];
    snprintf(path, sizeof path, "%s/four.wav", test_tmpdir());
    REQUIRE_OK(imcap_wav_write(path, s, 4, 16000));
    int rate;
    double rms;
    CHECK(check_wav(path, &rate, &rms) == 4 && rate == 16000);
    CHECK(imcap_wav_write(path, s, 4, 10) == IMCAP_E_ARG);
}

static int have_dev_snd_playback(void)
{
    DIR *d = opendir("/dev/snd");
    if (!d) return 0;
    int found = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t l = strlen(e->d_name);
        if (l > 5 && !strncmp(e->d_name, "pcmC", 4) && e->d_name[l - 1] == 'p') found = 1;
    }
    closedir(d);
    return found;
}

TEST(speech_play_without_audio_device_is_a_clear_error)
{
    if (have_dev_snd_playback()) SKIP("this machine has an ALSA playback device");
    unsetenv("PULSE_SERVER");
    setenv("XDG_RUNTIME_DIR", test_tmpdir(), 1);
    imcap_speech_params p = imcap_speech_default_params();
    CHECK(imcap_speech_play("hello", &p) == IMCAP_E_UNSUPPORTED);
    CHECK(strstr(imcap_last_error(), "no audio output device") != NULL);
}

struct synth_job {
    int16_t *pcm;
    size_t n;
    int rate;
    int st;
};

static void *synth_thread(void *arg)
{
    struct synth_job *j = arg;
    imcap_speech_params p = imcap_speech_default_params();
    j->st = imcap_speech_synth("a girl in a pink dress climbs the stairs", &p, &j->pcm, &j->n, &j->rate);
    return NULL;
}

TEST(speech_concurrent_calls_all_succeed)
{
    struct synth_job jobs[3] = {{0}};
    pthread_t th[3];
    for (int i = 0; i < 3; i++) REQUIRE(pthread_create(&th[i], NULL, synth_thread, &jobs[i]) == 0);
    for (int i = 0; i < 3; i++) pthread_join(th[i], NULL);
    for (int i = 0; i < 3; i++) REQUIRE(jobs[i].st == 0 && jobs[i].n > 0);
    /* Same speech up to espeak-ng's noise: lengths within 1%. */
    for (int i = 1; i < 3; i++) CHECK(labs((long)jobs[i].n - (long)jobs[0].n) < (long)jobs[0].n / 100);
    for (int i = 0; i < 3; i++) imcap_speech_free(jobs[i].pcm);
}

TEST(speech_wav_encode_in_memory_equals_the_file)
{
    int16_t s[5] = {0, 1000, -1000, 32767, -32768};
    uint8_t *wav;
    size_t len;
    REQUIRE_OK(imcap_wav_encode(s, 5, 22050, &wav, &len));
    CHECK(len == 44 + 10);
    CHECK(!memcmp(wav, "RIFF", 4) && !memcmp(wav + 8, "WAVEfmt ", 8) && !memcmp(wav + 36, "data", 4));
    CHECK(wav[44 + 2] == (1000 & 0xff) && wav[44 + 3] == (1000 >> 8));
    CHECK(wav[44 + 8] == 0x00 && wav[44 + 9] == 0x80); /* -32768 little-endian */
    char path[600];
    snprintf(path, sizeof path, "%s/mem.wav", test_tmpdir());
    REQUIRE_OK(imcap_wav_write(path, s, 5, 22050));
    FILE *f = fopen(path, "rb");
    REQUIRE(f != NULL);
    uint8_t buf[128];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    CHECK(n == len && !memcmp(buf, wav, len));
    imcap_wav_free(wav);
    CHECK(imcap_wav_encode(s, 5, 10, &wav, &len) == IMCAP_E_ARG && wav == NULL);
    CHECK(strstr(imcap_last_error(), "sample rate") != NULL);
}
