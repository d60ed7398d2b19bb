/*
 * fuzz.h - shared by the libFuzzer harnesses (tests/fuzz/fuzz_*.c, built by
 * `make fuzz`): the loaders take paths, so each input is written to a file in
 * a per-process scratch directory (under $TMPDIR, else /dev/shm or /tmp).
 */
#ifndef IMCAP_FUZZ_H
#define IMCAP_FUZZ_H

#define _GNU_SOURCE
#include "internal.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* <scratch>/name, the scratch directory created on first use. */
static const char *fuzz_path(const char *name)
{
    static char dir[512];
    static char paths[4][700];
    static int k;
    if (!dir[0]) {
        const char *t = getenv("TMPDIR");
        struct stat st;
        if (!t || !*t) t = stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) ? "/dev/shm" : "/tmp";
        snprintf(dir, sizeof dir, "%s/imcap-fuzz-%ld", t, (long)getpid());
        mkdir(dir, 0700);
    }
    char *p = paths[k++ % 4];
    snprintf(p, sizeof paths[0], "%s/%s", dir, name);
    return p;
}

/* Writes data to <scratch>/name and returns the path (abort on failure:
 * the harness itself is broken then, not the code under test). */
static const char *fuzz_file(const char *name, const void *data, size_t size)
{
    const char *p = fuzz_path(name);
    FILE *fp = fopen(p, "wb");
    if (!fp || (size && fwrite(data, 1, size, fp) != size) || fclose(fp) != 0) abort();
    return p;
}

/* Splits data at the first occurrence of the 8-byte separator "\0IMCAP\0\0"
 * (inputs made of two files); without it, *b is empty. */
#define FUZZ_SEP "\0IMCAP\0\0"
static void fuzz_split(const uint8_t *data, size_t size, size_t *a_len, const uint8_t **b, size_t *b_len)
{
    const uint8_t *at = memmem(data, size, FUZZ_SEP, 8);
    *a_len = at ? (size_t)(at - data) : size;
    *b = at ? at + 8 : data + size;
    *b_len = at ? size - *a_len - 8 : 0;
}

#endif
