/*
 * gguf.h - reader and writer of GGUF v3 containers, the file format of every
 * imcap model file (encoder, decoder checkpoint, captioner). See
 * docs/FORMATS.md. Tensor shapes here are row-major (outermost first); on
 * disk they are stored fastest-first as GGUF/ggml expects.
 */
#ifndef IMCAP_GGUF_H
#define IMCAP_GGUF_H

#include "internal.h"

enum { GGUF_MAX_DIMS = 4 };

typedef enum gguf_tensor_type {
    GGUF_T_F32 = 0,
    GGUF_T_I8 = 24,
    GGUF_T_I32 = 26,
} gguf_tensor_type;

typedef struct gguf_tensor {
    const char *name;
    gguf_tensor_type type;
    int n_dims;
    int64_t shape[GGUF_MAX_DIMS]; /* row-major */
    size_t n_elems, n_bytes;
    const void *data;             /* 32-byte aligned, valid while the file is open */
    uint32_t crc;                 /* CRC-32 of the data stored in the file (has_crc) */
    bool has_crc;                 /* false in files written before imcap stored checksums */
} gguf_tensor;

/* ---- reading: the file is mmap'ed and fully validated on open ---- */
typedef struct gguf_file gguf_file;
imcap_status gguf_open(const char *path, gguf_file **out);
void gguf_close(gguf_file *f);
/* Value lookups: IMCAP_E_FORMAT (message names file and key) if the key is
 * missing or has another type. */
imcap_status gguf_get_u32(const gguf_file *f, const char *key, uint32_t *v);
imcap_status gguf_get_i32(const gguf_file *f, const char *key, int32_t *v);
/* A u32 count within [lo, hi] (hi <= INT_MAX) as an int; IMCAP_E_FORMAT naming
 * the file, key and range when it is outside. */
imcap_status gguf_get_count(const gguf_file *f, const char *key, uint32_t lo, uint32_t hi, int *out);
imcap_status gguf_get_u64(const gguf_file *f, const char *key, uint64_t *v);
imcap_status gguf_get_f32(const gguf_file *f, const char *key, float *v);
imcap_status gguf_get_str(const gguf_file *f, const char *key, const char **v);
/* Arrays: pointers into the mapping / an internal table, valid while open. */
imcap_status gguf_get_arr_i32(const gguf_file *f, const char *key, const int32_t **v, size_t *n);
imcap_status gguf_get_arr_f32(const gguf_file *f, const char *key, const float **v, size_t *n);
imcap_status gguf_get_arr_str(const gguf_file *f, const char *key, const char *const **v, size_t *n);
bool gguf_has_key(const gguf_file *f, const char *key);
size_t gguf_n_tensors(const gguf_file *f);
const gguf_tensor *gguf_tensor_at(const gguf_file *f, size_t i);
/* NULL if absent. */
const gguf_tensor *gguf_find_tensor(const gguf_file *f, const char *name);
/* Find a tensor and check type and shape (n_dims and each dim; a -1 in
 * shape accepts any size). Error names the file and tensor. */
imcap_status gguf_expect_tensor(const gguf_file *f, const char *name, gguf_tensor_type type,
                                int n_dims, const int64_t *shape, const gguf_tensor **out);
const char *gguf_path(const gguf_file *f);
/* Copies t's n_bytes to dst, verifying the stored checksum in the same pass:
 * IMCAP_E_FORMAT naming the file and the tensor on a mismatch. Files without
 * checksums are copied unverified. */
imcap_status gguf_tensor_copy(const gguf_file *f, const gguf_tensor *t, void *dst);
/* The same for an F32 tensor, which must also hold only finite values (the
 * error names the file, the tensor and the first bad index): one pass. */
imcap_status gguf_tensor_load_f32(const gguf_file *f, const gguf_tensor *t, float *dst);
/* Verifies every tensor's checksum (files that carry them). */
imcap_status gguf_verify(const gguf_file *f);

/* ---- writing: values and tensors are copied in, written atomically ---- */
typedef struct gguf_writer gguf_writer;
gguf_writer *gguf_writer_new(void);
void gguf_writer_free(gguf_writer *w);
imcap_status gguf_set_u32(gguf_writer *w, const char *key, uint32_t v);
imcap_status gguf_set_i32(gguf_writer *w, const char *key, int32_t v);
imcap_status gguf_set_u64(gguf_writer *w, const char *key, uint64_t v);
imcap_status gguf_set_f32(gguf_writer *w, const char *key, float v);
imcap_status gguf_set_str(gguf_writer *w, const char *key, const char *v);
imcap_status gguf_set_arr_i32(gguf_writer *w, const char *key, const int32_t *v, size_t n);
imcap_status gguf_set_arr_f32(gguf_writer *w, const char *key, const float *v, size_t n);
imcap_status gguf_set_arr_str(gguf_writer *w, const char *key, const char *const *v, size_t n);
/* Data is referenced, not copied: it must stay valid until gguf_write. */
imcap_status gguf_add_tensor(gguf_writer *w, const char *name, gguf_tensor_type type, int n_dims,
                             const int64_t *shape, const void *data);
/* Every key and tensor of f (open until gguf_write), as written by an
 * older imcap: re-writing a file adds the tensor checksums. Keys of types
 * imcap does not write are refused (IMCAP_E_UNSUPPORTED). */
imcap_status gguf_writer_copy(gguf_writer *w, const gguf_file *f);
/* temp + fsync + rename; adds the key imcap.tensor_crc32 (a CRC-32 of
 * each tensor's data, see gguf_tensor_copy). */
imcap_status gguf_write(gguf_writer *w, const char *path);

#endif
