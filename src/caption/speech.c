/*
 * speech.c - captions as sound: text to 16-bit PCM through libespeak-ng's
 * synchronous synthesis callback, RIFF/WAVE files written by hand
 * (atomically), and playback on the audio device through espeak-ng's own
 * output (pcaudiolib).
 *
 * espeak-ng keeps global state (one voice, one callback, one output mode),
 * so every call here holds g_lock for its whole duration.
 */
#define _POSIX_C_SOURCE 200809L
#include "internal.h"

#include <dirent.h>
#include <espeak-ng/espeak_ng.h>
#include <espeak-ng/speak_lib.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

enum { SPEECH_MAX_TEXT = 64 * 1024, SPEECH_MAX_VOICE = 64 };

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static int g_init_state; /* 0: not tried, 1: ready, -1: failed (g_init_msg says why) */
static char g_init_msg[512];

/* The PCM being collected by the running synthesis (under g_lock). */
static struct pcm_sink {
    int16_t *data;
    size_t n, cap;
    int failed;
} *g_sink;

imcap_speech_params imcap_speech_default_params(void)
{
    imcap_speech_params p = {.voice = "en", .rate = espeakRATE_NORMAL};
    return p;
}

void imcap_speech_free(int16_t *samples) { free(samples); }

static void status_message(espeak_ng_STATUS s, char *buf, size_t len)
{
    espeak_ng_GetStatusCodeMessage(s, buf, len);
    if (!buf[0]) snprintf(buf, len, "espeak-ng status 0x%x", (unsigned)s);
}

/* Under g_lock. */
static imcap_status ensure_init(void)
{
    if (g_init_state == 1) return IMCAP_OK;
    if (g_init_state == 0) {
        espeak_ng_ERROR_CONTEXT ctx = NULL;
        espeak_ng_InitializePath(NULL);
        espeak_ng_STATUS s = espeak_ng_Initialize(&ctx);
        espeak_ng_ClearErrorContext(&ctx);
        if (s != ENS_OK) {
            char m[256];
            status_message(s, m, sizeof m);
            snprintf(g_init_msg, sizeof g_init_msg,
                     "speech: cannot initialise espeak-ng (is the espeak-ng-data package installed?): %s", m);
            g_init_state = -1;
        } else {
            g_init_state = 1;
        }
    }
    if (g_init_state < 0) return imcap_fail(IMCAP_E_UNSUPPORTED, "%s", g_init_msg);
    return IMCAP_OK;
}

static int synth_cb(short *wav, int n, espeak_EVENT *events)
{
    (void)events;
    struct pcm_sink *s = g_sink;
    if (!wav || n <= 0 || !s) return 0;
    if (s->n + (size_t)n > s->cap) {
        size_t cap = s->cap ? s->cap : 16384;
        while (cap < s->n + (size_t)n) cap *= 2;
        int16_t *d = realloc(s->data, cap * sizeof *d);
        if (!d) {
            s->failed = 1;
            return 1; /* abort synthesis */
        }
        s->data = d;
        s->cap = cap;
    }
    memcpy(s->data + s->n, wav, (size_t)n * sizeof *wav);
    s->n += (size_t)n;
    return 0;
}

static imcap_status check_args(const char *text, const imcap_speech_params *p)
{
    if (!text) return imcap_fail(IMCAP_E_ARG, "speech: no text");
    size_t len = strlen(text);
    size_t i = 0;
    while (i < len && strchr(" \t\r\n", text[i])) i++;
    if (i == len) return imcap_fail(IMCAP_E_ARG, "speech: empty text, nothing to say");
    if (len > SPEECH_MAX_TEXT)
        return imcap_fail(IMCAP_E_ARG, "speech: text of %zu bytes is longer than the limit of %d", len,
                          SPEECH_MAX_TEXT);
    if (!p->voice || !p->voice[0]) return imcap_fail(IMCAP_E_ARG, "speech: empty voice name");
    size_t vl = strlen(p->voice);
    if (vl > SPEECH_MAX_VOICE) return imcap_fail(IMCAP_E_ARG, "speech: voice name is too long");
    for (size_t k = 0; k < vl; k++) {
        char c = p->voice[k];
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
                 c == '_' || c == '+';
        if (!ok)
            return imcap_fail(IMCAP_E_ARG,
                              "speech: voice name '%s' has the character '%c'; voice names are letters, "
                              "digits, '-', '_' and '+' (see 'espeak-ng --voices')",
                              p->voice, c);
    }
    if (p->rate < espeakRATE_MINIMUM || p->rate > espeakRATE_MAXIMUM)
        return imcap_fail(IMCAP_E_ARG, "speech: rate %d words/minute is outside [%d, %d]", p->rate,
                          espeakRATE_MINIMUM, espeakRATE_MAXIMUM);
    return IMCAP_OK;
}

/* Under g_lock, after ensure_init: select output mode, voice and rate. */
static imcap_status configure(espeak_ng_OUTPUT_MODE mode, const imcap_speech_params *p)
{
    char m[256];
    espeak_ng_STATUS s = espeak_ng_InitializeOutput(mode, 0, NULL);
    if (s != ENS_OK) {
        status_message(s, m, sizeof m);
        return imcap_fail(IMCAP_E_UNSUPPORTED, "speech: cannot set up espeak-ng output: %s", m);
    }
    s = espeak_ng_SetVoiceByName(p->voice);
    if (s != ENS_OK) {
        status_message(s, m, sizeof m);
        return imcap_fail(IMCAP_E_ARG, "speech: voice '%s': %s (list them with 'espeak-ng --voices')",
                          p->voice, m);
    }
    s = espeak_ng_SetParameter(espeakRATE, p->rate, 0);
    if (s != ENS_OK) {
        status_message(s, m, sizeof m);
        return imcap_fail(IMCAP_E_ARG, "speech: rate %d: %s", p->rate, m);
    }
    return IMCAP_OK;
}

static espeak_ng_STATUS say(const char *text)
{
    espeak_ng_STATUS s = espeak_ng_Synthesize(text, strlen(text) + 1, 0, POS_CHARACTER, 0, espeakCHARS_UTF8,
                                              NULL, NULL);
    espeak_ng_STATUS s2 = espeak_ng_Synchronize();
    return s != ENS_OK ? s : s2;
}

imcap_status imcap_speech_synth(const char *text, const imcap_speech_params *p, int16_t **samples,
                                size_t *n_samples, int *sample_rate)
{
    *samples = NULL;
    *n_samples = 0;
    *sample_rate = 0;
    imcap_speech_params d = imcap_speech_default_params();
    if (!p) p = &d;
    imcap_status st = check_args(text, p);
    if (st) return st;

    pthread_mutex_lock(&g_lock);
    struct pcm_sink sink = {0};
    if ((st = ensure_init()) || (st = configure(ENOUTPUT_MODE_SYNCHRONOUS, p))) goto out;
    espeak_SetSynthCallback(synth_cb);
    g_sink = &sink;
    espeak_ng_STATUS s = say(text);
    g_sink = NULL;
    if (sink.failed) {
        st = imcap_fail(IMCAP_E_NOMEM, "speech: out of memory collecting %zu samples", sink.n);
        goto out;
    }
    if (s != ENS_OK) {
        char m[256];
        status_message(s, m, sizeof m);
        st = imcap_fail(IMCAP_E_INTERNAL, "speech: espeak-ng synthesis failed: %s", m);
        goto out;
    }
    if (sink.n == 0) {
        st = imcap_fail(IMCAP_E_ARG, "speech: espeak-ng produced no sound for the text");
        goto out;
    }
    *sample_rate = espeak_ng_GetSampleRate();
    *samples = sink.data;
    *n_samples = sink.n;
    sink.data = NULL;
out:
    pthread_mutex_unlock(&g_lock);
    free(sink.data);
    return st;
}

static void put_u32(unsigned char *b, uint32_t v)
{
    for (int i = 0; i < 4; i++) b[i] = (unsigned char)(v >> (8 * i));
}

static void put_u16(unsigned char *b, uint16_t v)
{
    b[0] = (unsigned char)v;
    b[1] = (unsigned char)(v >> 8);
}

imcap_status imcap_wav_encode(const int16_t *samples, size_t n_samples, int sample_rate, uint8_t **out,
                              size_t *len)
{
    *out = NULL;
    *len = 0;
    if (sample_rate < 1000 || sample_rate > 384000)
        return imcap_fail(IMCAP_E_ARG, "sample rate %d Hz is out of range", sample_rate);
    size_t data_bytes, total;
    if (!imcap_mul_size(n_samples, 2, &data_bytes) || data_bytes > UINT32_MAX - 36)
        return imcap_fail(IMCAP_E_ARG, "%zu samples do not fit a WAV file", n_samples);
    total = 44 + data_bytes;
    unsigned char *h = malloc(total);
    if (!h) return imcap_fail(IMCAP_E_NOMEM, "out of memory for %zu bytes of WAV", total);
    memcpy(h, "RIFF", 4);
    put_u32(h + 4, (uint32_t)(36 + data_bytes));
    memcpy(h + 8, "WAVEfmt ", 8);
    put_u32(h + 16, 16);                          /* fmt chunk size */
    put_u16(h + 20, 1);                           /* PCM */
    put_u16(h + 22, 1);                           /* mono */
    put_u32(h + 24, (uint32_t)sample_rate);       /* samples per second */
    put_u32(h + 28, (uint32_t)sample_rate * 2u);  /* bytes per second */
    put_u16(h + 32, 2);                           /* block align */
    put_u16(h + 34, 16);                          /* bits per sample */
    memcpy(h + 36, "data", 4);
    put_u32(h + 40, (uint32_t)data_bytes);
    /* Samples little-endian whatever the host order. */
    for (size_t i = 0; i < n_samples; i++) put_u16(h + 44 + 2 * i, (uint16_t)samples[i]);
    *out = h;
    *len = total;
    return IMCAP_OK;
}

void imcap_wav_free(uint8_t *wav) { free(wav); }

imcap_status imcap_wav_write(const char *path, const int16_t *samples, size_t n_samples, int sample_rate)
{
    if (!path || !path[0]) return imcap_fail(IMCAP_E_ARG, "wav: no output path");
    uint8_t *wav;
    size_t len;
    imcap_status st = imcap_wav_encode(samples, n_samples, sample_rate, &wav, &len);
    if (st) return imcap_fail_prefix(st, "%s", path);
    imcap_atomic_file af;
    if ((st = imcap_atomic_open(&af, path))) goto done;
    if ((st = imcap_atomic_write(&af, wav, len))) {
        imcap_atomic_abort(&af);
        goto done;
    }
    st = imcap_atomic_commit(&af);
done:
    imcap_wav_free(wav);
    return st;
}

imcap_status imcap_speech_write_wav(const char *text, const imcap_speech_params *p, const char *path)
{
    int16_t *pcm;
    size_t n;
    int rate;
    imcap_status st = imcap_speech_synth(text, p, &pcm, &n, &rate);
    if (st) return st;
    st = imcap_wav_write(path, pcm, n, rate);
    imcap_speech_free(pcm);
    return st;
}

/* Is there anything to play sound on? An ALSA playback device node
 * (/dev/snd/pcmC*D*p) or a PulseAudio/PipeWire server. Checked first so
 * that a machine without sound gets one clear message (and ALSA does not
 * write its configuration errors to stderr). */
static int have_audio_output(void)
{
    const char *ps = getenv("PULSE_SERVER");
    if (ps && ps[0]) return 1;
    const char *xdg = getenv("XDG_RUNTIME_DIR");
    struct stat st;
    if (xdg && xdg[0]) {
        char path[1024];
        snprintf(path, sizeof path, "%s/pulse/native", xdg);
        if (stat(path, &st) == 0) return 1;
    }
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

imcap_status imcap_speech_play(const char *text, const imcap_speech_params *p)
{
    imcap_speech_params d = imcap_speech_default_params();
    if (!p) p = &d;
    imcap_status st = check_args(text, p);
    if (st) return st;
    if (!have_audio_output())
        return imcap_fail(IMCAP_E_UNSUPPORTED,
                          "speech: no audio output device (no ALSA playback device under /dev/snd and no "
                          "PulseAudio server); write the speech to a WAV file instead");
    pthread_mutex_lock(&g_lock);
    if ((st = ensure_init()) ||
        (st = configure(ENOUTPUT_MODE_SYNCHRONOUS | ENOUTPUT_MODE_SPEAK_AUDIO, p)))
        goto out;
    espeak_SetSynthCallback(synth_cb);
    g_sink = NULL;
    espeak_ng_STATUS s = say(text);
    if (s == ENS_AUDIO_ERROR) {
        st = imcap_fail(IMCAP_E_UNSUPPORTED, "speech: cannot open the audio device; write the speech to a "
                                             "WAV file instead");
    } else if (s != ENS_OK) {
        char m[256];
        status_message(s, m, sizeof m);
        st = imcap_fail(IMCAP_E_INTERNAL, "speech: espeak-ng playback failed: %s", m);
    }
out:
    pthread_mutex_unlock(&g_lock);
    return st;
}
