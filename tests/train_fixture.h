/*
 * train_fixture.h - scaffolding of the training tests (test_train.c,
 * test_scst.c): whole files and their equality, a run killed with SIGKILL
 * at arbitrary moments, a damaged checkpoint, a grid embeddings file.
 */
#ifndef IMCAP_TEST_TRAIN_FIXTURE_H
#define IMCAP_TEST_TRAIN_FIXTURE_H

#include "imcap.h"

#include <stddef.h>

/* The whole file (REQUIREd to be readable, at most 64 MiB); free it. */
char *fixture_slurp(const char *path, size_t *len);
/* Records a failure (at the caller's line) unless files a and b are byte-identical. */
#define CHECK_SAME_FILE(a, b) fixture_same_file_at(__FILE__, __LINE__, (a), (b))
void fixture_same_file_at(const char *file, int line, const char *a, const char *b);

/* run(ctx) in a child process, killed with SIGKILL after each of six
 * delays (1 to 110 ms, so some kills land during a checkpoint write); a child
 * that finishes before its kill must have returned IMCAP_OK. Returns how
 * many children were killed. */
int fixture_kill_runs(imcap_status (*run)(void *ctx), void *ctx);

/* The checkpoint file, damaged in one weight or Adam value at a time
 * (lstm.weight_hh, adam.m, adam.v: 1e37, finite but not what was written),
 * is refused by resume(ctx) with IMCAP_E_FORMAT naming the file, the tensor
 * and its checksum. The file is left damaged. */
void fixture_resume_refuses_damage(const char *checkpoint, imcap_status (*resume)(void *ctx), void *ctx);

/* A grid embeddings file at path (2 x 3 regions of 4 channels, float32, from
 * `encoder`): images name_fmt % i for i < n (e.g. "img%02d.jpg"), values
 * N(0, 1) from seed, + shift for the first n / 2 images and - shift for the rest. */
void fixture_grid_embeddings(const char *path, const char *encoder, const char *name_fmt, int n, uint64_t seed,
                             float shift);

#endif
