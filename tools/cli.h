/*
 * cli.h - shared pieces of the imcap command-line tool. Each subcommand
 * lives in tools/cmd_<name>.c and is listed in tools/imcap.c.
 */
#ifndef IMCAP_CLI_H
#define IMCAP_CLI_H

#include "imcap.h"

#include <stdint.h>
#include <stdio.h>

/* Print "imcap <cmd>: <imcap_last_error()>" to stderr and return 1. */
int cli_error(const char *cmd, imcap_status s);
/* Progress line on stderr: "\r<what> done/total (pct) rate/s ETA mm:ss".
 * Use as an imcap_progress_fn with user = a cli_progress. */
typedef struct cli_progress { double t0, last; const char *label; int quiet; } cli_progress;
void cli_progress_init(cli_progress *p, const char *label);
int cli_progress_fn(void *user, uint64_t done, uint64_t total, const char *what);
/* Parse helpers: return 0 on success, print an error naming the flag otherwise. */
int cli_parse_int(const char *flag, const char *s, long lo, long hi, long *out);
int cli_parse_double(const char *flag, const char *s, double lo, double hi, double *out);
/* --precision int8|float|bf16|auto. */
int cli_parse_precision(const char *flag, const char *s, imcap_precision *out);

/* The processes of the job (tools/mpi.c): MPI when launched by mpirun, else
 * one process. cli_comm_start returns non-zero when MPI cannot start. */
int cli_comm_start(int *argc, char ***argv);
const imcap_comm *cli_comm(void);
void cli_comm_end(int rc);
/* Set by cli_comm_start on the ranks other than 0 of a job: cli_error prints nothing there (the
 * ranks agree on one message, which rank 0 prints). */
extern int cli_quiet_errors;
/* Monotonic seconds. */
double cli_now(void);
/* "<path without .gguf><suffix>", malloc'd (NULL when out of memory):
 * the default names of files written next to a checkpoint. */
char *cli_derived(const char *path, const char *suffix);
/* The captioning model to use when none is given: $IMCAP_MODEL, else
 * models/default.imcap (in the current directory, else beside the binary). */
const char *cli_default_model(void);

/* A caption result as a JSON object: path (left out when NULL), caption,
 * logprob, score, alternatives [{caption, logprob, score, words, ended}],
 * timings_ms {decode, encode, generate, total}. NULL when out of memory. */
struct cJSON;
struct cJSON *cli_caption_json(const char *path, const imcap_caption *cap);
/* Test hook: IMCAP_TEST_FAULT=KIND:N (KIND open, write, fsync or rename) makes
 * the N-th such operation of the library's file writers fail (tests/test_faults_cli.c). */
void cli_fault_from_env(void);

/* Subcommands (argv[0] is the subcommand name). */
typedef int (*cli_cmd_fn)(int argc, char **argv);
int cmd_caption(int argc, char **argv);
int cmd_classify(int argc, char **argv);
int cmd_convert(int argc, char **argv);
int cmd_embcat(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_export(int argc, char **argv);
int cmd_extract(int argc, char **argv);
int cmd_report(int argc, char **argv);
int cmd_score(int argc, char **argv);
int cmd_serve(int argc, char **argv);
int cmd_train(int argc, char **argv);
/* `imcap train --scst ...` (tools/cmd_scst.c): self-critical sequence training. */
int cmd_scst(int argc, char **argv);
int cmd_vocab(int argc, char **argv);

#endif
