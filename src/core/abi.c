/*
 * abi.c - sizes of the public structs, for bindings that mirror them
 * (python/imcap checks its ctypes layouts against these at import).
 */
#include "internal.h"

#include <string.h>

#define ABI_ENTRY(t) {#t, sizeof(t)}

static const struct {
    const char *name;
    size_t size;
} abi_types[] = {
    ABI_ENTRY(imcap_emb_layout),    ABI_ENTRY(imcap_train_report), ABI_ENTRY(imcap_train_params),
    ABI_ENTRY(imcap_scst_report),   ABI_ENTRY(imcap_scst_params),  ABI_ENTRY(imcap_gen_params),
    ABI_ENTRY(imcap_score_item),    ABI_ENTRY(imcap_scores),       ABI_ENTRY(imcap_eval_params),
    ABI_ENTRY(imcap_eval_result),   ABI_ENTRY(imcap_image),        ABI_ENTRY(imcap_extract_params),
    ABI_ENTRY(imcap_extract_report), ABI_ENTRY(imcap_caption_alt), ABI_ENTRY(imcap_caption),
    ABI_ENTRY(imcap_speech_params),
};

size_t imcap_abi_sizeof(const char *type_name)
{
    if (!type_name) return 0;
    for (size_t i = 0; i < sizeof abi_types / sizeof abi_types[0]; i++)
        if (!strcmp(abi_types[i].name, type_name)) return abi_types[i].size;
    return 0;
}
