/* cmd_export.c - `imcap export`: a captioner model file from a decoder
 * training checkpoint and the encoder it was trained with. */
#include "cli.h"

#include <string.h>

static const char *const EXPORT_HELP =
    "usage: imcap export --checkpoint DECODER.gguf --encoder ENC.gguf --out MODEL.imcap\n"
    "                    [--output NAME] [--embeddings EMB.f32] [--beam K] [--max-len N] [--alpha A]\n"
    "Writes one captioning model file (decoder weights, vocabulary, settings,\n"
    "preprocessing, and the encoder's name and checksum) for `imcap caption`.\n"
    "The encoder file stays separate; keep it in models/encoders/ or next to the model.\n"
    "For a decoder trained on concatenated embeddings (imcap embcat), give --encoder\n"
    "(and --output, unless the same for all) once per part, in the same order.\n"
    "Several decoders of one vocabulary and input, comma-separated (--checkpoint A,B),\n"
    "are stored as their ensemble: each word from the mean of their distributions.\n"
    "  --output NAME      encoder output the decoder was trained on (default embedding)\n"
    "  --embeddings F     the training embeddings file: checks it came from these encoders\n"
    "  --beam K           default beam width stored in the model (default 1 = greedy)\n"
    "  --max-len N        default maximum caption length in words (default 20)\n"
    "  --alpha A          default beam length normalisation exponent (default 0.7)\n"
    "  --block-ngram N    default beam search n-gram blocking (0: off, the default)\n";

int cmd_export(int argc, char **argv)
{
    const char *ckpt = NULL, *out = NULL, *emb = NULL;
    char enc[8192] = "", output[1024] = "";
    imcap_gen_params g = imcap_gen_default_params();
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        long n;
        double d;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(EXPORT_HELP, stdout);
            return 0;
        }
        if (!v) {
            fprintf(stderr, "imcap export: %s needs a value (or unknown option)\n%s", a, EXPORT_HELP);
            return 2;
        }
        i++;
        if (!strcmp(a, "--checkpoint")) ckpt = v;
        else if (!strcmp(a, "--encoder") || !strcmp(a, "--output")) {
            char *dst = a[3] == 'n' ? enc : output;
            size_t cap = a[3] == 'n' ? sizeof enc : sizeof output, l = strlen(dst);
            if (strchr(v, ',') || l + strlen(v) + 2 > cap) {
                fprintf(stderr, "imcap export: %s '%s': no commas, and not that many\n", a, v);
                return 2;
            }
            snprintf(dst + l, cap - l, "%s%s", l ? "," : "", v);
        } else if (!strcmp(a, "--out")) out = v;
        else if (!strcmp(a, "--embeddings")) emb = v;
        else if (!strcmp(a, "--beam")) {
            if (cli_parse_int(a, v, 1, 64, &n)) return 2;
            g.beam = (int)n;
        } else if (!strcmp(a, "--max-len")) {
            if (cli_parse_int(a, v, 1, 100, &n)) return 2;
            g.max_len = (int)n;
        } else if (!strcmp(a, "--alpha")) {
            if (cli_parse_double(a, v, 0, 2, &d)) return 2;
            g.length_alpha = (float)d;
        } else if (!strcmp(a, "--block-ngram")) {
            if (cli_parse_int(a, v, 0, 8, &n)) return 2;
            g.block_ngram = (int)n;
        } else {
            fprintf(stderr, "imcap export: unknown option %s\n%s", a, EXPORT_HELP);
            return 2;
        }
    }
    if (!ckpt || !enc[0] || !out) {
        fprintf(stderr, "imcap export: --checkpoint, --encoder and --out are required\n%s", EXPORT_HELP);
        return 2;
    }
    imcap_status st = imcap_captioner_export(ckpt, enc, output[0] ? output : "embedding", emb, &g, out);
    if (st) return cli_error("export", st);
    /* Load it back: the same checks `imcap caption` will make. */
    imcap_captioner *c;
    if ((st = imcap_captioner_load(out, enc, &c))) return cli_error("export", st);
    fprintf(stderr, "imcap export: %s: %d-word vocabulary, encoder %s (%s), default beam %d\n", out,
            imcap_captioner_vocab_size(c), imcap_captioner_encoder_name(c), output[0] ? output : "embedding",
            g.beam);
    imcap_captioner_free(c);
    return 0;
}
