/*
 * tflite.c - TensorFlow Lite flatbuffer importer (see tflite.h).
 *
 * The FlatBuffers binary format is read by hand: a little-endian buffer
 * whose first uint32 is the offset of the root table, followed by the file
 * identifier "TFL3". A table starts with an int32 soffset to its vtable
 * (vtable = table - soffset); the vtable holds uint16 vtable size, uint16
 * table size, then one uint16 per field: the field's offset inside the
 * table, 0 when absent (default value). Reference fields (tables, vectors,
 * strings) hold a uint32 offset relative to the field itself; vectors start
 * with a uint32 element count. Every position, length and offset read from
 * the file is checked against the buffer before use.
 *
 * Field ids follow TensorFlow's schema.fbs (tflite namespace):
 *   Model          0 version, 1 operator_codes, 2 subgraphs, 3 description, 4 buffers
 *   OperatorCode   0 deprecated_builtin_code (int8), 1 custom_code, 2 version, 3 builtin_code
 *   SubGraph       0 tensors, 1 inputs, 2 outputs, 3 operators, 4 name
 *   Tensor         0 shape, 1 type, 2 buffer, 3 name, 4 quantization, 5 is_variable, 6 sparsity
 *   Quantization   0 min, 1 max, 2 scale, 3 zero_point (int64), 4 details_type, 5 details,
 *                  6 quantized_dimension
 *   Operator       0 opcode_index, 1 inputs, 2 outputs, 3 builtin_options_type,
 *                  4 builtin_options, 5 custom_options
 *   Buffer         0 data, 1 offset (uint64), 2 size (uint64)
 *   Conv2DOptions  0 padding, 1 stride_w, 2 stride_h, 3 activation, 4 dilation_w, 5 dilation_h
 *   DepthwiseConv2DOptions 0 padding, 1 stride_w, 2 stride_h, 3 depth_multiplier,
 *                  4 activation, 5 dilation_w, 6 dilation_h
 *   Pool2DOptions  0 padding, 1 stride_w, 2 stride_h, 3 filter_w, 4 filter_h, 5 activation
 *   SoftmaxOptions 0 beta;  AddOptions 0 activation;  ReshapeOptions 0 new_shape
 *
 * The float graph gets dequantized weights; beside it the importer records
 * the int8 program (qgraph.h: uint8 tensors and their quantization) when
 * every operator has a uint8 form there, else the first reason why not.
 */
#include "tflite.h"
#include "qgraph.h"

#include <stdarg.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { TFL_MAX_DIMS = 4, TFL_MAX_IO = 8, TFL_MAX_DIM = 1 << 16, TFL_MAX_TENSORS = 1 << 20 };
enum { TT_FLOAT32 = 0, TT_INT32 = 2, TT_UINT8 = 3, TT_INT8 = 9 };
enum {
    OP_ADD = 0, OP_AVERAGE_POOL_2D = 1, OP_CONV_2D = 3, OP_DEPTHWISE_CONV_2D = 4, OP_DEQUANTIZE = 6,
    OP_MAX_POOL_2D = 17, OP_RESHAPE = 22, OP_SOFTMAX = 25, OP_CUSTOM = 32, OP_SQUEEZE = 43,
    OP_QUANTIZE = 114
};
/* BuiltinOptions union member ids. */
enum { OPT_NONE = 0, OPT_CONV2D = 1, OPT_DWCONV2D = 2, OPT_POOL2D = 5, OPT_SOFTMAX = 9, OPT_ADD = 11, OPT_RESHAPE = 17 };
/* ActivationFunctionType and Padding. */
enum { ACT_NONE = 0, ACT_RELU = 1, ACT_RELU_N1_TO_1 = 2, ACT_RELU6 = 3, ACT_TANH = 4, ACT_SIGN_BIT = 5 };
enum { PAD_SAME = 0, PAD_VALID = 1 };

const char *tflite_op_name(int code, char *buf, size_t buf_len)
{
    static const char *const names[] = {
        "ADD", "AVERAGE_POOL_2D", "CONCATENATION", "CONV_2D", "DEPTHWISE_CONV_2D", "DEPTH_TO_SPACE",
        "DEQUANTIZE", "EMBEDDING_LOOKUP", "FLOOR", "FULLY_CONNECTED", "HASHTABLE_LOOKUP",
        "L2_NORMALIZATION", "L2_POOL_2D", "LOCAL_RESPONSE_NORMALIZATION", "LOGISTIC", "LSH_PROJECTION",
        "LSTM", "MAX_POOL_2D", "MUL", "RELU", "RELU_N1_TO_1", "RELU6", "RESHAPE", "RESIZE_BILINEAR",
        "RNN", "SOFTMAX", "SPACE_TO_DEPTH", "SVDF", "TANH", "CONCAT_EMBEDDINGS", "SKIP_GRAM", "CALL",
        "CUSTOM", "EMBEDDING_LOOKUP_SPARSE", "PAD", "UNIDIRECTIONAL_SEQUENCE_RNN", "GATHER",
        "BATCH_TO_SPACE_ND", "SPACE_TO_BATCH_ND", "TRANSPOSE", "MEAN", "SUB", "DIV", "SQUEEZE",
        "UNIDIRECTIONAL_SEQUENCE_LSTM", "STRIDED_SLICE", "BIDIRECTIONAL_SEQUENCE_RNN", "EXP", "TOPK_V2",
        "SPLIT", "LOG_SOFTMAX", "DELEGATE", "BIDIRECTIONAL_SEQUENCE_LSTM", "CAST", "PRELU", "MAXIMUM",
        "ARG_MAX", "MINIMUM", "LESS", "NEG", "PADV2", "GREATER", "GREATER_EQUAL", "LESS_EQUAL",
        "SELECT", "SLICE", "SIN", "TRANSPOSE_CONV", "SPARSE_TO_DENSE", "TILE", "EXPAND_DIMS", "EQUAL",
        "NOT_EQUAL", "LOG", "SUM", "SQRT", "RSQRT", "SHAPE", "POW", "ARG_MIN", "FAKE_QUANT",
        "REDUCE_PROD", "REDUCE_MAX", "PACK", "LOGICAL_OR", "ONE_HOT", "LOGICAL_AND", "LOGICAL_NOT",
        "UNPACK", "REDUCE_MIN", "FLOOR_DIV", "REDUCE_ANY", "SQUARE", "ZEROS_LIKE", "FILL", "FLOOR_MOD",
        "RANGE", "RESIZE_NEAREST_NEIGHBOR", "LEAKY_RELU", "SQUARED_DIFFERENCE", "MIRROR_PAD", "ABS",
        "SPLIT_V", "UNIQUE", "CEIL", "REVERSE_V2", "ADD_N", "GATHER_ND", "COS", "WHERE", "RANK", "ELU",
        "REVERSE_SEQUENCE", "MATRIX_DIAG", "QUANTIZE", "MATRIX_SET_DIAG", "ROUND", "HARD_SWISH",
    };
    if (code >= 0 && (size_t)code < sizeof names / sizeof names[0]) return names[code];
    snprintf(buf, buf_len, "op%d", code);
    return buf;
}

static const char *act_name(int a)
{
    static const char *const n[] = {"NONE", "RELU", "RELU_N1_TO_1", "RELU6", "TANH", "SIGN_BIT"};
    return a >= 0 && a <= ACT_SIGN_BIT ? n[a] : "unknown";
}

/* ------------------------------------------------------------------ flatbuffer reader */

typedef struct fbuf {
    const uint8_t *p;
    size_t n;
    const char *path;
    char ctx[96]; /* what is being read, for messages ("tensor 12") */
} fbuf;

typedef struct fbtab { size_t pos, vt, vt_len, len; } fbtab;
typedef struct fbvec { size_t pos; size_t len; } fbvec; /* pos: first element */

static uint16_t rd_u16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t rd_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static int32_t rd_i32(const uint8_t *p)
{
    uint32_t u = rd_u32(p);
    int32_t v;
    memcpy(&v, &u, 4);
    return v;
}
static uint64_t rd_u64(const uint8_t *p) { return (uint64_t)rd_u32(p) | (uint64_t)rd_u32(p + 4) << 32; }
static int64_t rd_i64(const uint8_t *p)
{
    uint64_t u = rd_u64(p);
    int64_t v;
    memcpy(&v, &u, 8);
    return v;
}
static float rd_f32(const uint8_t *p)
{
    uint32_t u = rd_u32(p);
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static imcap_status fb_bad(const fbuf *b, const char *what, size_t pos)
{
    return imcap_fail(IMCAP_E_FORMAT, "%s: malformed TFLite file: %s%s%s at byte %zu of %zu", b->path,
                      b->ctx, b->ctx[0] ? ": " : "", what, pos, b->n);
}

static imcap_status fb_table(const fbuf *b, size_t pos, fbtab *t)
{
    if (pos > b->n || b->n - pos < 4) return fb_bad(b, "table outside the file", pos);
    int64_t vt = (int64_t)pos - (int64_t)rd_i32(b->p + pos);
    if (vt < 0 || (uint64_t)vt > b->n - 4) return fb_bad(b, "vtable outside the file", pos);
    t->pos = pos;
    t->vt = (size_t)vt;
    t->vt_len = rd_u16(b->p + t->vt);
    t->len = rd_u16(b->p + t->vt + 2);
    if (t->vt_len < 4 || (t->vt_len & 1) || t->vt_len > b->n - t->vt)
        return fb_bad(b, "bad vtable size", t->vt);
    if (t->len < 4 || t->len > b->n - pos) return fb_bad(b, "table runs past the end of the file", pos);
    return IMCAP_OK;
}

/* Position of field id of the given size, 0 when absent. */
static imcap_status fb_field(const fbuf *b, const fbtab *t, int id, size_t size, size_t *fpos)
{
    *fpos = 0;
    size_t slot = 4 + 2 * (size_t)id;
    if (slot + 2 > t->vt_len) return IMCAP_OK;
    size_t off = rd_u16(b->p + t->vt + slot);
    if (off == 0) return IMCAP_OK;
    if (off < 4 || off + size > t->len) return fb_bad(b, "field outside its table", t->pos);
    *fpos = t->pos + off;
    return IMCAP_OK;
}

static imcap_status fb_i32(const fbuf *b, const fbtab *t, int id, int32_t def, int32_t *v)
{
    size_t f;
    imcap_status s = fb_field(b, t, id, 4, &f);
    *v = f ? rd_i32(b->p + f) : def;
    return s;
}

static imcap_status fb_u32(const fbuf *b, const fbtab *t, int id, uint32_t def, uint32_t *v)
{
    size_t f;
    imcap_status s = fb_field(b, t, id, 4, &f);
    *v = f ? rd_u32(b->p + f) : def;
    return s;
}

static imcap_status fb_u64(const fbuf *b, const fbtab *t, int id, uint64_t def, uint64_t *v)
{
    size_t f;
    imcap_status s = fb_field(b, t, id, 8, &f);
    *v = f ? rd_u64(b->p + f) : def;
    return s;
}

static imcap_status fb_i8(const fbuf *b, const fbtab *t, int id, int def, int *v)
{
    size_t f;
    imcap_status s = fb_field(b, t, id, 1, &f);
    *v = f ? (int)(int8_t)b->p[f] : def;
    return s;
}

static imcap_status fb_f32(const fbuf *b, const fbtab *t, int id, float def, float *v)
{
    size_t f;
    imcap_status s = fb_field(b, t, id, 4, &f);
    *v = f ? rd_f32(b->p + f) : def;
    return s;
}

/* Target of a reference field; *target = 0 when the field is absent. */
static imcap_status fb_ref(const fbuf *b, const fbtab *t, int id, size_t *target)
{
    size_t f;
    imcap_status s = fb_field(b, t, id, 4, &f);
    *target = 0;
    if (s || !f) return s;
    uint32_t o = rd_u32(b->p + f);
    if (o == 0 || o > b->n - f) return fb_bad(b, "reference outside the file", f);
    *target = f + o;
    return IMCAP_OK;
}

/* Vector field with elements of elem bytes; absent -> len 0. */
static imcap_status fb_vec(const fbuf *b, const fbtab *t, int id, size_t elem, fbvec *v)
{
    size_t at;
    v->pos = 0;
    v->len = 0;
    imcap_status s = fb_ref(b, t, id, &at);
    if (s || !at) return s;
    if (b->n - at < 4) return fb_bad(b, "vector length outside the file", at);
    size_t len = rd_u32(b->p + at);
    if (len > (b->n - at - 4) / elem) return fb_bad(b, "vector runs past the end of the file", at);
    v->pos = at + 4;
    v->len = len;
    return IMCAP_OK;
}

static imcap_status fb_vec_table(const fbuf *b, const fbvec *v, size_t i, fbtab *t)
{
    size_t e = v->pos + 4 * i;
    uint32_t o = rd_u32(b->p + e);
    if (o == 0 || o > b->n - e) return fb_bad(b, "vector element outside the file", e);
    return fb_table(b, e + o, t);
}

/* String field copied into dst (printable ASCII kept, others as '?'). */
static imcap_status fb_str(const fbuf *b, const fbtab *t, int id, char *dst, size_t cap)
{
    fbvec v;
    imcap_status s = fb_vec(b, t, id, 1, &v);
    dst[0] = 0;
    if (s) return s;
    size_t n = v.len < cap - 1 ? v.len : cap - 1;
    for (size_t i = 0; i < n; i++) {
        uint8_t c = b->p[v.pos + i];
        dst[i] = (c >= 32 && c < 127) ? (char)c : '?';
    }
    dst[n] = 0;
    return IMCAP_OK;
}

/* ------------------------------------------------------------------ model structures */

typedef struct tfl_tensor {
    int type, n_dims;
    int shape[TFL_MAX_DIMS];
    size_t count;               /* product of shape */
    char name[ENC_NAME_LEN];
    const uint8_t *data;        /* constant contents, NULL if none */
    size_t n_q;                 /* number of (scale, zero point) pairs, 0 if unquantized */
    const uint8_t *scale;       /* n_q little-endian float32 */
    const uint8_t *zp;          /* n_q little-endian int64, NULL means 0 */
    int qdim;                   /* quantized_dimension */
    int value;                  /* enc value id, -1 until computed */
    int producer;               /* index of the operator that wrote it, -1 */
} tfl_tensor;

typedef struct tfl_op {
    int code;
    char custom[48];
    int n_in, n_out;
    int in[TFL_MAX_IO], out[TFL_MAX_IO];
    int opt_type;
    fbtab opt;                  /* valid when has_opt */
    bool has_opt;
} tfl_op;

typedef struct tfl_model {
    fbuf b;
    int n_tensors, n_ops;
    tfl_tensor *t;
    tfl_op *ops;
    int input, output;
} tfl_model;

static size_t type_size(int type)
{
    switch (type) {
    case TT_FLOAT32: case TT_INT32: return 4;
    case TT_UINT8: case TT_INT8: return 1;
    default: return 0;
    }
}

static const char *type_name(int type)
{
    static const char *const n[] = {"FLOAT32", "FLOAT16", "INT32", "UINT8", "INT64", "STRING", "BOOL",
                                    "INT16", "COMPLEX64", "INT8", "FLOAT64"};
    return type >= 0 && type <= 10 ? n[type] : "unknown type";
}

static imcap_status parse_int_list(fbuf *b, const fbtab *t, int id, int n_tensors, int max, int *dst,
                                   int *n, const char *what)
{
    fbvec v;
    imcap_status s = fb_vec(b, t, id, 4, &v);
    if (s) return s;
    if (v.len > (size_t)max)
        return imcap_fail(IMCAP_E_UNSUPPORTED, "%s: %s: %zu %s, at most %d supported", b->path, b->ctx,
                          v.len, what, max);
    for (size_t i = 0; i < v.len; i++) {
        int32_t x = rd_i32(b->p + v.pos + 4 * i);
        if (x < -1 || x >= n_tensors) return fb_bad(b, "tensor index out of range", v.pos + 4 * i);
        dst[i] = x;
    }
    *n = (int)v.len;
    return IMCAP_OK;
}

static imcap_status parse_tensor(tfl_model *m, const fbtab *tt, const fbvec *buffers, int idx)
{
    fbuf *b = &m->b;
    tfl_tensor *t = &m->t[idx];
    imcap_status s;
    snprintf(b->ctx, sizeof b->ctx, "tensor %d", idx);
    t->value = -1;
    t->producer = -1;
    if ((s = fb_str(b, tt, 3, t->name, sizeof t->name))) return s;
    fbvec shape;
    if ((s = fb_vec(b, tt, 0, 4, &shape))) return s;
    if (shape.len > TFL_MAX_DIMS)
        return imcap_fail(IMCAP_E_UNSUPPORTED, "%s: tensor %d '%s' has rank %zu, at most %d supported",
                          b->path, idx, t->name, shape.len, TFL_MAX_DIMS);
    t->n_dims = (int)shape.len;
    t->count = 1;
    for (int d = 0; d < t->n_dims; d++) {
        int32_t x = rd_i32(b->p + shape.pos + 4 * (size_t)d);
        if (x < 1 || x > TFL_MAX_DIM) return fb_bad(b, "tensor dimension out of range", shape.pos + 4 * (size_t)d);
        t->shape[d] = x;
        t->count *= (size_t)x; /* each factor <= 2^16 and the product is kept <= 2^32 */
        if (t->count > ((size_t)1 << 32))
            return imcap_fail(IMCAP_E_FORMAT, "%s: tensor %d '%s' has more than 2^32 elements", b->path, idx,
                              t->name);
    }
    if ((s = fb_i8(b, tt, 1, 0, &t->type))) return s;
    int is_var;
    if ((s = fb_i8(b, tt, 5, 0, &is_var))) return s;
    size_t sparsity;
    if ((s = fb_ref(b, tt, 6, &sparsity))) return s;
    if (is_var || sparsity)
        return imcap_fail(IMCAP_E_UNSUPPORTED, "%s: tensor %d '%s' is %s", b->path, idx, t->name,
                          is_var ? "a variable" : "sparse");

    /* Constant data. */
    uint32_t bi;
    if ((s = fb_u32(b, tt, 2, 0, &bi))) return s;
    if (bi >= buffers->len) return fb_bad(b, "buffer index out of range", tt->pos);
    if (bi != 0) {
        fbtab bt;
        char save[sizeof b->ctx];
        memcpy(save, b->ctx, sizeof save);
        snprintf(b->ctx, sizeof b->ctx, "tensor %d: buffer %u", idx, bi);
        if ((s = fb_vec_table(b, buffers, bi, &bt))) return s;
        fbvec data;
        if ((s = fb_vec(b, &bt, 0, 1, &data))) return s;
        uint64_t off, size;
        if ((s = fb_u64(b, &bt, 1, 0, &off)) || (s = fb_u64(b, &bt, 2, 0, &size))) return s;
        if (off > 1) { /* data stored outside the flatbuffer, offset from the file start */
            if (off > b->n || size > b->n - off) return fb_bad(b, "buffer data outside the file", bt.pos);
            data.pos = (size_t)off;
            data.len = (size_t)size;
        }
        memcpy(b->ctx, save, sizeof save);
        if (data.len > 0) {
            size_t es = type_size(t->type);
            if (es == 0)
                return imcap_fail(IMCAP_E_UNSUPPORTED, "%s: tensor %d '%s': constant of type %s", b->path,
                                  idx, t->name, type_name(t->type));
            if (data.len != t->count * es)
                return imcap_fail(IMCAP_E_FORMAT,
                                  "%s: tensor %d '%s': buffer %u holds %zu bytes, its shape needs %zu",
                                  b->path, idx, t->name, bi, data.len, t->count * es);
            t->data = b->p + data.pos;
        }
    }

    /* Quantization parameters. */
    size_t qpos;
    if ((s = fb_ref(b, tt, 4, &qpos))) return s;
    if (qpos) {
        fbtab qt;
        if ((s = fb_table(b, qpos, &qt))) return s;
        fbvec scale, zp;
        int details;
        int32_t qdim;
        if ((s = fb_vec(b, &qt, 2, 4, &scale)) || (s = fb_vec(b, &qt, 3, 8, &zp)) ||
            (s = fb_i8(b, &qt, 4, 0, &details)) || (s = fb_i32(b, &qt, 6, 0, &qdim)))
            return s;
        if (details != 0)
            return imcap_fail(IMCAP_E_UNSUPPORTED, "%s: tensor %d '%s': custom quantization", b->path, idx,
                              t->name);
        if (scale.len > 0) {
            if (zp.len != 0 && zp.len != scale.len)
                return fb_bad(b, "zero_point and scale counts differ", qt.pos);
            if (scale.len > 1 && (qdim < 0 || qdim >= t->n_dims || (size_t)t->shape[qdim] != scale.len))
                return fb_bad(b, "per-channel quantization does not match the shape", qt.pos);
            for (size_t i = 0; i < scale.len; i++) {
                float sc = rd_f32(b->p + scale.pos + 4 * i);
                if (!(sc >= 0.0f) || !isfinite(sc)) return fb_bad(b, "invalid quantization scale", scale.pos);
            }
            t->n_q = scale.len;
            t->scale = b->p + scale.pos;
            t->zp = zp.len ? b->p + zp.pos : NULL;
            t->qdim = scale.len > 1 ? qdim : 0;
        }
    }
    return IMCAP_OK;
}

static imcap_status parse_model(tfl_model *m)
{
    fbuf *b = &m->b;
    imcap_status s;
    b->ctx[0] = 0;
    if (b->n < 8) return fb_bad(b, "file too short", 0);
    if (memcmp(b->p + 4, "TFL3", 4) != 0)
        return imcap_fail(IMCAP_E_FORMAT, "%s: not a TFLite model (file identifier is not TFL3)", b->path);
    fbtab root;
    snprintf(b->ctx, sizeof b->ctx, "model");
    if ((s = fb_table(b, rd_u32(b->p), &root))) return s;
    uint32_t version;
    if ((s = fb_u32(b, &root, 0, 0, &version))) return s;
    if (version != 3)
        return imcap_fail(IMCAP_E_UNSUPPORTED, "%s: TFLite schema version %u, only 3 is supported", b->path,
                          version);
    fbvec codes, subgraphs, buffers;
    if ((s = fb_vec(b, &root, 1, 4, &codes)) || (s = fb_vec(b, &root, 2, 4, &subgraphs)) ||
        (s = fb_vec(b, &root, 4, 4, &buffers)))
        return s;
    if (subgraphs.len < 1) return fb_bad(b, "no subgraph", root.pos);
    if (buffers.len < 1) return fb_bad(b, "no buffers", root.pos);

    fbtab sg;
    snprintf(b->ctx, sizeof b->ctx, "subgraph 0");
    if ((s = fb_vec_table(b, &subgraphs, 0, &sg))) return s;
    fbvec tensors, ops;
    if ((s = fb_vec(b, &sg, 0, 4, &tensors)) || (s = fb_vec(b, &sg, 3, 4, &ops))) return s;
    if (tensors.len > TFL_MAX_TENSORS || ops.len > TFL_MAX_TENSORS)
        return imcap_fail(IMCAP_E_UNSUPPORTED, "%s: %zu tensors and %zu operators: too many", b->path,
                          tensors.len, ops.len);
    m->n_tensors = (int)tensors.len;
    m->n_ops = (int)ops.len;
    m->t = imcap_calloc(tensors.len + 1, sizeof *m->t);
    m->ops = imcap_calloc(ops.len + 1, sizeof *m->ops);
    if (!m->t || !m->ops) return IMCAP_E_NOMEM;

    int io[TFL_MAX_IO], n_io;
    if ((s = parse_int_list(b, &sg, 1, m->n_tensors, TFL_MAX_IO, io, &n_io, "inputs"))) return s;
    if (n_io != 1 || io[0] < 0)
        return imcap_fail(IMCAP_E_UNSUPPORTED, "%s: the model has %d inputs, exactly one image input is supported",
                          b->path, n_io);
    m->input = io[0];
    if ((s = parse_int_list(b, &sg, 2, m->n_tensors, TFL_MAX_IO, io, &n_io, "outputs"))) return s;
    if (n_io != 1 || io[0] < 0)
        return imcap_fail(IMCAP_E_UNSUPPORTED, "%s: the model has %d outputs, exactly one is supported",
                          b->path, n_io);
    m->output = io[0];

    for (size_t i = 0; i < tensors.len; i++) {
        fbtab tt;
        snprintf(b->ctx, sizeof b->ctx, "tensor %zu", i);
        if ((s = fb_vec_table(b, &tensors, i, &tt))) return s;
        if ((s = parse_tensor(m, &tt, &buffers, (int)i))) return s;
    }

    for (size_t i = 0; i < ops.len; i++) {
        tfl_op *op = &m->ops[i];
        fbtab ot, ct;
        snprintf(b->ctx, sizeof b->ctx, "operator %zu", i);
        if ((s = fb_vec_table(b, &ops, i, &ot))) return s;
        uint32_t oc;
        if ((s = fb_u32(b, &ot, 0, 0, &oc))) return s;
        if (oc >= codes.len) return fb_bad(b, "opcode index out of range", ot.pos);
        if ((s = parse_int_list(b, &ot, 1, m->n_tensors, TFL_MAX_IO, op->in, &op->n_in, "inputs")) ||
            (s = parse_int_list(b, &ot, 2, m->n_tensors, TFL_MAX_IO, op->out, &op->n_out, "outputs")))
            return s;
        if ((s = fb_i8(b, &ot, 3, 0, &op->opt_type))) return s;
        op->opt_type &= 0xff; /* the union type is a ubyte */
        size_t opt;
        if ((s = fb_ref(b, &ot, 4, &opt))) return s;
        if (opt) {
            if ((s = fb_table(b, opt, &op->opt))) return s;
            op->has_opt = true;
        }
        snprintf(b->ctx, sizeof b->ctx, "operator %zu: operator code %u", i, oc);
        if ((s = fb_vec_table(b, &codes, oc, &ct))) return s;
        int dep;
        int32_t code;
        if ((s = fb_i8(b, &ct, 0, 0, &dep)) || (s = fb_i32(b, &ct, 3, 0, &code))) return s;
        /* Files written before builtin_code existed only have the int8
         * deprecated code; newer ones cap it at 127 and fill builtin_code. */
        op->code = code > dep ? code : dep;
        if (op->code < 0) return fb_bad(b, "negative operator code", ct.pos);
        if ((s = fb_str(b, &ct, 1, op->custom, sizeof op->custom))) return s;
    }
    b->ctx[0] = 0;
    return IMCAP_OK;
}

/* ------------------------------------------------------------------ graph building */

typedef struct builder {
    tfl_model *m;
    enc_graph *g;
    int op;                     /* operator being converted */
    float *tmp, *tmp2;          /* scratch for weights */
    bool q_off;                 /* no int8 program; q_why says why */
    char q_why[400];
} builder;

static imcap_status op_unsupported(builder *bd, const char *fmt, ...) IMCAP_PRINTF(2, 3);
static imcap_status op_unsupported(builder *bd, const char *fmt, ...)
{
    char msg[512], nb[16];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    const tfl_op *op = &bd->m->ops[bd->op];
    return imcap_fail(IMCAP_E_UNSUPPORTED, "%s: operator %d (%s%s%s): %s", bd->m->b.path, bd->op,
                      tflite_op_name(op->code, nb, sizeof nb), op->custom[0] ? " " : "", op->custom, msg);
}

static imcap_status op_bad(builder *bd, const char *fmt, ...) IMCAP_PRINTF(2, 3);
static imcap_status op_bad(builder *bd, const char *fmt, ...)
{
    char msg[512], nb[16];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return imcap_fail(IMCAP_E_FORMAT, "%s: operator %d (%s): %s", bd->m->b.path, bd->op,
                      tflite_op_name(bd->m->ops[bd->op].code, nb, sizeof nb), msg);
}

/* The first reason this model gets no int8 program. */
static void q_stop(builder *bd, const char *fmt, ...) IMCAP_PRINTF(2, 3);
static void q_stop(builder *bd, const char *fmt, ...)
{
    if (bd->q_off) return;
    char msg[300], nb[16];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (bd->op >= 0 && bd->op < bd->m->n_ops)
        snprintf(bd->q_why, sizeof bd->q_why, "operator %d (%s): %s", bd->op,
                 tflite_op_name(bd->m->ops[bd->op].code, nb, sizeof nb), msg);
    else
        snprintf(bd->q_why, sizeof bd->q_why, "%s: %s", bd->op < 0 ? "input" : "outputs", msg);
    bd->q_off = true;
}

/* Records the quantization of tensor ti as that of graph value v. */
static void q_value(builder *bd, int v, int ti)
{
    const tfl_tensor *t = &bd->m->t[ti];
    if (bd->q_off) return;
    if (t->type != TT_UINT8) {
        q_stop(bd, "tensor %d '%s' is %s (int8 execution runs UINT8 activations)", ti, t->name, type_name(t->type));
        return;
    }
    if (t->n_q != 1) {
        q_stop(bd, "tensor %d '%s' has %zu quantization scales, not 1", ti, t->name, t->n_q);
        return;
    }
    float sc = rd_f32(t->scale);
    int64_t zp = t->zp ? rd_i64(t->zp) : 0;
    if (!(sc > 0.0f) || zp < 0 || zp > 255) q_stop(bd, "tensor %d '%s': scale %g zero point %lld", ti, t->name, (double)sc, (long long)zp);
    else if (enc_qgraph_set_value(bd->g, v, sc, (int32_t)zp)) q_stop(bd, "%s", imcap_last_error());
}

/* Per-image activation shape of a tensor: [1,H,W,C], [1,C] or [C]. */
static imcap_status tensor_hwc(builder *bd, int ti, int *h, int *w, int *c)
{
    const tfl_tensor *t = &bd->m->t[ti];
    if (t->n_dims == 4 && t->shape[0] == 1) {
        *h = t->shape[1];
        *w = t->shape[2];
        *c = t->shape[3];
    } else if (t->n_dims == 2 && t->shape[0] == 1) {
        *h = *w = 1;
        *c = t->shape[1];
    } else if (t->n_dims == 1) {
        *h = *w = 1;
        *c = t->shape[0];
    } else {
        return op_unsupported(bd, "tensor %d '%s' of rank %d is not [1,H,W,C], [1,C] nor [C]", ti, t->name,
                              t->n_dims);
    }
    if ((size_t)*h * (size_t)*w * (size_t)*c > ((size_t)1 << 28))
        return op_unsupported(bd, "tensor %d '%s' is too large", ti, t->name);
    return IMCAP_OK;
}

/* The graph value holding an activation tensor. */
static imcap_status act_input(builder *bd, int k, int *value, int *ti_out)
{
    const tfl_op *op = &bd->m->ops[bd->op];
    if (k >= op->n_in || op->in[k] < 0) return op_bad(bd, "missing input %d", k);
    int ti = op->in[k];
    const tfl_tensor *t = &bd->m->t[ti];
    if (t->value < 0) {
        if (t->data) return op_unsupported(bd, "input %d (tensor %d '%s') is a constant", k, ti, t->name);
        return op_bad(bd, "input %d (tensor %d '%s') is read before it is computed", k, ti, t->name);
    }
    *value = t->value;
    if (ti_out) *ti_out = ti;
    return IMCAP_OK;
}

/* Scale and zero point of element i of a quantized tensor. */
static void quant_at(const tfl_tensor *t, size_t ch, float *scale, int64_t *zp)
{
    if (t->n_q == 1) ch = 0;
    *scale = rd_f32(t->scale + 4 * ch);
    *zp = t->zp ? rd_i64(t->zp + 8 * ch) : 0;
}

/* Dequantize a constant uint8/int8/float32 tensor into dst (count floats),
 * same element order. */
static imcap_status dequant(builder *bd, int ti, float *dst)
{
    const tfl_tensor *t = &bd->m->t[ti];
    if (!t->data) return op_bad(bd, "tensor %d '%s' should be constant but has no data", ti, t->name);
    if (t->type == TT_FLOAT32) {
        for (size_t i = 0; i < t->count; i++) dst[i] = rd_f32(t->data + 4 * i);
        return IMCAP_OK;
    }
    if (t->type != TT_UINT8 && t->type != TT_INT8)
        return op_unsupported(bd, "weights tensor %d '%s' of type %s", ti, t->name, type_name(t->type));
    if (t->n_q == 0) return op_bad(bd, "quantized tensor %d '%s' has no scale", ti, t->name);
    size_t inner = 1, nch = t->n_q;
    for (int d = t->qdim + 1; d < t->n_dims; d++) inner *= (size_t)t->shape[d];
    for (size_t ch = 0; ch < nch; ch++) {
        float sc;
        int64_t zp;
        quant_at(t, ch, &sc, &zp);
        if (t->type == TT_UINT8 ? (zp < 0 || zp > 255) : (zp < -128 || zp > 127))
            return op_bad(bd, "tensor %d '%s': zero point %lld out of range", ti, t->name, (long long)zp);
    }
    for (size_t i = 0; i < t->count; i++) {
        int q = t->type == TT_UINT8 ? (int)t->data[i] : (int)(int8_t)t->data[i];
        float sc;
        int64_t zp;
        quant_at(t, (i / inner) % nch, &sc, &zp);
        dst[i] = sc * (float)(q - zp);
    }
    return IMCAP_OK;
}

/* Bias of a conv: int32 with scale input_scale * weight_scale[c], or float. */
static imcap_status dequant_bias(builder *bd, int bi, int xi, int wi, int cout, float *dst)
{
    const tfl_tensor *b = &bd->m->t[bi], *x = &bd->m->t[xi], *w = &bd->m->t[wi];
    if (!b->data) return op_bad(bd, "bias tensor %d '%s' has no data", bi, b->name);
    if (b->n_dims != 1 || b->shape[0] != cout)
        return op_bad(bd, "bias tensor %d '%s' should have shape [%d]", bi, b->name, cout);
    if (b->type == TT_FLOAT32) return dequant(bd, bi, dst);
    if (b->type != TT_INT32)
        return op_unsupported(bd, "bias tensor %d '%s' of type %s", bi, b->name, type_name(b->type));
    if (x->n_q != 1 || w->n_q == 0)
        return op_bad(bd, "int32 bias %d '%s' needs quantized input and weights", bi, b->name);
    if (w->n_q != 1 && w->n_q != (size_t)cout)
        return op_bad(bd, "weights tensor %d '%s' has %zu scales for %d output channels", wi, w->name, w->n_q,
                      cout);
    float xs;
    int64_t xz;
    quant_at(x, 0, &xs, &xz);
    for (int c = 0; c < cout; c++) {
        float ws;
        int64_t wz;
        quant_at(w, (size_t)c, &ws, &wz);
        dst[c] = (float)((double)rd_i32(b->data + 4 * (size_t)c) * (double)xs * (double)ws);
    }
    return IMCAP_OK;
}

static imcap_status map_act(builder *bd, int a, enc_act *out)
{
    switch (a) {
    case ACT_NONE: *out = ENC_ACT_NONE; return IMCAP_OK;
    case ACT_RELU: *out = ENC_ACT_RELU; return IMCAP_OK;
    case ACT_RELU6: *out = ENC_ACT_RELU6; return IMCAP_OK;
    default: return op_unsupported(bd, "fused activation %s", act_name(a));
    }
}

static imcap_status map_pad(builder *bd, int p, enc_pad *out)
{
    if (p == PAD_SAME) *out = ENC_PAD_SAME;
    else if (p == PAD_VALID) *out = ENC_PAD_VALID;
    else return op_bad(bd, "unknown padding %d", p);
    return IMCAP_OK;
}

static imcap_status check_stride(builder *bd, int sh, int sw)
{
    if (sh < 1 || sw < 1 || sh > TFL_MAX_DIM || sw > TFL_MAX_DIM) return op_bad(bd, "stride %dx%d", sh, sw);
    return IMCAP_OK;
}

/* Options table of the current operator; fails if it has another type. */
static imcap_status op_options(builder *bd, int want, const fbtab **opt)
{
    const tfl_op *op = &bd->m->ops[bd->op];
    if (!op->has_opt) return op_bad(bd, "missing options");
    if (op->opt_type != want) return op_bad(bd, "options of type %d, expected %d", op->opt_type, want);
    *opt = &op->opt;
    snprintf(bd->m->b.ctx, sizeof bd->m->b.ctx, "operator %d: options", bd->op);
    return IMCAP_OK;
}

/* The tensor's name; converters join fused names with ';': when the whole
 * does not fit, the first part; else "t<index>". */
static void value_name(const tfl_model *m, int ti, char *dst)
{
    const char *n = m->t[ti].name;
    size_t first = strcspn(n, ";");
    if (n[0] && strlen(n) < ENC_NAME_LEN - 1) snprintf(dst, ENC_NAME_LEN, "%s", n);
    else if (first > 0 && first < ENC_NAME_LEN - 1) snprintf(dst, ENC_NAME_LEN, "%.*s", (int)first, n);
    else snprintf(dst, ENC_NAME_LEN, "t%d", ti);
}

/* Append the node, check the graph's inferred shape against the TFLite
 * output tensor and record the value. */
static imcap_status emit(builder *bd, enc_node *node)
{
    const tfl_op *op = &bd->m->ops[bd->op];
    int ti = op->out[0];
    char name[ENC_NAME_LEN];
    value_name(bd->m, ti, name);
    snprintf(node->name, sizeof node->name, "%s", name);
    /* Some converters store no shape for activations (the runtime infers
     * them); then the graph's inferred shape is taken as is. */
    bool known = bd->m->t[ti].n_dims > 0;
    int h = 0, w = 0, c = 0;
    imcap_status s = known ? tensor_hwc(bd, ti, &h, &w, &c) : IMCAP_OK;
    if (s) return s;
    int v = enc_graph_add_node(bd->g, node, name);
    if (v < 0) {
        char nb[16];
        return imcap_fail_prefix(IMCAP_E_FORMAT, "%s: operator %d (%s)", bd->m->b.path, bd->op,
                                 tflite_op_name(op->code, nb, sizeof nb));
    }
    const enc_value *ev = enc_graph_value(bd->g, v);
    if (!ev || (known && (ev->h != h || ev->w != w || ev->c != c)))
        return op_bad(bd, "output tensor %d '%s' is %dx%dx%d but the operator computes %dx%dx%d", ti,
                      bd->m->t[ti].name, h, w, c, ev ? ev->h : -1, ev ? ev->w : -1, ev ? ev->c : -1);
    bd->m->t[ti].value = v;
    bd->m->t[ti].producer = bd->op;
    q_value(bd, v, ti);
    return IMCAP_OK;
}

static imcap_status add_param(builder *bd, const char *what, int ti, int n_dims, const int *shape,
                              const float *data, int *id)
{
    char name[ENC_NAME_LEN];
    snprintf(name, sizeof name, "op%d.%s:%s", bd->op, what, bd->m->t[ti].name);
    *id = enc_graph_add_param(bd->g, name, n_dims, shape, data);
    if (*id < 0) return imcap_fail_prefix(IMCAP_E_NOMEM, "%s: operator %d", bd->m->b.path, bd->op);
    return IMCAP_OK;
}

static imcap_status scratch(builder *bd, size_t n)
{
    imcap_free(bd->tmp);
    imcap_free(bd->tmp2);
    bd->tmp = imcap_alloc(n, sizeof(float));
    bd->tmp2 = imcap_alloc(n, sizeof(float));
    return bd->tmp && bd->tmp2 ? IMCAP_OK : IMCAP_E_NOMEM;
}

/* The int8 program's tensors of a convolution: uint8 weights minus 128 in
 * the graph's layout, zero points minus 128, scales, the int32 bias. */
static imcap_status q_weights(builder *bd, int wi, int bi, bool depthwise, int kh, int kw, int cout, enc_qnode *qn)
{
    const tfl_tensor *wt = &bd->m->t[wi];
    if (bd->q_off) return IMCAP_OK;
    if (wt->type != TT_UINT8)
        return q_stop(bd, "weights tensor %d '%s' is %s (int8 execution runs UINT8 weights)", wi, wt->name,
                      type_name(wt->type)), IMCAP_OK;
    if (bi >= 0 && bd->m->t[bi].type != TT_INT32)
        return q_stop(bd, "bias tensor %d is %s, not INT32", bi, type_name(bd->m->t[bi].type)), IMCAP_OK;
    int8_t *w8 = imcap_alloc(wt->count, 1);
    int32_t *zp = imcap_alloc(wt->n_q + 1, sizeof(int32_t)), *b = imcap_alloc((size_t)cout, sizeof(int32_t));
    float *sc = imcap_alloc(wt->n_q + 1, sizeof(float));
    imcap_status s = w8 && zp && b && sc ? IMCAP_OK : IMCAP_E_NOMEM;
    if (!s) {
        if (depthwise) {
            for (size_t i = 0; i < wt->count; i++) w8[i] = (int8_t)((int)wt->data[i] - 128);
        } else { /* OHWI -> HWIO */
            size_t khw = (size_t)kh * (size_t)kw, cin = wt->count / khw / (size_t)cout;
            for (size_t oc = 0; oc < (size_t)cout; oc++)
                for (size_t k = 0; k < khw; k++)
                    for (size_t ic = 0; ic < cin; ic++)
                        w8[(k * cin + ic) * (size_t)cout + oc] = (int8_t)((int)wt->data[(oc * khw + k) * cin + ic] - 128);
        }
        for (size_t c = 0; c < wt->n_q; c++) {
            int64_t z;
            quant_at(wt, c, &sc[c], &z);
            zp[c] = (int32_t)z - 128;
        }
        if (bi >= 0)
            for (int c = 0; c < cout; c++) b[c] = rd_i32(bd->m->t[bi].data + 4 * (size_t)c);
        qn->w = enc_qgraph_add_tensor(bd->g, ENC_QT_I8, wt->count, w8);
        qn->wzp = enc_qgraph_add_tensor(bd->g, ENC_QT_I32, wt->n_q, zp);
        qn->ws = enc_qgraph_add_tensor(bd->g, ENC_QT_F32, wt->n_q, sc);
        qn->b = bi >= 0 ? enc_qgraph_add_tensor(bd->g, ENC_QT_I32, (size_t)cout, b) : -1;
        if (qn->w < 0 || qn->wzp < 0 || qn->ws < 0 || (bi >= 0 && qn->b < 0)) s = IMCAP_E_NOMEM;
    }
    imcap_free(w8);
    imcap_free(zp);
    imcap_free(b);
    imcap_free(sc);
    return s ? imcap_fail(s, "%s: operator %d: out of memory", bd->m->b.path, bd->op) : IMCAP_OK;
}

static imcap_status conv(builder *bd, bool depthwise)
{
    const tfl_op *op = &bd->m->ops[bd->op];
    fbuf *b = &bd->m->b;
    imcap_status s;
    int xv, xi;
    if ((s = act_input(bd, 0, &xv, &xi))) return s;
    if (op->n_in < 2 || op->in[1] < 0) return op_bad(bd, "missing weights");
    int wi = op->in[1], bi = op->n_in > 2 ? op->in[2] : -1;
    const tfl_tensor *wt = &bd->m->t[wi];
    const enc_value *x = enc_graph_value(bd->g, xv);
    if (wt->n_dims != 4) return op_bad(bd, "weights tensor %d '%s' is not 4-D", wi, wt->name);
    const fbtab *o;
    if ((s = op_options(bd, depthwise ? OPT_DWCONV2D : OPT_CONV2D, &o))) return s;
    int pad, act;
    int32_t sw, sh, dw, dh;
    if ((s = fb_i8(b, o, 0, 0, &pad)) || (s = fb_i32(b, o, 1, 0, &sw)) || (s = fb_i32(b, o, 2, 0, &sh)) ||
        (s = fb_i8(b, o, depthwise ? 4 : 3, 0, &act)) || (s = fb_i32(b, o, depthwise ? 5 : 4, 1, &dw)) ||
        (s = fb_i32(b, o, depthwise ? 6 : 5, 1, &dh)))
        return s;
    enc_node node = {0};
    node.op = depthwise ? ENC_DWCONV2D : ENC_CONV2D;
    node.n_inputs = 1;
    node.inputs[0] = xv;
    node.sh = sh;
    node.sw = sw;
    node.weight = node.bias = -1;
    if ((s = map_pad(bd, pad, &node.pad)) || (s = map_act(bd, act, &node.act)) || (s = check_stride(bd, sh, sw)))
        return s;
    if (dw != 1 || dh != 1) return op_unsupported(bd, "dilation %dx%d", dh, dw);

    if (wt->n_q > 1 && wt->qdim != (depthwise ? 3 : 0))
        return op_unsupported(bd, "weights quantized per channel along dimension %d", wt->qdim);
    int kh = wt->shape[1], kw = wt->shape[2], cout;
    if (depthwise) {
        /* weights [1][KH][KW][Cin*mult] = the graph's [KH][KW][Cin*mult] */
        cout = wt->shape[3];
        if (wt->shape[0] != 1 || cout % x->c != 0)
            return op_bad(bd, "depthwise weights %dx%dx%dx%d do not fit %d input channels", wt->shape[0], kh,
                          kw, cout, x->c);
        node.mult = cout / x->c;
        if ((s = scratch(bd, wt->count)) || (s = dequant(bd, wi, bd->tmp))) return s;
        int shape[3] = {kh, kw, cout};
        if ((s = add_param(bd, "w", wi, 3, shape, bd->tmp, &node.weight))) return s;
    } else {
        /* weights [Cout][KH][KW][Cin] (OHWI) -> the graph's [KH][KW][Cin][Cout] */
        cout = wt->shape[0];
        int cin = wt->shape[3];
        if (cin != x->c) return op_bad(bd, "weights expect %d input channels, the input has %d", cin, x->c);
        if ((s = scratch(bd, wt->count)) || (s = dequant(bd, wi, bd->tmp))) return s;
        size_t khw = (size_t)kh * (size_t)kw;
        for (int oc = 0; oc < cout; oc++)
            for (size_t k = 0; k < khw; k++)
                for (int ic = 0; ic < cin; ic++)
                    bd->tmp2[(k * (size_t)cin + (size_t)ic) * (size_t)cout + (size_t)oc] =
                        bd->tmp[((size_t)oc * khw + k) * (size_t)cin + (size_t)ic];
        int shape[4] = {kh, kw, cin, cout};
        if ((s = add_param(bd, "w", wi, 4, shape, bd->tmp2, &node.weight))) return s;
    }
    node.kh = kh;
    node.kw = kw;
    if (bi >= 0) {
        if ((s = dequant_bias(bd, bi, xi, wi, cout, bd->tmp))) return s;
        int shape[1] = {cout};
        if ((s = add_param(bd, "b", bi, 1, shape, bd->tmp, &node.bias))) return s;
    }
    enc_qnode qn = {-1, -1, -1, -1};
    if ((s = q_weights(bd, wi, bi, depthwise, kh, kw, cout, &qn))) return s;
    if ((s = emit(bd, &node))) return s;
    if (!bd->q_off && enc_qgraph_set_node(bd->g, enc_graph_n_nodes(bd->g) - 1, &qn)) q_stop(bd, "%s", imcap_last_error());
    return IMCAP_OK;
}

static imcap_status pool(builder *bd, bool is_max)
{
    fbuf *b = &bd->m->b;
    imcap_status s;
    int xv;
    if ((s = act_input(bd, 0, &xv, NULL))) return s;
    const enc_value *x = enc_graph_value(bd->g, xv);
    const fbtab *o;
    if ((s = op_options(bd, OPT_POOL2D, &o))) return s;
    int pad, act;
    int32_t sw, sh, fw, fh;
    if ((s = fb_i8(b, o, 0, 0, &pad)) || (s = fb_i32(b, o, 1, 0, &sw)) || (s = fb_i32(b, o, 2, 0, &sh)) ||
        (s = fb_i32(b, o, 3, 0, &fw)) || (s = fb_i32(b, o, 4, 0, &fh)) || (s = fb_i8(b, o, 5, 0, &act)))
        return s;
    enc_node node = {0};
    node.n_inputs = 1;
    node.inputs[0] = xv;
    node.weight = node.bias = -1;
    if ((s = map_pad(bd, pad, &node.pad)) || (s = map_act(bd, act, &node.act)) || (s = check_stride(bd, sh, sw)))
        return s;
    if (fh < 1 || fw < 1 || fh > TFL_MAX_DIM || fw > TFL_MAX_DIM) return op_bad(bd, "pool window %dx%d", fh, fw);
    if (!is_max && node.pad == ENC_PAD_VALID && fh == x->h && fw == x->w && node.act == ENC_ACT_NONE) {
        node.op = ENC_GAP; /* the window covers the whole input: one output */
    } else {
        node.op = is_max ? ENC_MAXPOOL : ENC_AVGPOOL;
        node.kh = fh;
        node.kw = fw;
        node.sh = sh;
        node.sw = sw;
    }
    return emit(bd, &node);
}

static imcap_status add(builder *bd)
{
    imcap_status s;
    int a, c;
    if ((s = act_input(bd, 0, &a, NULL)) || (s = act_input(bd, 1, &c, NULL))) return s;
    if (bd->m->ops[bd->op].n_in != 2) return op_bad(bd, "expected 2 inputs");
    const enc_value *va = enc_graph_value(bd->g, a), *vc = enc_graph_value(bd->g, c);
    if (va->h != vc->h || va->w != vc->w || va->c != vc->c)
        return op_unsupported(bd, "broadcasting %dx%dx%d + %dx%dx%d", va->h, va->w, va->c, vc->h, vc->w, vc->c);
    int act = ACT_NONE;
    const tfl_op *op = &bd->m->ops[bd->op];
    if (op->has_opt) {
        const fbtab *o;
        if ((s = op_options(bd, OPT_ADD, &o)) || (s = fb_i8(&bd->m->b, o, 0, 0, &act))) return s;
    }
    enc_node node = {0};
    node.op = ENC_ADD;
    node.n_inputs = 2;
    node.inputs[0] = a;
    node.inputs[1] = c;
    node.weight = node.bias = -1;
    if ((s = map_act(bd, act, &node.act))) return s;
    return emit(bd, &node);
}

static imcap_status softmax(builder *bd)
{
    imcap_status s;
    int xv;
    if ((s = act_input(bd, 0, &xv, NULL))) return s;
    float beta = 1.0f;
    const tfl_op *op = &bd->m->ops[bd->op];
    if (op->has_opt) {
        const fbtab *o;
        if ((s = op_options(bd, OPT_SOFTMAX, &o)) || (s = fb_f32(&bd->m->b, o, 0, 0.0f, &beta))) return s;
    }
    if (beta != 1.0f) return op_unsupported(bd, "softmax beta %g (only 1 is supported)", (double)beta);
    const enc_value *x = enc_graph_value(bd->g, xv);
    if (x->h != 1 || x->w != 1) return op_unsupported(bd, "softmax over a %dx%dx%d tensor", x->h, x->w, x->c);
    enc_node node = {0};
    node.op = ENC_SOFTMAX;
    node.n_inputs = 1;
    node.inputs[0] = xv;
    node.weight = node.bias = -1;
    return emit(bd, &node);
}

/* Target of a RESHAPE whose output tensor has no stored shape: the
 * constant int32 shape input, else ReshapeOptions.new_shape (field 0).
 * A -1 takes the remaining elements. */
static imcap_status reshape_target(builder *bd, size_t count, int *h, int *w, int *c)
{
    const tfl_op *op = &bd->m->ops[bd->op];
    fbuf *b = &bd->m->b;
    const uint8_t *dims = NULL;
    size_t n = 0;
    if (op->n_in > 1 && op->in[1] >= 0) {
        const tfl_tensor *st = &bd->m->t[op->in[1]];
        if (st->type != TT_INT32 || st->n_dims != 1 || !st->data)
            return op_unsupported(bd, "non-constant target shape");
        dims = st->data;
        n = st->count;
    } else if (op->has_opt && op->opt_type == OPT_RESHAPE) {
        fbvec v;
        snprintf(b->ctx, sizeof b->ctx, "operator %d: options", bd->op);
        imcap_status s = fb_vec(b, &op->opt, 0, 4, &v);
        if (s) return s;
        dims = b->p + v.pos;
        n = v.len;
    }
    if (!dims || n < 1 || n > TFL_MAX_DIMS) return op_bad(bd, "reshape without a usable target shape");
    int d[TFL_MAX_DIMS], unknown = -1;
    size_t known = 1;
    for (size_t i = 0; i < n; i++) {
        d[i] = rd_i32(dims + 4 * i);
        if (d[i] == -1 && unknown < 0) unknown = (int)i;
        else if (d[i] < 1 || (size_t)d[i] > count) return op_bad(bd, "reshape dimension %d", d[i]);
        else if ((known *= (size_t)d[i]) > count) return op_bad(bd, "reshape of %zu elements to more", count);
    }
    if (unknown >= 0) {
        if (count % known) return op_bad(bd, "reshape of %zu elements to a shape of %zu x ?", count, known);
        d[unknown] = (int)(count / known);
    } else if (known != count) {
        return op_bad(bd, "reshape of %zu elements to %zu", count, known);
    }
    /* Only flattening to [.., C] with leading ones is a pure renaming here. */
    for (size_t i = 0; i + 1 < n; i++)
        if (d[i] != 1) return op_unsupported(bd, "reshape to a shape other than [1,...,1,C]");
    *h = *w = 1;
    *c = d[n - 1];
    return IMCAP_OK;
}

/* RESHAPE / SQUEEZE / (DE)QUANTIZE: in float execution they only rename a
 * value when the per-image layout is unchanged. */
static imcap_status alias(builder *bd)
{
    const tfl_op *op = &bd->m->ops[bd->op];
    imcap_status s;
    int xv;
    if ((s = act_input(bd, 0, &xv, NULL))) return s;
    const enc_value *x = enc_graph_value(bd->g, xv);
    int h, w, c, ti = op->out[0];
    if (bd->m->t[ti].n_dims > 0) {
        if ((s = tensor_hwc(bd, ti, &h, &w, &c))) return s;
    } else if (op->code == OP_RESHAPE) {
        size_t count = (size_t)x->h * (size_t)x->w * (size_t)x->c;
        if ((s = reshape_target(bd, count, &h, &w, &c))) return s;
    } else if (op->code == OP_SQUEEZE) {
        if (x->h != 1 || x->w != 1) return op_unsupported(bd, "squeeze of a %dx%dx%d tensor", x->h, x->w, x->c);
        h = w = 1;
        c = x->c;
    } else {
        h = x->h;
        w = x->w;
        c = x->c;
    }
    bool same = (h == x->h && w == x->w && c == x->c) || (x->h == 1 && x->w == 1 && h == 1 && w == 1 && c == x->c);
    if (!same) return op_unsupported(bd, "reshape from %dx%dx%d to %dx%dx%d", x->h, x->w, x->c, h, w, c);
    /* In the int8 program the value keeps its quantization: the output must
     * have the same (or none). */
    const tfl_tensor *ot = &bd->m->t[ti], *it = &bd->m->t[op->in[0]];
    if (ot->type != TT_UINT8) {
        q_stop(bd, "output tensor %d '%s' is %s", ti, ot->name, type_name(ot->type));
    } else if (ot->n_q > 0) {
        float a, b;
        int64_t za, zb;
        quant_at(ot, 0, &a, &za);
        if (it->n_q > 0) quant_at(it, 0, &b, &zb);
        if (it->n_q == 0 || ot->n_q != 1 || a != b || za != zb)
            q_stop(bd, "output tensor %d '%s' has another quantization than its input (requantization)", ti, ot->name);
    }
    bd->m->t[ti].value = xv;
    bd->m->t[ti].producer = bd->op;
    return IMCAP_OK;
}

static bool is_alias_op(int code)
{
    return code == OP_RESHAPE || code == OP_SQUEEZE || code == OP_QUANTIZE || code == OP_DEQUANTIZE;
}

/* Follow renaming operators back to the tensor whose producer computes. */
static int skip_aliases(const tfl_model *m, int ti)
{
    for (int guard = 0; ti >= 0 && guard < m->n_ops; guard++) {
        int p = m->t[ti].producer;
        if (p < 0 || !is_alias_op(m->ops[p].code)) break;
        ti = m->ops[p].in[0];
    }
    return ti;
}

static imcap_status set_outputs(builder *bd)
{
    tfl_model *m = bd->m;
    const char *path = m->b.path;
    int out = m->output;
    if (m->t[out].value < 0) return imcap_fail(IMCAP_E_FORMAT, "%s: the output tensor %d is never computed", path, out);
    int pt = skip_aliases(m, out), p = m->t[pt].producer, logits_t;
    imcap_status s;
    if (p >= 0 && m->ops[p].code == OP_SOFTMAX) {
        if ((s = enc_graph_set_output(bd->g, "probs", m->t[out].value))) return s;
        logits_t = skip_aliases(m, m->ops[p].in[0]);
    } else {
        enc_node node = {0};
        node.op = ENC_SOFTMAX;
        node.n_inputs = 1;
        node.inputs[0] = m->t[out].value;
        node.weight = node.bias = -1;
        snprintf(node.name, sizeof node.name, "probs");
        int v = enc_graph_add_node(bd->g, &node, "probs");
        if (v < 0) return imcap_fail_prefix(IMCAP_E_UNSUPPORTED, "%s: softmax of the output", path);
        if ((s = enc_graph_set_output(bd->g, "probs", v))) return s;
        if (!bd->q_off && enc_qgraph_set_value(bd->g, v, 1.0f / 256.0f, 0)) q_stop(bd, "%s", imcap_last_error());
        logits_t = pt;
    }
    if ((s = enc_graph_set_output(bd->g, "logits", m->t[logits_t].value))) return s;
    /* The embedding: the average-pool output feeding the classifier. */
    int cp = m->t[logits_t].producer;
    char nb[16];
    if (cp < 0 || m->ops[cp].code != OP_CONV_2D)
        return imcap_fail(IMCAP_E_UNSUPPORTED, "%s: cannot find the pooled embedding: the logits come from %s",
                          path, cp < 0 ? "the input" : tflite_op_name(m->ops[cp].code, nb, sizeof nb));
    int et = skip_aliases(m, m->ops[cp].in[0]), ep = m->t[et].producer;
    const enc_value *ev = enc_graph_value(bd->g, m->t[et].value);
    if (ep < 0 || m->ops[ep].code != OP_AVERAGE_POOL_2D || ev->h != 1 || ev->w != 1)
        return imcap_fail(IMCAP_E_UNSUPPORTED,
                          "%s: cannot find the pooled embedding: the classifier (operator %d) reads %s", path, cp,
                          ep < 0 ? "the input" : tflite_op_name(m->ops[ep].code, nb, sizeof nb));
    return enc_graph_set_output(bd->g, "embedding", m->t[et].value);
}

static imcap_status build(tfl_model *m, const char *graph_name, enc_graph **out)
{
    builder bd = {.m = m};
    imcap_status s = IMCAP_OK;
    const char *path = m->b.path;
    tfl_tensor *in = &m->t[m->input];
    if (in->n_dims != 4 || in->shape[0] != 1 || in->shape[3] != 3)
        return imcap_fail(IMCAP_E_UNSUPPORTED, "%s: input tensor '%s' is not a [1,H,W,3] image", path, in->name);
    if ((in->type != TT_UINT8 && in->type != TT_INT8) || in->n_q != 1)
        return imcap_fail(IMCAP_E_UNSUPPORTED,
                          "%s: input tensor '%s' is %s%s; only quantized uint8/int8 images are supported "
                          "(their quantization defines the pixel normalisation)",
                          path, in->name, type_name(in->type), in->n_q == 1 ? "" : " without one scale");
    float isc;
    int64_t izp;
    quant_at(in, 0, &isc, &izp);
    if (in->type == TT_INT8) izp += 128; /* q = pixel - 128 */
    if (!(isc > 0.0f) || izp < 0 || izp > 255)
        return imcap_fail(IMCAP_E_FORMAT, "%s: input quantization scale %g zero point %lld", path, (double)isc,
                          (long long)izp);

    bd.g = enc_graph_new(graph_name);
    if (!bd.g) return IMCAP_E_NOMEM;
    enc_preproc pp = {.in_h = in->shape[1], .in_w = in->shape[2]};
    for (int c = 0; c < 3; c++) {
        /* x = s * (pixel - zp) = pixel/255 * (255 s) - s zp */
        pp.scale[c] = 255.0f * isc;
        pp.bias[c] = -isc * (float)izp;
    }
    enc_graph_set_preproc(bd.g, &pp);
    char name[ENC_NAME_LEN];
    value_name(m, m->input, name);
    in->value = enc_graph_add_input(bd.g, name, in->shape[1], in->shape[2], 3);
    if (in->value < 0) {
        s = imcap_fail_prefix(IMCAP_E_FORMAT, "%s: input", path);
        goto done;
    }
    bd.op = -1;
    q_value(&bd, in->value, m->input);

    for (bd.op = 0; bd.op < m->n_ops && !s; bd.op++) {
        const tfl_op *op = &m->ops[bd.op];
        if (op->n_out != 1 || op->out[0] < 0) {
            s = op_unsupported(&bd, "%d outputs", op->n_out);
            break;
        }
        if (m->t[op->out[0]].value >= 0 || m->t[op->out[0]].data) {
            s = op_bad(&bd, "output tensor %d is written twice or is a constant", op->out[0]);
            break;
        }
        switch (op->code) {
        case OP_CONV_2D: s = conv(&bd, false); break;
        case OP_DEPTHWISE_CONV_2D: s = conv(&bd, true); break;
        case OP_AVERAGE_POOL_2D: s = pool(&bd, false); break;
        case OP_MAX_POOL_2D: s = pool(&bd, true); break;
        case OP_ADD: s = add(&bd); break;
        case OP_SOFTMAX: s = softmax(&bd); break;
        case OP_RESHAPE: case OP_SQUEEZE: case OP_QUANTIZE: case OP_DEQUANTIZE: s = alias(&bd); break;
        default: s = op_unsupported(&bd, "operator not supported"); break;
        }
    }
    if (!s) s = set_outputs(&bd);
    if (!s && bd.q_off) enc_qgraph_disable(bd.g, "%s: %s", path, bd.q_why);
    else if (!s && enc_qgraph_finish(bd.g)) imcap_clear_error();
done:
    imcap_free(bd.tmp);
    imcap_free(bd.tmp2);
    if (s) {
        enc_graph_free(bd.g);
        return s;
    }
    *out = bd.g;
    return IMCAP_OK;
}

imcap_status tflite_import_mem(const uint8_t *data, size_t len, const char *path, enc_graph **out)
{
    *out = NULL;
    tfl_model m = {.b = {.p = data, .n = len, .path = path}};
    imcap_status s = parse_model(&m);
    if (!s) {
        const char *base = strrchr(path, '/');
        base = base ? base + 1 : path;
        char gname[ENC_NAME_LEN];
        snprintf(gname, sizeof gname, "%s", base);
        char *dot = strrchr(gname, '.');
        if (dot && dot != gname) *dot = 0;
        s = build(&m, gname, out);
    }
    imcap_free(m.t);
    imcap_free(m.ops);
    return s;
}

imcap_status tflite_import(const char *path, enc_graph **out)
{
    char *data;
    size_t len;
    *out = NULL;
    imcap_status s = imcap_read_file(path, (size_t)1 << 31, &data, &len);
    if (s) return s;
    s = tflite_import_mem((const uint8_t *)data, len, path, out);
    free(data);
    return s;
}
