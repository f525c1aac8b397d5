/* pdrop/c_api.h - pdrop's C interface: schedules, scoring, rank & drop,
 * V2Drop / random / DART drops, compaction and the per-sequence drop
 * record, for C engines (ggml-style runtimes), FFI callers (Python ctypes,
 * Rust) and C++ engines built without exceptions that want a status code
 * instead of an abort.
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
 * (pdrop/schedule.hpp, score.hpp, rank_drop.hpp, v2drop.hpp,
 * strategies.hpp, dart.hpp, compact.hpp, sequence.hpp); their comments give
 * each rule and its source.
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

/* ---- other strategies' drops (v2drop.hpp, strategies.hpp, dart.hpp) -- */

/* The keep list of a drop by PDROP_STRATEGY_V2DROP, _RANDOM or _DART, in the
 * form pdrop_rank_and_drop writes it (PYRAMID_DROP and FASTV use that; VTW
 * is any of these with every keep count 0). Shared conventions:
 *   - spans: sorted, disjoint image spans inside [0, T), T the current
 *     sequence length.
 *   - query_pos[0..n_query): positions in [0, T) kept whatever the rule
 *     says (pass the last prompt token's, whose row gives the logits; may
 *     be empty, the pointer then NULL). One inside a span takes one of that
 *     span's slots (or of the global count); a count smaller than the query
 *     tokens it covers keeps them anyway: kept = max(count, query tokens).
 *   - keep[0..*n_keep_out): the keep list, ascending (text tokens, then the
 *     kept image tokens, in sequence order); keep_capacity >= T is always
 *     enough (SHAPE_ERROR otherwise when the new length does not fit).
 *     Entries past *n_keep_out are not written. Apply it as
 *     pdrop_rank_and_drop's (pdrop_compact_*, pdrop_sequence_apply_drop).
 *   - maybe_new_spans: NULL, or n_spans entries receiving the spans after
 *     the drop (may be spans itself).
 *   - Statuses: INVALID_ARGUMENT (ws, params or n_keep_out NULL, an enum
 *     value out of range, a view's type not F32, F16 or BF16), SHAPE_ERROR (views, counts, capacities or
 *     buffers that do not fit, outputs overlapping inputs), VALUE_ERROR
 *     (counts, positions or spans out of range, a non-finite value read),
 *     OUT_OF_MEMORY (the workspace growing). Every input is validated and
 *     every value read checked before keep, *n_keep_out, maybe_new_spans or
 *     maybe_scores is written: a failed call writes none of them. */

/* V2Drop (pdrop/v2drop.hpp, arXiv 2509.01552): image token t scores
 * v_t = || after_t - before_t ||_2 over the D features (elements converted
 * to float exactly, sums in double, rounded once to float), the variation
 * of its hidden state over the layer that just ran; each span keeps its
 * keep_counts[i] tokens of LARGEST variation (GLOBAL: keep_counts[0] over
 * all spans together), equal scores ranking the lower index first. */
typedef struct pdrop_v2drop_params {
  /* T x D hidden states entering the layer that just ran (0-based l-1 for
   * a drop before layer l), the residual stream as the decoder carries it:
   * F32, F16 or BF16, features contiguous, row_stride >= D elements. */
  pdrop_rows before;
  /* T x D hidden states leaving it (entering layer l): the same T and D,
   * any of the three types and any row_stride. */
  pdrop_rows after;
  const int64_t* query_pos;        /* n_query positions kept, see above */
  int64_t n_query;
  const pdrop_image_span* spans;   /* inside [0, T), T = before.tokens */
  int64_t n_spans;
  pdrop_budget budget;             /* default PER_SPAN */
  /* PER_SPAN: n_spans counts, keep_counts[i] in [0, spans[i].length];
   * GLOBAL: one count in [0, sum of lengths]
   * (pdrop_sequence_keep_counts gives the schedule's). */
  const int64_t* keep_counts;
  int64_t n_keep_counts;
  pdrop_image_span* maybe_new_spans;  /* NULL or n_spans: spans after the drop */
  /* NULL, or n_scores entries receiving v_t of every image token (span
   * after span, token order; the hidden states' units). */
  float* maybe_scores;
  int64_t n_scores;                /* with maybe_scores: the spans' total length */
} pdrop_v2drop_params;

/* Everything 0 / NULL; before.type and after.type F32, budget PER_SPAN. */
PDROP_C_API pdrop_v2drop_params pdrop_v2drop_default_params(void);

/* One V2Drop drop: scores, selects, writes the keep list (see above).
 * pdrop_workspace_reserve(ws, 1, 1, n_query, 1, 1, image tokens, 0) makes
 * it allocation-free. VALUE_ERROR if a score is not finite (a row holds inf
 * or NaN, or a difference overflows float). */
PDROP_C_API pdrop_status pdrop_v2drop_drop(pdrop_workspace* ws,
                                           const pdrop_v2drop_params* params,
                                           int64_t* keep, int64_t keep_capacity,
                                           int64_t* n_keep_out);

/* The random baseline (pdrop/strategies.hpp, Strategy::random as
 * drop_by_strategy runs it): span i keeps keep_counts[i] of its tokens
 * drawn uniformly without replacement. The span's query tokens are kept
 * without a draw and the other max(keep_counts[i] - query tokens, 0) drawn
 * among its other tokens by selection sampling (Knuth's Algorithm S) from
 * SplitMix64 seeded with the i-th output of SplitMix64(seed). Integer
 * arithmetic only: the same seed and inputs keep the same tokens on every
 * platform, and a span's pick does not depend on the other spans. Per span
 * only (no global budget). Reads no tensor. */
typedef struct pdrop_random_params {
  int64_t tokens;                  /* T, the current sequence length */
  const int64_t* query_pos;        /* n_query positions kept, see above */
  int64_t n_query;
  const pdrop_image_span* spans;   /* inside [0, tokens) */
  int64_t n_spans;
  const int64_t* keep_counts;      /* n_spans counts, keep_counts[i] in [0, spans[i].length] */
  int64_t n_keep_counts;
  uint64_t seed;                   /* any value; default 0 */
  pdrop_image_span* maybe_new_spans;  /* NULL or n_spans: spans after the drop */
} pdrop_random_params;

/* Everything 0 / NULL. */
PDROP_C_API pdrop_random_params pdrop_random_default_params(void);

/* One random drop: writes the keep list (see above). */
PDROP_C_API pdrop_status pdrop_random_drop(pdrop_workspace* ws,
                                           const pdrop_random_params* params,
                                           int64_t* keep, int64_t keep_capacity,
                                           int64_t* n_keep_out);

/* DART (pdrop/dart.hpp, arXiv 2502.11494; Strategy::dart as
 * drop_by_strategy runs it): per span keeping k tokens (k' = max(k - query
 * tokens in it, 0) chosen among its other tokens),
 *   1. image pivots: the p = min(pivots, k') tokens of largest key norm (a
 *      key row is the token's k rows of every head side by side);
 *   2. text pivots (text_pivots > 0, only when k' > p): the text tokens
 *      after the span (in no image span) of largest key norm, at most
 *      text_pivots of them;
 *   3. the k' - p other slots spread over the P pivots in that order
 *      (image pivots, then text pivots, each by norm): pivot r gets
 *      (k' - p) / P, plus one for the first (k' - p) % P; each in turn takes
 *      that many of the remaining candidates of LOWEST cosine similarity to
 *      it, measured on `features` rows (or on the key rows when features is
 *      empty); cos is 0 when either row is zero;
 *   4. kept: the image pivots, the tokens taken and the query tokens.
 * Ties (equal norms or similarities) go to the lower index; products and
 * sums in double. The authors' setting (DART 5a19452): pivots 4,
 * text_pivots 4, PDROP_PIVOT_NORM_L1, keys and final-normed hidden states
 * of the last full layer (pdrop::dart_llava_1_5 and docs/strategies.md give
 * their keep counts). Per span only (no global budget). */

/* pdrop::PivotNorm: the key norm that ranks DART's pivots. */
typedef enum pdrop_pivot_norm {
  PDROP_PIVOT_NORM_L2 = 0,  /* the paper's (the default) */
  PDROP_PIVOT_NORM_L1 = 1,  /* DART's released code */
  /* as wide as int, see pdrop_status */
  PDROP_PIVOT_NORM_ENUM_MIN_ = -0x7FFFFFFF - 1,
  PDROP_PIVOT_NORM_ENUM_MAX_ = 0x7FFFFFFF
} pdrop_pivot_norm;

typedef struct pdrop_dart_params {
  /* H x T x dim keys (F32, F16 or BF16; HND or NHD strides, see
   * pdrop_heads), for the pivot norms; T = k.tokens, the current length. */
  pdrop_heads k;
  /* T x D rows compared by cosine similarity (F32, F16 or BF16, any
   * row_stride >= D); data NULL and tokens 0 (the default): the key rows. */
  pdrop_rows features;
  const int64_t* query_pos;        /* n_query positions kept, see above */
  int64_t n_query;
  const pdrop_image_span* spans;   /* inside [0, T) */
  int64_t n_spans;
  const int64_t* keep_counts;      /* n_spans counts, keep_counts[i] in [0, spans[i].length] */
  int64_t n_keep_counts;
  int64_t pivots;                  /* image pivots per span, in [1, 2^31]; default 8 */
  int64_t text_pivots;             /* in [0, 2^31]; default 0 */
  pdrop_pivot_norm pivot_norm;     /* default L2 */
  pdrop_image_span* maybe_new_spans;  /* NULL or n_spans: spans after the drop */
} pdrop_dart_params;

/* Everything 0 / NULL but k.type and features.type F32, pivots 8,
 * pivot_norm L2 (pdrop::DartOptions' defaults). */
PDROP_C_API pdrop_dart_params pdrop_dart_default_params(void);

/* One DART drop: writes the keep list (see above). VALUE_ERROR if a key row
 * of a span that keeps tokens, a text pivot candidate's key row, or a
 * compared feature row is not finite. Its scratch (about (P + 1) rows of
 * the compared width as float and (P + 1) x the longest span keys, P the
 * pivots) grows ws as needed: the C API has no dart_reserve yet. */
PDROP_C_API pdrop_status pdrop_dart_drop(pdrop_workspace* ws, const pdrop_dart_params* params,
                                         int64_t* keep, int64_t keep_capacity,
                                         int64_t* n_keep_out);

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
