/* pdrop/c_api.h - pdrop's C interface: schedules, scoring, rank & drop,
 * compaction and the per-sequence drop record, for C engines (ggml-style
 * runtimes), FFI callers (Python ctypes, Rust) and C++ engines built
 * without exceptions that want a status code instead of an abort.
 *
 * The shape of llama.cpp's include/llama.h: plain structs with named
 * fields, a pdrop_*_default_params() function for each params struct,
 * opaque handles with _new/_free, and every call that can fail returning a
 * pdrop_status. A failed call writes nothing the caller handed over (every
 * argument is validated first, as in the C++ API) and leaves its message in
 * pdrop_last_error(): the C++ API's message with the C function's name in
 * front, e.g.
 *
 *   pdrop_rank_and_drop: keep_counts[0] (9) must be in [0, spans[0].length = 8]
 *
 * Everything here is a thin layer over the C++ headers of the same names
 * (pdrop/schedule.hpp, score.hpp, rank_drop.hpp, compact.hpp,
 * sequence.hpp); their comments give each rule and its source.
 *
 * Building it. The definitions live in pdrop/c_api_impl.hpp, compiled once:
 *   - CMake: link the pdrop::c library (option PDROP_BUILD_C_API, ON when
 *     pdrop is the top-level project; a static library, or a shared one
 *     with BUILD_SHARED_LIBS). It is compiled with exceptions whatever the
 *     engine's flags, and no exception crosses this interface.
 *   - otherwise: one C++17 file `#include "pdrop/c_api_impl.hpp"`, compiled
 *     with exceptions (it refuses to compile without), linked with the C++
 *     runtime.
 *
 * Conventions.
 *   - Sizes, counts, indices and strides are int64_t; strides count
 *     elements, not bytes. Token indices and positions are 0-based.
 *   - Handles and params pointers must not be NULL (PDROP_STATUS_INVALID_
 *     ARGUMENT otherwise); a "maybe_" pointer may be NULL (not wanted).
 *   - Every function may be called from any thread; a handle is used by one
 *     thread at a time. pdrop_last_error() is per thread.
 */
#ifndef PDROP_C_API_H
#define PDROP_C_API_H

#include <stddef.h>
#include <stdint.h>

#if defined(__GNUC__)
#define PDROP_C_API __attribute__((visibility("default")))
#else
#define PDROP_C_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* ---- status ---------------------------------------------------------- */

typedef enum pdrop_status {
  PDROP_STATUS_OK = 0,
  /* Bad input the C++ API reports as pdrop::invalid_argument: a NULL
   * handle or params pointer, an enum value out of range. */
  PDROP_STATUS_INVALID_ARGUMENT = 1,
  /* pdrop::shape_error: shapes, strides or sizes that do not fit. */
  PDROP_STATUS_SHAPE_ERROR = 2,
  /* pdrop::value_error: values out of range or not finite. */
  PDROP_STATUS_VALUE_ERROR = 3,
  /* An allocation failed (a handle, or a workspace growing). */
  PDROP_STATUS_OUT_OF_MEMORY = 4,
  /* Anything else (a bug in pdrop: please report the message). */
  PDROP_STATUS_INTERNAL_ERROR = 5,
  /* Not values: they make the type as wide as int, so that any int a
   * caller passes is a valid value of it in C++ too (as Vulkan's
   * *_MAX_ENUM); a call rejects them as it rejects any other unknown value. */
  PDROP_STATUS_ENUM_MIN_ = -0x7FFFFFFF - 1,
  PDROP_STATUS_ENUM_MAX_ = 0x7FFFFFFF
} pdrop_status;

/* "ok", "invalid_argument", "shape_error", "value_error", "out_of_memory",
 * "internal_error"; "unknown" for any other value. Never NULL. */
PDROP_C_API const char* pdrop_status_name(pdrop_status status);

/* The message of this thread's last failed call ("" after a call that
 * succeeded). Valid until this thread's next pdrop call. Never NULL. */
PDROP_C_API const char* pdrop_last_error(void);

/* "MAJOR.MINOR.PATCH" of the pdrop headers the library was built from. */
PDROP_C_API const char* pdrop_version(void);

/* ---- vocabulary ------------------------------------------------------ */

/* Element types. Scoring takes F32, F16 (IEEE binary16) and BF16;
 * compaction moves rows of any of them, U8 moving raw bytes (a quantized
 * KV row is `features` bytes); positions are I32 or I64. */
typedef enum pdrop_type {
  PDROP_TYPE_F32 = 0,
  PDROP_TYPE_F16 = 1,
  PDROP_TYPE_BF16 = 2,
  PDROP_TYPE_I32 = 3,
  PDROP_TYPE_I64 = 4,
  PDROP_TYPE_U8 = 5,
  /* as wide as int, see pdrop_status */
  PDROP_TYPE_ENUM_MIN_ = -0x7FFFFFFF - 1,
  PDROP_TYPE_ENUM_MAX_ = 0x7FFFFFFF
} pdrop_type;

/* tokens x features; element (t, f) is at element offset
 * t * row_stride + f from data (row_stride >= features). Hidden states,
 * positions (features = 1, or the M-RoPE rows), any per-token buffer. */
typedef struct pdrop_rows {
  void* data;
  pdrop_type type;
  int64_t tokens;
  int64_t features;
  int64_t row_stride;
} pdrop_rows;

/* heads x tokens x dim; element (h, t, i) is at element offset
 * h * head_stride + t * token_stride + i from data. HND cache [heads][cap]
 * [dim]: head_stride = cap * dim, token_stride = dim; NHD rows [tokens]
 * [heads][dim]: head_stride = dim, token_stride = heads * dim. Read-only
 * where an operator only reads it (q and k). */
typedef struct pdrop_heads {
  void* data;
  pdrop_type type;
  int64_t heads;
  int64_t tokens;
  int64_t dim;
  int64_t head_stride;
  int64_t token_stride;
} pdrop_heads;

/* Image tokens [start, start + length) of a sequence (pdrop::ImageSpan). */
typedef struct pdrop_image_span {
  int64_t start;
  int64_t length;
} pdrop_image_span;

/* pdrop::Strategy (pdrop/types.hpp). */
typedef enum pdrop_strategy {
  PDROP_STRATEGY_PYRAMID_DROP = 0,
  PDROP_STRATEGY_FASTV = 1,
  PDROP_STRATEGY_VTW = 2,
  PDROP_STRATEGY_DART = 3,
  PDROP_STRATEGY_RANDOM = 4,
  PDROP_STRATEGY_V2DROP = 5,
  /* as wide as int, see pdrop_status */
  PDROP_STRATEGY_ENUM_MIN_ = -0x7FFFFFFF - 1,
  PDROP_STRATEGY_ENUM_MAX_ = 0x7FFFFFFF
} pdrop_strategy;

/* pdrop::PositionMode: after a drop, positions become base, base+1, ...
 * (REINDEX, PyramidDrop) or move with their tokens (KEEP_ORIGINAL). */
typedef enum pdrop_position_mode {
  PDROP_POSITION_MODE_REINDEX = 0,
  PDROP_POSITION_MODE_KEEP_ORIGINAL = 1,
  /* as wide as int, see pdrop_status */
  PDROP_POSITION_MODE_ENUM_MIN_ = -0x7FFFFFFF - 1,
  PDROP_POSITION_MODE_ENUM_MAX_ = 0x7FFFFFFF
} pdrop_position_mode;

/* pdrop::Budget: keep counts per image span, or one over all spans. */
typedef enum pdrop_budget {
  PDROP_BUDGET_PER_SPAN = 0,
  PDROP_BUDGET_GLOBAL = 1,
  /* as wide as int, see pdrop_status */
  PDROP_BUDGET_ENUM_MIN_ = -0x7FFFFFFF - 1,
  PDROP_BUDGET_ENUM_MAX_ = 0x7FFFFFFF
} pdrop_budget;

/* pdrop::ProbRounding: attention probabilities rounded to fp16/bf16 before
 * they are averaged (to reproduce an fp16 reference run), or not. */
typedef enum pdrop_prob_rounding {
  PDROP_PROB_ROUNDING_NONE = 0,
  PDROP_PROB_ROUNDING_FP16 = 1,
  PDROP_PROB_ROUNDING_BF16 = 2,
  /* as wide as int, see pdrop_status */
  PDROP_PROB_ROUNDING_ENUM_MIN_ = -0x7FFFFFFF - 1,
  PDROP_PROB_ROUNDING_ENUM_MAX_ = 0x7FFFFFFF
} pdrop_prob_rounding;

/* pdrop::ScorePrecision: FP32 (float32 math), or every rounding of the
 * authors' PyTorch code run in fp16 / bf16 (logits, probabilities, mean over
 * heads, mean over query rows; pdrop/score.hpp gives the formulas). A chain
 * mode with prob_rounding other than NONE is a VALUE_ERROR. */
typedef enum pdrop_score_precision {
  PDROP_SCORE_PRECISION_FP32 = 0,
  PDROP_SCORE_PRECISION_FP16_CHAIN = 1,
  PDROP_SCORE_PRECISION_BF16_CHAIN = 2,
  /* as wide as int, see pdrop_status */
  PDROP_SCORE_PRECISION_ENUM_MIN_ = -0x7FFFFFFF - 1,
  PDROP_SCORE_PRECISION_ENUM_MAX_ = 0x7FFFFFFF
} pdrop_score_precision;

/* A caller's thread pool: must call task(task_ctx, i) once for every i in
 * [0, n), on any threads, and return when all calls have returned. tasks
 * never fail. Results are bit-identical to the serial path. */
typedef void (*pdrop_parallel_for_fn)(void* pool_ctx, int64_t n,
                                      void (*task)(void* task_ctx, int64_t i),
                                      void* task_ctx);

/* ---- schedules (pdrop/schedule.hpp) ---------------------------------- */

typedef struct pdrop_schedule pdrop_schedule;

/* PyramidDrop's schedule: `stages` stages over `layers` layers, drops after
 * layers k*floor(layers/stages), stage k keeping lambda^k of the image
 * tokens. pyramid(32, 4, 0.5): drops after 8, 16, 24, ratios 1, 0.5,
 * 0.25, 0.125. *out receives a new handle (pdrop_schedule_free). */
PDROP_C_API pdrop_status pdrop_schedule_pyramid(int64_t layers, int64_t stages,
                                                double lambda, pdrop_schedule** out);

/* Explicit lists: drop after each 1-based layer of drop_layers[0..n_drops)
 * (strictly increasing, in [1, layers - 1]), keeping ratios[i] (in [0, 1],
 * non-increasing) of the original image tokens after drop i. n_drops = 0
 * gives the dense schedule (the pointers may then be NULL). */
PDROP_C_API pdrop_status pdrop_schedule_from_lists(int64_t layers, const int64_t* drop_layers,
                                                   const double* ratios, int64_t n_drops,
                                                   pdrop_schedule** out);

/* A copy of `schedule` run by `strategy`, with the position mode the
 * strategy's reference code uses (VTW needs every ratio after a drop 0). */
PDROP_C_API pdrop_status pdrop_schedule_with_strategy(const pdrop_schedule* schedule,
                                                      pdrop_strategy strategy,
                                                      pdrop_schedule** out);

/* A copy of `schedule` with its position mode overridden. */
PDROP_C_API pdrop_status pdrop_schedule_with_position_mode(const pdrop_schedule* schedule,
                                                           pdrop_position_mode mode,
                                                           pdrop_schedule** out);

/* Frees a schedule; NULL is a no-op. */
PDROP_C_API void pdrop_schedule_free(pdrop_schedule* schedule);

typedef struct pdrop_schedule_info {
  int64_t num_layers;
  int64_t num_stages;   /* drops + 1 */
  pdrop_strategy strategy;
  pdrop_position_mode position_mode;
} pdrop_schedule_info;

PDROP_C_API pdrop_status pdrop_schedule_get_info(const pdrop_schedule* schedule,
                                                 pdrop_schedule_info* out);

/* The 1-based drop layers, num_stages - 1 of them, into out[0..capacity);
 * *n_out = their number. SHAPE_ERROR (nothing written) if capacity is
 * smaller. */
PDROP_C_API pdrop_status pdrop_schedule_drop_layers(const pdrop_schedule* schedule,
                                                    int64_t* out, int64_t capacity,
                                                    int64_t* n_out);

/* The one layer convention of the C API: *stage_out = the stage that starts
 * AT 0-based layer `layer` (a drop happens right before it runs), 0 when
 * none does. `layer` in [0, num_layers). A runtime calls it at the top of
 * every layer: if (stage) { drop with this layer's q/k; } run the layer. */
PDROP_C_API pdrop_status pdrop_schedule_drop_before(const pdrop_schedule* schedule,
                                                    int64_t layer, int64_t* stage_out);

/* *out = image tokens alive in `stage` of n0 original ones: int(n0 *
 * ratio[stage]) (Python's int() of the double product). */
PDROP_C_API pdrop_status pdrop_schedule_image_tokens(const pdrop_schedule* schedule,
                                                     int64_t n0, int64_t stage,
                                                     int64_t* out);

/* ---- workspace (pdrop/workspace.hpp) --------------------------------- */

typedef struct pdrop_workspace pdrop_workspace;

PDROP_C_API pdrop_status pdrop_workspace_new(pdrop_workspace** out);
PDROP_C_API void pdrop_workspace_free(pdrop_workspace* ws);

/* Sizes the workspace for drops up to these sizes, so pdrop_rank_and_drop
 * and pdrop_score_image_tokens allocate nothing: q_heads query heads over
 * kv_heads kv heads, `queries` query rows, `tokens` keys, head dim `dim`,
 * `image_tokens` scored tokens. parallel != 0: for calls with a
 * parallel_for (every kv-head group its own slice). */
PDROP_C_API pdrop_status pdrop_workspace_reserve(pdrop_workspace* ws, int64_t q_heads,
                                                 int64_t kv_heads, int64_t queries,
                                                 int64_t tokens, int64_t dim,
                                                 int64_t image_tokens, int parallel);

/* ---- scoring (pdrop/score.hpp) --------------------------------------- */

typedef struct pdrop_score_params {
  pdrop_heads q;                   /* Hq x nq x dim, post-RoPE query rows */
  const int64_t* query_pos;        /* nq: each row's position (causal limit) */
  int64_t n_query;                 /* nq; must equal q.tokens */
  pdrop_heads k;                   /* Hkv x T x dim post-RoPE keys; Hq % Hkv == 0 */
  const pdrop_image_span* spans;   /* sorted, disjoint, inside [0, T) */
  int64_t n_spans;
  float softmax_scale;             /* 0 (default): 1/sqrt(dim) */
  pdrop_prob_rounding prob_rounding;  /* default NONE */
  pdrop_parallel_for_fn maybe_parallel_for;  /* NULL (default): serial */
  void* parallel_ctx;              /* handed to maybe_parallel_for */
  pdrop_score_precision precision; /* default FP32 */
} pdrop_score_params;

PDROP_C_API pdrop_score_params pdrop_score_default_params(void);

/* scores[0..n_scores) = each image token's attention from the query rows,
 * averaged over heads and rows (span after span, token order); n_scores
 * must be the spans' total length. VALUE_ERROR (scores untouched) if q or k
 * holds a non-finite value that takes part. */
PDROP_C_API pdrop_status pdrop_score_image_tokens(pdrop_workspace* ws,
                                                  const pdrop_score_params* params,
                                                  float* scores, int64_t n_scores);

/* ---- rank & drop (pdrop/rank_drop.hpp) ------------------------------- */

typedef struct pdrop_drop_params {
  pdrop_score_params score;        /* what is scored, as above */
  pdrop_budget budget;             /* default PER_SPAN */
  /* PER_SPAN: n_spans counts, span i keeping keep_counts[i] in [0,
   * spans[i].length]; GLOBAL: one count in [0, sum of lengths]. A query
   * position inside a span is kept whatever its count (pdrop/rank_drop.hpp). */
  const int64_t* keep_counts;
  int64_t n_keep_counts;
  pdrop_image_span* maybe_new_spans;  /* NULL or n_spans: spans after the drop */
  float* maybe_scores;             /* NULL, or n_scores entries: the scores ranked */
  int64_t n_scores;                /* with maybe_scores: the spans' total length */
} pdrop_drop_params;

PDROP_C_API pdrop_drop_params pdrop_drop_default_params(void);

/* One drop: scores, keeps the best of each span (or of all, GLOBAL; ties:
 * the lower index), and writes the keep list, ascending, to
 * keep[0..*n_keep_out). keep_capacity >= T (k.tokens) is always enough.
 * Apply it with pdrop_compact_rows / _heads / _positions and
 * pdrop_sequence_apply_drop. */
PDROP_C_API pdrop_status pdrop_rank_and_drop(pdrop_workspace* ws,
                                             const pdrop_drop_params* params,
                                             int64_t* keep, int64_t keep_capacity,
                                             int64_t* n_keep_out);

/* ---- compaction (pdrop/compact.hpp) ---------------------------------- */

/* In place: row i = row keep[i] for i < n_keep (keep strictly ascending in
 * [0, rows.tokens)); rows past n_keep are left as they were. Any type. */
PDROP_C_API pdrop_status pdrop_compact_rows(pdrop_rows rows, const int64_t* keep,
                                            int64_t n_keep);

/* In place, per head: kv(h, i) = kv(h, keep[i]); a KV cache (HND or NHD)
 * or the next layer's q/k/v rows. Any type. */
PDROP_C_API pdrop_status pdrop_compact_heads(pdrop_heads kv, const int64_t* keep,
                                             int64_t n_keep);

/* Positions (I32 or I64) after a drop, in place. REINDEX (1 feature):
 * positions[i] = base + i, base = *maybe_base or positions[0] before the
 * drop. KEEP_ORIGINAL (any features, e.g. M-RoPE rows): positions move
 * with their tokens; maybe_base must be NULL. */
PDROP_C_API pdrop_status pdrop_compact_positions(pdrop_rows positions, const int64_t* keep,
                                                 int64_t n_keep, pdrop_position_mode mode,
                                                 const int64_t* maybe_base);

/* ---- the per-sequence drop record (pdrop/sequence.hpp) --------------- */

typedef struct pdrop_sequence pdrop_sequence;

/* A record for one prompt run by `schedule` (copied): positions T0 x R (I32
 * or I64; R = 1 for RoPE, R >= 2 M-RoPE rows), read only here; spans the
 * prompt's image spans. */
PDROP_C_API pdrop_status pdrop_sequence_new(const pdrop_schedule* schedule,
                                            pdrop_rows positions,
                                            const pdrop_image_span* spans, int64_t n_spans,
                                            pdrop_sequence** out);
PDROP_C_API void pdrop_sequence_free(pdrop_sequence* seq);

typedef struct pdrop_sequence_info {
  int64_t tokens;            /* the current prompt length */
  int64_t drops_applied;     /* the sequence is in this stage */
  int64_t appended;          /* tokens appended after the prompt */
  int64_t position_rows;     /* 1, or the M-RoPE rows */
  pdrop_position_mode position_mode;  /* pass it to pdrop_compact_positions */
  int64_t base_position;     /* the prompt's first position */
  int64_t prompt_next_position;  /* 1 + the prompt's largest position */
} pdrop_sequence_info;

PDROP_C_API pdrop_status pdrop_sequence_get_info(const pdrop_sequence* seq,
                                                 pdrop_sequence_info* out);

/* The image spans in `stage` (<= drops_applied) into out[0..capacity);
 * *n_out = their number (SHAPE_ERROR, nothing written, if capacity is
 * smaller). */
PDROP_C_API pdrop_status pdrop_sequence_spans(const pdrop_sequence* seq, int64_t stage,
                                              pdrop_image_span* out, int64_t capacity,
                                              int64_t* n_out);

/* The keep counts of the drop into `stage` (1 <= stage < num_stages), from
 * the ORIGINAL spans (PyramidDrop's rule): PER_SPAN one per span, GLOBAL
 * one. Writes out[0..*n_out); capacity must be at least that. */
PDROP_C_API pdrop_status pdrop_sequence_keep_counts(const pdrop_sequence* seq, int64_t stage,
                                                    pdrop_budget budget, int64_t* out,
                                                    int64_t capacity, int64_t* n_out);

/* Records the drop into the next stage from its keep list (every token
 * outside the spans and the last token kept). The record is unchanged on
 * an error. */
PDROP_C_API pdrop_status pdrop_sequence_apply_drop(pdrop_sequence* seq, const int64_t* keep,
                                                   int64_t n_keep);

/* n >= 0 tokens appended after the prompt to every layer (decode steps). */
PDROP_C_API pdrop_status pdrop_sequence_append(pdrop_sequence* seq, int64_t n);

/* Rows of 0-based layer `layer`'s KV cache that belong to this prompt. */
PDROP_C_API pdrop_status pdrop_sequence_cache_length(const pdrop_sequence* seq, int64_t layer,
                                                     int64_t* out);

/* The position of the token `step` places after the prompt (step 0: the
 * first decode token) at 0-based layer `layer`. */
PDROP_C_API pdrop_status pdrop_sequence_position(const pdrop_sequence* seq, int64_t layer,
                                                 int64_t step, int64_t* out);

#ifdef __cplusplus
}  /* extern "C" */
#endif

#endif /* PDROP_C_API_H */
