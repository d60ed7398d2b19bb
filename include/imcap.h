/*
 * imcap.h - the one public header of libimcap, an image caption generator.
 *
 * Conventions (ggml / whisper.cpp / stb style):
 *   - every symbol is prefixed imcap_ / IMCAP_;
 *   - objects are opaque and come in init/free pairs (free(NULL) is a no-op);
 *   - fallible functions return an imcap_status (IMCAP_OK == 0) or NULL; the
 *     message of the last failure on the calling thread is imcap_last_error();
 *   - parameter structs come from *_default_params() and are then edited;
 *   - the library never prints to stdout and never exits; long operations
 *     report through an optional imcap_progress_fn.
 */
#ifndef IMCAP_H
#define IMCAP_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* libimcap.so is built with hidden visibility: what this header declares is
 * its exported API (and nothing else is). */
#if defined(__GNUC__)
#pragma GCC visibility push(default)
#endif

#define IMCAP_VERSION_STRING "0.1.0"

/* ------------------------------------------------------------------ core */

typedef enum imcap_status {
    IMCAP_OK = 0,
    IMCAP_E_ARG,         /* invalid argument from the caller */
    IMCAP_E_IO,          /* file missing, unreadable, unwritable */
    IMCAP_E_FORMAT,      /* malformed input file (message names file and place) */
    IMCAP_E_NOMEM,       /* allocation failed or a size would overflow */
    IMCAP_E_UNSUPPORTED, /* valid input using a feature we do not implement */
    IMCAP_E_MISMATCH,    /* inputs that do not belong together (dims, checksums) */
    IMCAP_E_INTERNAL     /* a bug: please report */
} imcap_status;

/* The library's version, IMCAP_VERSION_STRING of the build (the shared
 * library's SONAME is libimcap.so.<major>). */
const char *imcap_version(void);

/* sizeof the public struct of that name ("imcap_caption_alt", ...) in this
 * build of the library, 0 for a name it does not know: bindings that mirror
 * the structs (python/imcap) check their layouts against it. */
size_t imcap_abi_sizeof(const char *type_name);

/* Static name of a status ("ok", "io error", ...). */
const char *imcap_status_str(imcap_status s);

/* Human-readable message of the last failure on this thread ("" if none). */
const char *imcap_last_error(void);

/* Progress callback for long work: done of total units, free-form unit name.
 * Return non-zero to ask the operation to stop early (it then returns
 * IMCAP_E_ARG with a message saying it was interrupted). */
typedef int (*imcap_progress_fn)(void *user, uint64_t done, uint64_t total, const char *what);

/* Kernel instruction set: chosen once from the CPU (cpuid, and the OS's
 * saved register state): "avx512" (AVX-512 F/BW/VL/DQ), "avx2" (AVX2+FMA)
 * or "generic" (any x86-64), or forced with the environment variable
 * IMCAP_CPU=generic|avx2|avx512. imcap_cpu_check() is IMCAP_OK, or
 * IMCAP_E_UNSUPPORTED / IMCAP_E_ARG when IMCAP_CPU names a path this CPU
 * lacks or no path at all (encoder runs and training then fail the same). */
const char *imcap_cpu_path(void);
imcap_status imcap_cpu_check(void);

/* ------------------------------------------- processes of one job (MPI) */

/* A communicator between the processes ("ranks") of one job, for data-parallel
 * training and sharded extraction/evaluation. The library holds no MPI: the
 * caller supplies the transport (the CLI's is tools/mpi.c, OpenMPI); NULL or
 * imcap_comm_self() is one process. Every rank calls the same operations in
 * the same order (collectives); an operation that fails leaves the ranks out
 * of step, so the caller must then call abort. */
typedef struct imcap_comm {
    int rank, size;  /* this process, of size (0 <= rank < size) */
    void *user;
    /* recv [size][bytes] receives every rank's `bytes` bytes of send, in rank order */
    imcap_status (*allgather)(void *user, const void *send, void *recv, size_t bytes);
    /* send and recv are [size][bytes]: block q of send goes to rank q, block q of
     * recv comes from rank q */
    imcap_status (*alltoall)(void *user, const void *send, void *recv, size_t bytes);
    /* buf [bytes] of rank root is copied to every rank */
    imcap_status (*bcast)(void *user, void *buf, size_t bytes, int root);
    imcap_status (*barrier)(void *user);
    /* ends every process of the job at once with status s, after printing msg */
    void (*abort)(void *user, imcap_status s, const char *msg);
} imcap_comm;

/* The one-process communicator (rank 0 of 1; its operations copy). */
const imcap_comm *imcap_comm_self(void);
/* Agreement on failure, called by every rank with its own status: all get
 * IMCAP_OK if every s is IMCAP_OK, else the status of the lowest failing
 * rank and its message prefixed "rank R: " (one process: s unchanged). */
imcap_status imcap_comm_agree(const imcap_comm *c, imcap_status s);
/* strs [n]: rank r holds strs[i] for i % size == r (the others NULL); after
 * the call every rank holds all n (malloc'd; free each). Agrees first. */
imcap_status imcap_comm_share_strings(const imcap_comm *c, char **strs, size_t n);

/* ---------------------------------------- text: captions, tokenizer, vocab */

/* A caption dataset: images (by file name, in order of first appearance in
 * the source file) each with its captions (in file order). Immutable once
 * loaded. Limits: files up to 1 GiB, image names up to IMCAP_NAME_MAX bytes,
 * captions up to IMCAP_CAPTION_MAX bytes; text must be valid UTF-8 without
 * NUL bytes. Every loader fails with IMCAP_E_FORMAT and a message
 * "file:line: problem" on malformed input. */
typedef struct imcap_captions imcap_captions;
#define IMCAP_NAME_MAX 1023
#define IMCAP_CAPTION_MAX 8191

/* Flickr8k CSV (RFC 4180): header "image,caption", one caption a record,
 * quoted fields with doubled quotes, CRLF or LF, newlines inside quotes. */
imcap_status imcap_captions_load_csv(const char *path, imcap_captions **out);
/* Original Flickr8k token file: "name.jpg#k<TAB>caption" a line. */
imcap_status imcap_captions_load_tokens(const char *path, imcap_captions **out);
/* COCO captions JSON: {"images":[{"id","file_name"}], "annotations":
 * [{"image_id","caption"}]}; images in "images" order (images without a
 * caption are left out), captions in annotation order. */
imcap_status imcap_captions_load_coco(const char *path, imcap_captions **out);
/* By file name: *.json -> COCO, *.csv -> CSV, anything else -> token file. */
imcap_status imcap_captions_load(const char *path, imcap_captions **out);
void imcap_captions_free(imcap_captions *c);

size_t imcap_captions_n_images(const imcap_captions *c);
size_t imcap_captions_n_total(const imcap_captions *c);   /* all captions */
const char *imcap_captions_image(const imcap_captions *c, size_t image);
size_t imcap_captions_count(const imcap_captions *c, size_t image);
const char *imcap_captions_text(const imcap_captions *c, size_t image, size_t k);
/* Index of the image called name, or -1. */
int64_t imcap_captions_find(const imcap_captions *c, const char *name);

/* Split file: one image name a line (surrounding blanks and CR stripped,
 * blank lines ignored, a name listed twice is an error). *names is one
 * malloc'd block (release with free()). */
imcap_status imcap_split_load(const char *path, char ***names, size_t *n);
/* The images of `all` listed in the split file, in split-file order. A name
 * without captions is an error naming the split file, line and name. */
imcap_status imcap_captions_restrict(const imcap_captions *all, const char *split_path,
                                     imcap_captions **out);
/* Same from an array of names (where = text naming them in messages). */
imcap_status imcap_captions_subset(const imcap_captions *all, const char *const *names, size_t n,
                                   const char *where, imcap_captions **out);

/* The recipe's tokenizer: ASCII-lowercase, split on runs of non-word bytes
 * (word bytes: [A-Za-z0-9_] and every byte >= 0x80, so UTF-8 characters are
 * never split), drop empty tokens. *tokens is one malloc'd block holding the
 * pointer array and the strings (release with free()); *n may be 0. */
imcap_status imcap_tokenize(const char *text, char ***tokens, size_t *n);

/* Vocabulary: words <-> indices. Built vocabularies are sorted in byte order
 * (as Python's sorted()) and always contain the four special tokens below;
 * since '#' sorts before every word byte they get indices 0..3:
 * #END# = 0, #PAD# = 1, #START# = 2, #UNK# = 3. Use the accessors rather
 * than these numbers: a vocabulary rebuilt from a word list keeps its order. */
typedef struct imcap_vocab imcap_vocab;
#define IMCAP_TOK_PAD "#PAD#"
#define IMCAP_TOK_UNK "#UNK#"
#define IMCAP_TOK_START "#START#"
#define IMCAP_TOK_END "#END#"
#define IMCAP_VOCAB_MIN_COUNT 5

/* Words occurring >= min_count times (min_count >= 1) in all captions of
 * `train`, plus the special tokens. */
imcap_status imcap_vocab_build(const imcap_captions *train, int min_count, imcap_vocab **out);
/* Rebuild from a word list in index order (e.g. from a model file's string
 * array): words must be non-empty, unique, and include the four specials. */
imcap_status imcap_vocab_from_words(const char *const *words, size_t n, imcap_vocab **out);
/* Plain text: one word a line, index order; load validates as from_words
 * and names the file and line. save is atomic. */
imcap_status imcap_vocab_save_txt(const imcap_vocab *v, const char *path);
imcap_status imcap_vocab_load_txt(const char *path, imcap_vocab **out);
void imcap_vocab_free(imcap_vocab *v);

size_t imcap_vocab_size(const imcap_vocab *v);
/* The words in index order ([size]; for gguf_set_arr_str). */
const char *const *imcap_vocab_words(const imcap_vocab *v);
const char *imcap_vocab_word(const imcap_vocab *v, int32_t index); /* NULL if out of range */
int32_t imcap_vocab_find(const imcap_vocab *v, const char *word);   /* -1 if absent */
int32_t imcap_vocab_pad(const imcap_vocab *v);
int32_t imcap_vocab_unk(const imcap_vocab *v);
int32_t imcap_vocab_start(const imcap_vocab *v);
int32_t imcap_vocab_end(const imcap_vocab *v);

/* Caption -> [START, w1.., END] (UNK for unknown words). *ids is malloc'd
 * (release with free()); *n = tokens + 2. */
imcap_status imcap_vocab_encode(const imcap_vocab *v, const char *caption, int32_t **ids, size_t *n);
/* Indices -> words joined by single spaces, skipping START and PAD and
 * stopping at END (or after n). *text is malloc'd (release with free()). */
imcap_status imcap_vocab_decode(const imcap_vocab *v, const int32_t *ids, size_t n, char **text);

/* The recipe's batch_captions_to_matrix: rows seqs[i] (lens[i] entries) into
 * a [n][width] matrix, width = longest row, capped at max_len when max_len >
 * 0 (longer rows are truncated), shorter rows padded with pad. out must hold
 * n * width values (width <= max_len, or the longest row when max_len = 0);
 * pass out = NULL to learn *width first. */
imcap_status imcap_pad_batch(const int32_t *const *seqs, const size_t *lens, size_t n, size_t max_len,
                             int32_t pad, int32_t *out, size_t *width);

/* Batch sampler (the recipe's generate_batch): each batch takes batch_size
 * distinct random images of the dataset and one random caption of each,
 * encoded with the vocabulary (START..END), padded as imcap_pad_batch with
 * max_len (default IMCAP_BATCH_MAX_LEN tokens including START and END;
 * longer captions are cut). The same seed gives the same batches. */
typedef struct imcap_batcher imcap_batcher;
#define IMCAP_BATCH_MAX_LEN 20
/* Encodes every caption of `data` once; data and vocab may be freed after. */
imcap_status imcap_batcher_new(const imcap_captions *data, const imcap_vocab *v, size_t max_len,
                               uint64_t seed, imcap_batcher **out);
void imcap_batcher_free(imcap_batcher *b);
size_t imcap_batcher_n_images(const imcap_batcher *b);
size_t imcap_batcher_max_len(const imcap_batcher *b);
/* Next batch: images[batch_size] receives image indices into `data`,
 * tokens[batch_size][*width] the padded captions (tokens must hold
 * batch_size * max_len values); *width <= max_len. batch_size must be
 * 1..n_images. Pad value is the vocabulary's PAD. */
imcap_status imcap_batcher_next(imcap_batcher *b, size_t batch_size, int32_t *images, int32_t *tokens,
                                size_t *width);
/* Every caption in a fixed order (for validation passes): captions
 * [first, first + count) of the dataset, numbered image by image in file
 * order (0 .. imcap_batcher_n_captions - 1), into images[count] and
 * tokens[count][*width] as imcap_batcher_next does; draws no random numbers. */
size_t imcap_batcher_n_captions(const imcap_batcher *b);
imcap_status imcap_batcher_get(const imcap_batcher *b, size_t first, size_t count, int32_t *images, int32_t *tokens,
                               size_t *width);
/* The sampler's random state, to store in checkpoints and resume exactly. */
void imcap_batcher_get_state(const imcap_batcher *b, uint64_t state[4]);
void imcap_batcher_set_state(imcap_batcher *b, const uint64_t state[4]);


/* ------------------------------------------------------- embeddings file */

/* The file `imcap extract` writes and `imcap train` reads: one float32
 * embedding row per image, keyed by image name. Layout (little-endian) in
 * docs/FORMATS.md "Embeddings file": a 128-byte header (magic "IMCAPEMB",
 * version, dim, name width, row count, encoder id, CRC-32) then fixed-size
 * records (NUL-padded name, float32[dim], CRC-32 of the record). */
#define IMCAP_EMB_NAME_WIDTH 64    /* default name field width (names up to 63 bytes) */
#define IMCAP_EMB_NAME_WIDTH_MAX 1024
#define IMCAP_EMB_DIM_MAX 65536
#define IMCAP_EMB_ENCODER_MAX 63   /* bytes of the encoder id string */

/* Grid files (version 2, docs/FORMATS.md): each row is a rows x cols x
 * channels feature map (e.g. the 7x7x2048 map before a CNN's global
 * average pool), row-major over (row, col) with channels last, stored as
 * float32 or float16; in memory rows are always float32 ([rows*cols*channels],
 * dim = rows*cols*channels). A flat embedding is 1 x 1 x dim, float32. */
#define IMCAP_EMB_F32 0
#define IMCAP_EMB_F16 1
#define IMCAP_EMB_GRID_SIDE_MAX 4096
#define IMCAP_EMB_GRID_DIM_MAX (1 << 22) /* values per grid row */
typedef struct imcap_emb_layout {
    size_t rows, cols, channels;
    int dtype; /* storage: IMCAP_EMB_F32 or IMCAP_EMB_F16 */
} imcap_emb_layout;

/* Reader: the whole file in memory, every size and CRC validated; values
 * must be finite. A file with bytes beyond the rows its header counts (an
 * interrupted writer) is refused: resume the writer to repair it. */
typedef struct imcap_embfile imcap_embfile;
imcap_status imcap_embfile_open(const char *path, imcap_embfile **out);
void imcap_embfile_close(imcap_embfile *f);
size_t imcap_embfile_count(const imcap_embfile *f);
size_t imcap_embfile_dim(const imcap_embfile *f);
const char *imcap_embfile_encoder(const imcap_embfile *f);     /* "" when not set */
const char *imcap_embfile_name(const imcap_embfile *f, size_t row);
const float *imcap_embfile_row(const imcap_embfile *f, size_t row);  /* [dim] */
const float *imcap_embfile_data(const imcap_embfile *f);       /* [count][dim], 64-byte aligned */
int64_t imcap_embfile_find(const imcap_embfile *f, const char *name); /* row or -1 */
/* Grid shape and storage type ({1, 1, dim, IMCAP_EMB_F32} for a flat file);
 * value (r, c, k) of row i is imcap_embfile_row(f, i)[(r*cols + c)*channels + k]. */
imcap_emb_layout imcap_embfile_layout(const imcap_embfile *f);
/* rows[i] = the row of image i of the dataset (for training); an image
 * without an embedding is IMCAP_E_MISMATCH naming it and the count missing. */
imcap_status imcap_embfile_match(const imcap_embfile *f, const imcap_captions *c, int32_t *rows);

/* Writer: rows are appended; the header's row count is brought up to date
 * (after an fdatasync of the rows) every flush_every rows (default 64), on
 * imcap_embfile_flush and on close, so a writer killed at any moment leaves
 * a file that imcap_embfile_resume repairs. */
typedef struct imcap_embfile_writer imcap_embfile_writer;
/* New file (an existing one is replaced). name_width 0 = IMCAP_EMB_NAME_WIDTH
 * (else a multiple of 4 in 8..IMCAP_EMB_NAME_WIDTH_MAX); encoder may be NULL. */
imcap_status imcap_embfile_create(const char *path, size_t dim, size_t name_width, const char *encoder,
                                  imcap_embfile_writer **out);
/* Same with a grid shape and storage type; a 1 x 1 x dim float32 layout
 * writes a version-1 file, anything else version 2. Float16 files refuse a
 * row with a value outside the float16 range (|x| >= 65520). */
imcap_status imcap_embfile_create_grid(const char *path, const imcap_emb_layout *layout, size_t name_width,
                                       const char *encoder, imcap_embfile_writer **out);
/* Reopen to continue: keeps the longest prefix of complete, CRC-valid rows,
 * drops the rest (a torn last row; *n_dropped counts dropped records, a
 * partial one included) and truncates the file there. dim (unless 0) and
 * encoder (unless NULL) must match the file's (else IMCAP_E_MISMATCH). */
imcap_status imcap_embfile_resume(const char *path, size_t dim, const char *encoder, imcap_embfile_writer **out,
                                  size_t *n_dropped);
void imcap_embfile_writer_set_flush_every(imcap_embfile_writer *w, size_t rows);
/* Name: 1 .. name_width-1 bytes, not yet in the file; row: dim finite floats. */
imcap_status imcap_embfile_append(imcap_embfile_writer *w, const char *name, const float *row);
imcap_status imcap_embfile_flush(imcap_embfile_writer *w);
size_t imcap_embfile_writer_count(const imcap_embfile_writer *w);
/* Whether a row for name is already in the file (resume skips those). */
int imcap_embfile_writer_has(const imcap_embfile_writer *w, const char *name);
/* The file's layout (a resumed file keeps the one it was created with). */
imcap_emb_layout imcap_embfile_writer_layout(const imcap_embfile_writer *w);
/* Flushes, closes and frees (also on failure). */
imcap_status imcap_embfile_writer_close(imcap_embfile_writer *w);

/* A whole file at once, atomically (temp + rename): n rows [n][dim]. */
imcap_status imcap_embfile_write(const char *path, size_t dim, const char *encoder, size_t n,
                                 const char *const *names, const float *rows);


/* ------------------------------------------------ decoder and training */

/* Training of the LSTM decoder (src/decoder/train.c) on an embeddings file and a
 * caption dataset: epochs x batches of random images with one random caption
 * each (imcap_batcher), Adam, validation loss each epoch, loss history CSV +
 * SVG plot, atomic GGUF checkpoints (docs/FORMATS.md "Decoder checkpoint")
 * and exact resumption: a run stopped at any moment and resumed from its
 * last checkpoint ends with the same weights as an uninterrupted run. */
typedef struct imcap_train_report {
    int epoch, epochs;          /* current epoch (1-based) of epochs */
    int batch, batches;         /* batch within the epoch (1-based) of batches */
    uint64_t step, total_steps; /* batches done in the whole run, of total */
    float loss;                 /* this batch's mean loss */
    float epoch_loss;           /* mean batch loss of this epoch so far */
    float val_loss;             /* end of epoch: validation loss; else (or without a split) NaN */
    int epoch_end;              /* 1 on the report that ends an epoch */
    double tokens_per_s;        /* target tokens trained per second in this process */
    double eta_s;               /* estimated seconds to the end */
    const char *checkpoint;     /* path when a checkpoint was just written, else NULL */
    int best;                   /* 1 when the best-validation model was just written */
    double comm_s;              /* ranks of a job: seconds this process spent exchanging gradients */
    double wait_s;              /* ... and waiting for the slowest rank before the exchanges */
    double train_s;             /* seconds of this run so far (training and validation) */
    uint64_t comm_bytes;        /* bytes this process sends per batch (0 for one process) */
} imcap_train_report;
/* Called after every batch and at each epoch end; non-zero stops training
 * (imcap_train then returns IMCAP_E_ARG "interrupted"). */
typedef int (*imcap_train_report_fn)(void *user, const imcap_train_report *r);

typedef struct imcap_train_params {
    const char *embeddings;     /* embeddings file (imcap extract) */
    const char *captions;       /* captions: CSV, token file or COCO JSON */
    const char *train_split;    /* split file of training images */
    const char *val_split;      /* split file of validation images, or NULL */
    const char *checkpoint;     /* checkpoint path (GGUF), written atomically */
    const char *history_csv;    /* loss history CSV, rewritten each epoch, or NULL */
    const char *plot_svg;       /* loss plot SVG, rewritten each epoch, or NULL */
    const char *best_model;     /* early stopping: decoder model file (weights and vocabulary, no
                                   training state) of the epoch with the lowest validation loss so
                                   far, rewritten atomically when it improves; NULL = none; needs
                                   val_split */
    int resume;                 /* continue from `checkpoint` if it exists (its settings win,
                                   except epochs, which may be raised) */
    int epochs;                 /* 12 (the recipe's) */
    int batches_per_epoch;      /* 1000 */
    int batch_size;             /* 64 */
    int max_len;                /* 20 tokens including START and END */
    int min_count;              /* vocabulary: words seen >= 5 times in the training captions */
    int val_batches;            /* validation batches per epoch: 100 (same batches every epoch) */
    int checkpoint_every;       /* also checkpoint every N batches (200); 0: only at epoch ends */
    float lr;                   /* Adam learning rate 1e-3 (betas 0.9, 0.999, eps 1e-8) */
    float clip;                 /* global gradient-norm clipping; 0 = off (default) */
    float dropout;              /* dropout probability on the LSTM outputs (training only); 0 = off
                                   (default) */
    int n_img1, n_hid, n_emb, n_out1; /* model sizes: 120, 300, 100, 120 */
    uint64_t seed;              /* 1: initialisation, batches and validation batches */
    imcap_progress_fn progress; /* batches done / total; may be NULL */
    void *progress_user;
    imcap_train_report_fn report; /* per batch and per epoch details; may be NULL */
    void *report_user;
    const char *decoder;        /* architecture: "recipe" (default, NULL) or "attention" (soft
                                   attention over a grid embeddings file: imcap extract --output
                                   grid; n_img1 unused) */
    int n_att;                  /* attention: size of the attention MLP (256) */
    float att_lambda;           /* attention: weight of the doubly stochastic regulariser (1) */
    const imcap_comm *comm;     /* ranks sharing each batch (NULL: one process); rank 0 alone
                                   writes files and calls progress/report */
    int chunks;                 /* each batch is cut into `chunks` fixed sub-batches whose gradients
                                   are summed in chunk order, so results depend on chunks, never on
                                   the number of ranks (<= chunks); 0: 1 (one process) or the ranks */
} imcap_train_params;

imcap_train_params imcap_train_default_params(void);
imcap_status imcap_train(const imcap_train_params *p);

/* Self-critical sequence training (src/decoder/scst.c; Rennie et al. 2017):
 * fine-tunes a trained decoder for CIDEr-D. Each batch draws images of the
 * training split; each image gets its greedy caption and `samples` captions
 * sampled from the model; each caption's reward is its CIDEr-D against the
 * image's training references (document frequencies over the training
 * split's references, computed once); advantage = reward - baseline (the
 * mean of the image's other samples, or the greedy caption's reward);
 * loss = -sum advantage * log p(caption) / caption tokens, through the
 * decoder's backward; Adam. Each epoch ends with the greedy CIDEr-D of the
 * validation split (as imcap_eval computes it), history CSV + SVG plot,
 * checkpoint and the best-validation model. Checkpoints hold the whole loop
 * state: a resumed run ends exactly as an uninterrupted one. */
typedef struct imcap_scst_report {
    int epoch, epochs;          /* current epoch (1-based) of epochs */
    int batch, batches;         /* batch within the epoch of batches */
    uint64_t step, total_steps; /* batches done in the whole run, of total */
    double reward;              /* this batch: mean CIDEr-D of the sampled captions */
    double greedy;              /* this batch: mean CIDEr-D of the greedy captions */
    double epoch_reward, epoch_greedy; /* this epoch so far */
    double val_cider;           /* epoch end (and epoch 0 = the start model): validation greedy CIDEr-D;
                                   else NaN */
    int epoch_end;              /* 1 on the report that ends an epoch */
    double samples_per_s;       /* sampled captions trained per second in this process */
    double gen_s, reward_s, train_s; /* seconds in this process: rollouts, rewards, forward+backward+Adam */
    double eta_s;
    const char *checkpoint;     /* path when a checkpoint was just written, else NULL */
    int best;                   /* 1 when the best-validation model was just written */
} imcap_scst_report;
typedef int (*imcap_scst_report_fn)(void *user, const imcap_scst_report *r);

enum { IMCAP_SCST_BASELINE_GREEDY = 0, IMCAP_SCST_BASELINE_MEAN = 1 };

typedef struct imcap_scst_params {
    const char *embeddings;     /* embeddings file (imcap extract) */
    const char *captions;       /* captions: CSV, token file or COCO JSON */
    const char *train_split;    /* training images: their references give the rewards */
    const char *val_split;      /* validation images (greedy CIDEr-D each epoch), or NULL */
    const char *init;           /* the start: decoder model, training checkpoint or captioner file */
    const char *checkpoint;     /* checkpoint path (GGUF), written atomically */
    const char *history_csv;    /* history CSV (epoch,step,reward,greedy_reward,val_cider), or NULL */
    const char *plot_svg;       /* plot of rewards and validation CIDEr-D, or NULL */
    const char *best_model;     /* decoder model of the epoch with the highest validation CIDEr-D, or NULL */
    int resume;                 /* continue from `checkpoint` if it exists (its settings win, except
                                   epochs, which may be raised) */
    int epochs;                 /* 10 */
    int batches_per_epoch;      /* 100 */
    int batch_size;             /* images per batch: 16 */
    int samples;                /* sampled captions per image: 5 */
    int max_len;                /* words per caption: 20 */
    int baseline;               /* IMCAP_SCST_BASELINE_MEAN (default; needs samples >= 2) or _GREEDY */
    int val_images;             /* validation: the first N images of the split, 0 = all */
    int checkpoint_every;       /* also checkpoint every N batches (50); 0: only at epoch ends */
    float lr;                   /* Adam learning rate 5e-5 */
    float clip;                 /* global gradient-norm clipping; 0 = off */
    uint64_t seed;              /* 1: images and samples */
    imcap_progress_fn progress;
    void *progress_user;
    imcap_scst_report_fn report;
    void *report_user;
} imcap_scst_params;

imcap_scst_params imcap_scst_default_params(void);
imcap_status imcap_scst_train(const imcap_scst_params *p);

/* ------------------------------------------------------------ generation */

/* How a caption is generated from the decoder (README.md, "Captioning photos"):
 *   greedy (beam 1, temperature 0, the default): the most probable word at
 *     each step;
 *   sampling (beam 1, temperature T > 0): each word drawn from the model's
 *     distribution p^(1/T) renormalised, with a seeded PRNG (deterministic
 *     for a given seed); n_best > 1 draws n_best independent captions;
 *   beam search (beam K > 1): K hypotheses; finished ones are ranked by
 *     logprob / len^length_alpha, len = words + the END token (0 = plain
 *     log-probability, 1 = mean per-token log-probability); the n_best
 *     (<= K) best are returned.
 * PAD, START and UNK are never generated (their probability is masked out
 * and the rest renormalised), END is not allowed as the first token.
 * Reported log-probabilities are the model's (temperature 1) under that
 * masking, summed over the words and the END token if the caption ended. */
typedef struct imcap_gen_params {
    int beam;           /* beam width K, 1..64 (default 1) */
    float temperature;  /* 0 = greedy (default); > 0 sampling (requires beam 1), up to 100 */
    uint64_t seed;      /* sampling seed (default 1) */
    int max_len;        /* maximum number of words, 1..100 (default 20) */
    int n_best;         /* captions returned, 1..64 (default 1); <= beam for beam search */
    float length_alpha; /* beam length normalisation exponent, 0..2 (default 0.7) */
    int block_ngram;    /* beam search: no n-gram of this many words twice in a caption
                           (0 = off, the default; 1..8) */
} imcap_gen_params;

imcap_gen_params imcap_gen_default_params(void);
/* IMCAP_E_ARG with a message naming the bad field, or IMCAP_OK. */
imcap_status imcap_gen_params_check(const imcap_gen_params *p);

/* ------------------------------------------------------------- metrics */

/* COCO caption toolkit scoring (coco-caption / pycocoevalcap), computed
 * exactly: PTB tokenization, BLEU-1..4, ROUGE-L and CIDEr-D. */

/* Tokenize a caption as the toolkit does before scoring (Stanford PTB
 * tokenization, lower-cased, punctuation tokens removed). *out receives a
 * malloc'ed string of tokens separated by single spaces (possibly ""); the
 * caller releases it with free(). */
imcap_status imcap_ptb_tokenize(const char *text, char **out);

/* One evaluated image: a candidate caption and its reference captions. */
typedef struct imcap_score_item {
    const char *candidate;          /* the caption under test */
    const char *const *refs;        /* n_refs reference captions, n_refs >= 1 */
    size_t n_refs;
} imcap_score_item;

typedef struct imcap_scores {
    double bleu[4];                 /* Bleu_1 .. Bleu_4 (corpus level) */
    double rouge_l;                 /* ROUGE_L, mean over images */
    double cider_d;                 /* CIDEr (the toolkit's CIDEr-D), mean over images */
    size_t n_images;
    /* BLEU internals as the toolkit's bleu_scorer reports them: total
     * candidate length, total closest-reference length, and per n = 1..4 the
     * number of candidate n-grams (guess) and of clipped matches (correct). */
    uint64_t bleu_testlen, bleu_reflen;
    uint64_t bleu_guess[4], bleu_correct[4];
} imcap_scores;

/* Metric names as the toolkit prints them, index 0..5: Bleu_1, Bleu_2,
 * Bleu_3, Bleu_4, ROUGE_L, CIDEr; and the matching value of s. */
#define IMCAP_N_METRICS 6
const char *imcap_metric_name(int i);
double imcap_metric_value(const imcap_scores *s, int i);

/* Score n images. With tokenize != 0 the captions are raw text and are run
 * through imcap_ptb_tokenize first (what the toolkit does); with 0 they are
 * already tokenized (tokens separated by white space). per_image_cider, if
 * not NULL, receives n per-image CIDEr-D values; per_image_rouge likewise. */
imcap_status imcap_score(const imcap_score_item *items, size_t n, int tokenize, imcap_scores *out,
                         double *per_image_cider, double *per_image_rouge);

/* Score a COCO results file ([{"image_id", "caption"}, ...]) against a COCO
 * captions annotation file ({"annotations": [{"image_id", "caption"}, ...]}),
 * like the toolkit's COCOEvalCap: every result image must have references,
 * each image at most one result; annotations of images without a result are
 * ignored. Image ids may be integers or strings. Errors name the file and
 * the problem. */
imcap_status imcap_score_coco_files(const char *results_path, const char *refs_path, imcap_scores *out);

/* ---------------------------------------------------------- evaluation */

/* Caption every image of a split and score the captions against the split's
 * reference captions with imcap_score (toolkit PTB tokenization of both
 * sides). The images are either captioned end to end by a captioner model
 * file (section "captioner"), or, when `embeddings` is set, generated from
 * the precomputed embedding rows of the split's images (imcap extract) with
 * a decoder model or training checkpoint as `model` (no encoder run: quick
 * model selection). Generation is deterministic (greedy or beam search). */
/* How an encoder runs (`--precision`): IMCAP_PRECISION_INT8 executes the
 * quantized TFLite MobileNets with TensorFlow Lite's integer arithmetic
 * (uint8 activations, int32 accumulation, the runtime's requantization;
 * the outputs are dequantized to floats), which needs an encoder file with
 * an int8 program (`imcap convert --tflite` of a uint8 model by this
 * version); FLOAT runs the float graph (dequantized weights); AUTO (0, the
 * default) is FLOAT for every API here, whose embeddings feed caption
 * decoders trained on float embeddings (int8 ones lower the default model's
 * dev scores; `imcap classify` uses int8 where it is faster): README,
 * "Encoder precision". BF16 runs the float graph with its dense and
 * convolution GEMMs in bfloat16 (weights and activations rounded to bf16,
 * fp32 sums; IMCAP_E_UNSUPPORTED on a CPU without AVX512_BF16). */
typedef enum imcap_precision {
    IMCAP_PRECISION_AUTO = 0,
    IMCAP_PRECISION_FLOAT = 1,
    IMCAP_PRECISION_INT8 = 2,
    /* dense and convolution GEMMs in bfloat16 (fp32 sums): CPUs with AVX512_BF16 only */
    IMCAP_PRECISION_BF16 = 3
} imcap_precision;

typedef struct imcap_eval_params {
    const char *model;      /* captioner model file; with embeddings: decoder model/checkpoint */
    const char *encoder;    /* captioner's encoder file (NULL: the one the model names) */
    const char *embeddings; /* NULL: caption the photos; else an embeddings file */
    const char *images;     /* photo directory (NULL: "images" beside the split file) */
    const char *split;      /* images evaluated: split file, one name a line */
    const char *captions;   /* references: Flickr8k CSV, token file or COCO JSON */
    int beam;               /* 0: the model's setting (captioner) or greedy (decoder) */
    int max_len;            /* 0: the model's setting or the default (20 words) */
    float length_alpha;     /* < 0 (default): the model's setting or the default */
    int block_ngram;        /* < 0 (default): the model's setting (or off); else as imcap_gen_params */
    int threads;            /* captioning threads (default 2) */
    imcap_progress_fn progress; /* images done / total; non-zero stops (IMCAP_E_ARG) */
    void *progress_user;
    const imcap_comm *comm; /* ranks sharing the images (i % size == rank); NULL: one process */
    int precision;          /* imcap_precision of the captioner's encoder (default AUTO) */
} imcap_eval_params;

typedef struct imcap_eval_result {
    imcap_scores scores;
    size_t n;               /* images evaluated, in split order */
    char **names;           /* [n] image names */
    char **captions;        /* [n] generated captions (raw, before PTB tokenization) */
    imcap_gen_params gen;   /* the generation settings used */
    double seconds;         /* wall time of the whole evaluation */
} imcap_eval_result;

imcap_eval_params imcap_eval_default_params(void);
/* An image that cannot be captioned (unreadable photo, missing embedding)
 * fails the evaluation with a message naming it. */
imcap_status imcap_eval(const imcap_eval_params *p, imcap_eval_result *out);
void imcap_eval_result_free(imcap_eval_result *r);

/* Concatenate embeddings files (`imcap embcat`): for each image of the first
 * file (in its order), the rows of all inputs side by side (dim = sum of the
 * inputs' dims), written atomically to out. Every input must have the same
 * images (IMCAP_E_MISMATCH naming a missing one). The encoder id is the
 * inputs' ids joined with '+' (cut to IMCAP_EMB_ENCODER_MAX bytes). */
imcap_status imcap_embfile_concat(const char *const *inputs, size_t n_inputs, const char *out);

/* -------------------------------------------------------------- images */

/* A decoded image: 8-bit RGB, rows top to bottom, pixels rgb[(y*w + x)*3 + c].
 * A plain value type (not opaque) so callers can read pixels directly;
 * release the pixels with imcap_image_free(). */
typedef struct imcap_image {
    int w, h;
    uint8_t *rgb;
} imcap_image;

typedef enum imcap_image_format {
    IMCAP_IMAGE_UNKNOWN = 0,
    IMCAP_IMAGE_JPEG,
    IMCAP_IMAGE_PNG,
    IMCAP_IMAGE_BMP
} imcap_image_format;

/* Largest image decoded (w*h); larger headers are refused before allocating. */
#define IMCAP_IMAGE_MAX_PIXELS 100000000

/* Format from the first bytes (magic numbers), not from the file name. */
imcap_image_format imcap_image_sniff(const void *data, size_t len);
const char *imcap_image_format_name(imcap_image_format f);

/* Decode a JPEG (baseline/progressive; gray, YCbCr, RGB, CMYK/YCCK incl.
 * Adobe-inverted; EXIF orientation applied), PNG (any type, 1-16 bits,
 * palette, interlaced; alpha composited on white) or BMP (1/4/8-bit palette,
 * 16/24/32-bit, bottom-up or top-down; alpha dropped) to RGB. name is used in
 * error messages. On failure *out is empty (and needs no free). */
imcap_status imcap_image_decode(const void *data, size_t len, const char *name, imcap_image *out);
imcap_status imcap_image_load(const char *path, imcap_image *out);
void imcap_image_free(imcap_image *img);

/* Largest centered square: side = min(w, h); when the difference is odd the
 * extra pixel is cut on the left/top (x0 = dx - dx/2). */
void imcap_image_square_crop(int w, int h, int *x0, int *y0, int *side);

/* Bilinear resize of an interleaved 8-bit image (cn channels, rows
 * src_stride bytes apart) to dw x dh, bit-exact with OpenCV 4.6
 * cv::resize(..., INTER_LINEAR) on x86 (half-pixel centres, clamped edges,
 * OpenCV's 11-bit fixed-point weights and rounding). */
imcap_status imcap_resize_linear_u8(const uint8_t *src, int sw, int sh, size_t src_stride, int cn,
                                    uint8_t *dst, int dw, int dh);

/* The encoders' preprocessing: square center crop, then the resize above to
 * out_w x out_h; out receives [out_h][out_w][3] bytes. */
imcap_status imcap_image_prepare(const imcap_image *img, int out_h, int out_w, uint8_t *out);

/* out[i*3+c] = hwc[i*3+c] / 255 * scale[c] + bias[c] (a model's normalization). */
void imcap_image_to_float(const uint8_t *hwc, size_t n_pixels, const float scale[3], const float bias[3],
                          float *out);

/* Feature extraction (`imcap extract`): runs an encoder model file over the
 * images named in a list (one name per line, relative to image_dir) and
 * appends one row per image to an embeddings file (see "embeddings file").
 * Decoding and preprocessing run on `threads` worker threads while the
 * network runs batches of `batch` images. An existing output file is
 * resumed: its complete rows are kept (a torn last row is cut) and those
 * images skipped; it must come from the same encoder and output. Images
 * that cannot be read get no row and are listed in the report; the others
 * go on. Progress: done/total "images"; returning non-zero from it stops
 * after the current batch (IMCAP_E_ARG, rows so far kept). */
typedef struct imcap_extract_params {
    const char *encoder;   /* encoder model file */
    const char *image_dir;
    const char *list;
    const char *out;       /* embeddings file, created or resumed */
    const char *output;    /* encoder output stored: "embedding" (default), "mixed5", ...
                            * Several outputs in one pass: "embedding,mixed5" with
                            * out "a.emb,b.emb" (one file each; only missing rows are
                            * computed, and only the part of the net they need).
                            * "grid": the spatial map the embedding's global
                            * average pool reads (7x7x1280 for the MobileNets),
                            * written as a grid file (see "embeddings file"). */
    int threads;           /* decoding threads (default 2) */
    int batch;             /* images per network run (default 8, at most 256) */
    imcap_progress_fn progress;
    void *progress_user;
    int dtype;             /* storage of new files: IMCAP_EMB_F32 (default) or IMCAP_EMB_F16;
                            * a resumed file must have been created with the same */
    const char *dtypes;    /* NULL, or "f32" / "f16" for all outputs, or one per output:
                            * "f32,f16" with output "embedding,grid" (overrides dtype) */
    const imcap_comm *comm; /* ranks sharing the list (image i on rank i % size, in shard files
                             * "<out>.rank<R>of<N>", each resumable; rank 0 merges them into out,
                             * the same bytes as one process writes); NULL: one process */
    int precision;         /* imcap_precision of the encoder (default AUTO; not recorded in the
                            * file: resume with the same) */
} imcap_extract_params;

typedef struct imcap_extract_report {
    uint64_t total;        /* images listed */
    uint64_t resumed;      /* already in the file when this run started */
    uint64_t done;         /* rows written by this run */
    uint64_t dropped;      /* torn/invalid records cut from the file's end on resume */
    uint64_t n_failed;
    char **failed;         /* n_failed messages "<path>: <problem>" */
    double seconds;
} imcap_extract_report;

imcap_extract_params imcap_extract_default_params(void);
/* rep is filled also on failure (free it with imcap_extract_report_free). */
imcap_status imcap_extract(const imcap_extract_params *p, imcap_extract_report *rep);
void imcap_extract_report_free(imcap_extract_report *rep);


/* ------------------------------------------------------------- encoder */

/* An encoder model file (models/encoders/NAME.gguf, made by `imcap convert`):
 * a CNN that turns an image into the float vectors of its named outputs
 * ("embedding", "logits", "mixed5", ...). Loaded once, it is immutable:
 * embed calls may run concurrently on one encoder. */
typedef struct imcap_encoder imcap_encoder;

imcap_status imcap_encoder_load(const char *path, imcap_encoder **out);
void imcap_encoder_free(imcap_encoder *e);
const char *imcap_encoder_name(const imcap_encoder *e);
/* Network input size (the image is center-cropped and resized to it). */
void imcap_encoder_input_size(const imcap_encoder *e, int *h, int *w);
int imcap_encoder_n_outputs(const imcap_encoder *e);
const char *imcap_encoder_output_name(const imcap_encoder *e, int i); /* NULL if out of range */
/* Floats per image of the named output (its h*w*c, NHWC order); 0 with a
 * message naming the encoder and the output when it has no such output. */
size_t imcap_encoder_output_size(const imcap_encoder *e, const char *output);
/* Runs the encoder on n decoded images (the preprocessing of `imcap
 * extract`: square crop, resize, the model's normalisation; batches of up to
 * 8 images): out receives [n][imcap_encoder_output_size(e, output)] floats,
 * the rows `imcap extract` writes for these images. output NULL: "embedding". */
imcap_status imcap_encoder_embed(const imcap_encoder *e, const imcap_image *images, size_t n, const char *output,
                                 float *out);
/* Set before embed calls (not concurrently with them). INT8 on an encoder
 * without an int8 program: IMCAP_E_UNSUPPORTED naming the file and why. */
imcap_status imcap_encoder_set_precision(imcap_encoder *e, imcap_precision p);
/* What embed calls run now: IMCAP_PRECISION_FLOAT or IMCAP_PRECISION_INT8. */
imcap_precision imcap_encoder_precision(const imcap_encoder *e);

/* ----------------------------------------------------------- captioner */

/* A captioner: one model file (docs/FORMATS.md, "Captioner file") holding
 * the decoder weights, vocabulary, hyper-parameters, the preprocessing and
 * the name and checksum of the encoder it was trained with, plus that
 * encoder's own file. Loaded once, it captions any number of images; all
 * caption calls may run concurrently on one loaded captioner. */
typedef struct imcap_captioner imcap_captioner;

/* Loads and validates both files. encoder_path NULL: the file named in the
 * model, looked for in <model dir>/encoders/, <model dir>/ and
 * models/encoders/ (in that order). A model over concatenated embeddings
 * names several encoders; encoder_path is then a comma-separated list. A model file of another version, a
 * truncated or edited file, or an encoder whose checksum, output size or
 * preprocessing differ from what the model expects is refused with a
 * message naming the file and the problem. */
imcap_status imcap_captioner_load(const char *model_path, const char *encoder_path, imcap_captioner **out);
/* model_path NULL in imcap_captioner_load means this default model:
 * $IMCAP_MODEL when set; else models/default.imcap in the current directory;
 * else, with <dir> the folder of the loaded library binary (libimcap.so, or
 * the program the static archive is linked into): <dir>/../models/default.imcap
 * (a build tree: build/libimcap.so) or <dir>/../share/imcap/models/default.imcap
 * (an installed copy, `make install`; its encoders sit in models/encoders/
 * beside it, where imcap_captioner_load looks). Writes the path into buf
 * (size bytes); IMCAP_E_IO naming the places looked at when none exists. */
imcap_status imcap_default_model_path(char *buf, size_t size);
void imcap_captioner_free(imcap_captioner *c);

/* The generation settings stored in the model (chosen when it was made). */
imcap_gen_params imcap_captioner_gen_params(const imcap_captioner *c);
const char *imcap_captioner_encoder_name(const imcap_captioner *c);
/* Path of the encoder file actually loaded (several: joined with ','; names with '+'). */
const char *imcap_captioner_encoder_path(const imcap_captioner *c);
/* The training checkpoint the model was exported from, as given then ("" if unknown). */
const char *imcap_captioner_checkpoint(const imcap_captioner *c);

/* Make a captioner file from a decoder checkpoint (or decoder model file,
 * docs/FORMATS.md "Decoder checkpoint") and the encoder whose `output` the
 * decoder was trained on. For a decoder trained on concatenated embeddings
 * (imcap embcat), encoder_path is a comma-separated list of encoder files
 * and output one name for all or a comma-separated list, in the order of
 * the concatenation. embeddings (optional, may be NULL): the embeddings
 * file used for training; its encoder id must name these encoders, outputs
 * and checksums. gen: the default generation settings to store (NULL:
 * imcap_gen_default_params()). Written atomically. */
imcap_status imcap_captioner_export(const char *checkpoint, const char *encoder_path, const char *output,
                                    const char *embeddings, const imcap_gen_params *gen, const char *out_path);
int imcap_captioner_vocab_size(const imcap_captioner *c);
/* The model's vocabulary (owned by the captioner). */
const imcap_vocab *imcap_captioner_vocab(const imcap_captioner *c);

/* One caption and its alternatives, best first. */
typedef struct imcap_caption_alt {
    char *text;      /* words joined by spaces */
    double logprob;  /* model log-probability (words + END if ended) */
    double score;    /* ranking score (logprob / len^alpha) */
    int n_words;
    int ended;       /* 1 if the model ended the caption, 0 if cut at max_len */
    float *attention; /* attention models: [n_words][grid_rows * grid_cols] weights (row-major over
                         the grid, each word's summing to 1); NULL for other models */
} imcap_caption_alt;

typedef struct imcap_caption {
    int n_alt;
    imcap_caption_alt *alt;
    double t_decode, t_encode, t_generate; /* seconds spent on each stage */
    int grid_rows, grid_cols; /* attention models: the grid the weights cover; 0 otherwise */
} imcap_caption;

/* Caption an image file / an encoded image in memory (JPEG, PNG or BMP;
 * name is used in messages) / decoded RGB pixels. p NULL: the model's
 * settings. *out is released with imcap_caption_free(). */
imcap_status imcap_caption_file(const imcap_captioner *c, const char *path, const imcap_gen_params *p,
                                imcap_caption **out);
imcap_status imcap_caption_memory(const imcap_captioner *c, const void *data, size_t len, const char *name,
                                  const imcap_gen_params *p, imcap_caption **out);
imcap_status imcap_caption_image(const imcap_captioner *c, const imcap_image *img, const imcap_gen_params *p,
                                 imcap_caption **out);
void imcap_caption_free(imcap_caption *cap);

/* The precision of the captioner's encoders (as imcap_encoder_set_precision;
 * before caption calls, not concurrently with them). */
imcap_status imcap_captioner_set_precision(imcap_captioner *c, imcap_precision p);

/* The image embedding the decoder sees ([embedding_size] floats). */
int imcap_captioner_embedding_size(const imcap_captioner *c);
imcap_status imcap_captioner_embed(const imcap_captioner *c, const imcap_image *img, float *embedding);

/* -------------------------------------------------------------- speech */

/* Text to speech through Debian's libespeak-ng.
 * All calls are serialised internally (espeak-ng has global state), so they
 * may be made from any thread. */
typedef struct imcap_speech_params {
    const char *voice; /* espeak-ng voice name: "en" (default), "en-us", "en-gb", "en+f3", "fr", ... */
    int rate;          /* speaking rate in words per minute, 80..450 (default 175) */
} imcap_speech_params;

imcap_speech_params imcap_speech_default_params(void);

/* Synthesize text into 16-bit signed mono PCM at *sample_rate Hz (22050 for
 * espeak-ng voices). *samples is released with imcap_speech_free(). Fails
 * with IMCAP_E_ARG for empty text, a rate out of range or an unknown voice. */
imcap_status imcap_speech_synth(const char *text, const imcap_speech_params *p, int16_t **samples,
                                size_t *n_samples, int *sample_rate);
void imcap_speech_free(int16_t *samples);

/* Write PCM samples as a RIFF/WAVE file (PCM, 16-bit, mono), atomically. */
imcap_status imcap_wav_write(const char *path, const int16_t *samples, size_t n_samples, int sample_rate);

/* The same RIFF/WAVE bytes in memory (*out released with imcap_wav_free()). */
imcap_status imcap_wav_encode(const int16_t *samples, size_t n_samples, int sample_rate, uint8_t **out,
                              size_t *len);
void imcap_wav_free(uint8_t *wav);

/* Synthesize text and write it as a WAV file (atomically). */
imcap_status imcap_speech_write_wav(const char *text, const imcap_speech_params *p, const char *path);

/* Speak text on the default audio output and return when done. Fails with
 * IMCAP_E_UNSUPPORTED and a clear message when there is no audio device. */
imcap_status imcap_speech_play(const char *text, const imcap_speech_params *p);

#if defined(__GNUC__)
#pragma GCC visibility pop
#endif

#ifdef __cplusplus
}
#endif
#endif /* IMCAP_H */
