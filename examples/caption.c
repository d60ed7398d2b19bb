/*
 * caption.c - the smallest program over an installed libimcap:
 *   cc caption.c $(pkg-config --cflags --libs imcap) -o caption
 *   ./caption photo.jpg...
 * Loads the default captioner (imcap_default_model_path: $IMCAP_MODEL,
 * ./models/default.imcap, or the installed share/imcap/models/default.imcap)
 * and prints "path<TAB>caption" for each photo; the first line names the
 * model and encoder files it loaded.
 */
#include <imcap.h>

#include <stdio.h>

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s photo...\n", argv[0]);
        return 2;
    }
    char model[4096];
    imcap_captioner *c;
    if (imcap_default_model_path(model, sizeof model) || imcap_captioner_load(model, NULL, &c)) {
        fprintf(stderr, "%s: %s\n", argv[0], imcap_last_error());
        return 1;
    }
    printf("# imcap %s, model %s, encoder %s\n", imcap_version(), model, imcap_captioner_encoder_path(c));
    int rc = 0;
    for (int i = 1; i < argc; i++) {
        imcap_caption *cap;
        if (imcap_caption_file(c, argv[i], NULL, &cap)) {
            fprintf(stderr, "%s: %s\n", argv[0], imcap_last_error());
            rc = 1;
            continue;
        }
        printf("%s\t%s\n", argv[i], cap->alt[0].text);
        imcap_caption_free(cap);
    }
    imcap_captioner_free(c);
    return rc;
}
