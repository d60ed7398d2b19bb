/*
 * datadir.c - where the default captioner model is found: the environment,
 * the current directory, or relative to the library binary itself, so that
 * a build tree (build/libimcap.so -> models/) and an installed copy
 * (PREFIX/lib/libimcap.so -> PREFIX/share/imcap/models/) both work without a
 * path compiled in (the installation stays relocatable, DESTDIR included).
 */
#define _GNU_SOURCE
#include "internal.h"

#include <dlfcn.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int is_file(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

/* Folder of the binary holding this code (libimcap.so, or the program the
 * static archive is linked into) into dir (PATH_MAX bytes); 0 if unknown. */
static int binary_dir(char *dir)
{
    Dl_info info;
    char path[PATH_MAX];
    int found = dladdr((void *)binary_dir, &info) && info.dli_fname && strchr(info.dli_fname, '/') &&
                realpath(info.dli_fname, path);
    if (!found) {
        ssize_t n = readlink("/proc/self/exe", path, sizeof path - 1);
        if (n <= 0) return 0;
        path[n] = 0;
    }
    char *slash = strrchr(path, '/');
    if (!slash) return 0;
    *slash = 0;
    memcpy(dir, path, strlen(path) + 1);
    return 1;
}

static imcap_status put(char *buf, size_t size, const char *path)
{
    size_t n = strlen(path);
    if (n + 1 > size)
        return imcap_fail(IMCAP_E_ARG, "default model: the path %s does not fit in %zu bytes", path, size);
    memcpy(buf, path, n + 1);
    return IMCAP_OK;
}

imcap_status imcap_default_model_path(char *buf, size_t size)
{
    if (!buf || !size) return imcap_fail(IMCAP_E_ARG, "imcap_default_model_path: no buffer");
    buf[0] = 0;
    const char *env = getenv("IMCAP_MODEL");
    if (env && *env) return put(buf, size, env);
    const char *local = "models/default.imcap";
    if (is_file(local)) return put(buf, size, local);
    char dir[PATH_MAX], cand[2][PATH_MAX + 64];
    if (!binary_dir(dir))
        return imcap_fail(IMCAP_E_IO, "default model: %s not found and the library's own folder is unknown; set "
                                      "IMCAP_MODEL or pass a model file", local);
    snprintf(cand[0], sizeof cand[0], "%s/../models/default.imcap", dir);
    snprintf(cand[1], sizeof cand[1], "%s/../share/imcap/models/default.imcap", dir);
    char real[PATH_MAX];
    for (int i = 0; i < 2; i++)
        if (is_file(cand[i])) return put(buf, size, realpath(cand[i], real) ? real : cand[i]);
    return imcap_fail(IMCAP_E_IO,
                      "default model not found (looked at $IMCAP_MODEL, %s, %s, %s); set IMCAP_MODEL, pass a "
                      "model file, or install one (make install)",
                      local, cand[0], cand[1]);
}
