/* The C API called from C99: a schedule, scoring and rank & drop against a
 * naive attention written here, compaction against plain copies, the
 * per-sequence record, and errors (status, exact message, buffers
 * untouched). Prints "ok: ..." and exits 0, or names the first failed check
 * and exits 1. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pdrop/c_api.h"

static int failures = 0;

#define CHECK(cond)                                                      \
  do {                                                                   \
    if (!(cond)) {                                                       \
      fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
      ++failures;                                                        \
    }                                                                    \
  } while (0)

#define CHECK_OK(call)                                                   \
  do {                                                                   \
    pdrop_status s_ = (call);                                            \
    if (s_ != PDROP_STATUS_OK) {                                         \
      fprintf(stderr, "%s:%d: %s returned %s: %s\n", __FILE__, __LINE__, #call, \
              pdrop_status_name(s_), pdrop_last_error());                \
      ++failures;                                                        \
    }                                                                    \
  } while (0)

/* The call fails with `status` and exactly `message`. */
#define CHECK_FAILS(call, status, message)                               \
  do {                                                                   \
    pdrop_status s_ = (call);                                            \
    if (s_ != (status) || strcmp(pdrop_last_error(), (message)) != 0) {  \
      fprintf(stderr, "%s:%d: %s returned %s \"%s\", expected %s \"%s\"\n", __FILE__, \
              __LINE__, #call, pdrop_status_name(s_), pdrop_last_error(), \
              pdrop_status_name(status), (message));                    \
      ++failures;                                                        \
    }                                                                    \
  } while (0)

/* ---- data ---- */

static uint32_t lcg_state = 12345u;
static uint32_t lcg(void) {
  lcg_state = lcg_state * 1664525u + 1013904223u;
  return lcg_state >> 8;
}
static float uniform(void) { return (float)lcg() / 16777216.0f * 2.0f - 1.0f; }

/* IEEE binary16 bits -> float, for normal numbers (all the test makes). */
static float half_to_float(uint16_t h) {
  const int sign = h >> 15, exponent = (h >> 10) & 31, mantissa = h & 1023;
  const float v = ldexpf(1.0f + (float)mantissa / 1024.0f, exponent - 15);
  return sign ? -v : v;
}
/* A random normal half in about [-2, 2]. */
static uint16_t random_half(void) {
  const uint32_t r = lcg();
  const uint16_t exponent = (uint16_t)(12 + r % 4); /* 2^-3 .. 2^0 */
  return (uint16_t)(((r >> 4) & 1u) << 15 | exponent << 10 | ((r >> 5) & 1023u));
}

/* x (finite, >= 0) is an fp16 value: below 2^-14 a multiple of 2^-24,
 * else 11 significant bits, and at most 65504. */
static int is_half_value(float x) {
  int e;
  const double m = frexp((double)x, &e); /* x = m 2^e, m in [0.5, 1) */
  if (x == 0.0f) return 1;
  if (e <= -14) return ldexp((double)x, 24) == floor(ldexp((double)x, 24));
  return ldexp(m, 11) == floor(ldexp(m, 11)) && x <= 65504.0f;
}

enum { HQ = 4, HKV = 2, DIM = 8, T = 23, CAP = 25, NQ = 2, NSPANS = 2, NIMG = 15 };
static const pdrop_image_span spans[NSPANS] = {{3, 7}, {12, 8}};
static const int64_t query_pos[NQ] = {21, 22};

static float q[NQ][HQ][DIM];          /* NHD: the two query rows */
static uint16_t k16[HKV][CAP][DIM];   /* HND cache of capacity CAP, fp16 */

/* Attention of the query rows to each image token, averaged over heads and
 * rows: softmax(q k^T / sqrt(d)) over keys 0..query_pos, plainly. */
static void naive_scores(double out[NIMG]) {
  int i, h, r, j, s, t;
  for (i = 0; i < NIMG; ++i) out[i] = 0.0;
  for (h = 0; h < HQ; ++h) {
    const int g = h / (HQ / HKV);
    for (r = 0; r < NQ; ++r) {
      double logits[T], m = -1e300, sum = 0.0;
      const int last = (int)query_pos[r];
      for (j = 0; j <= last; ++j) {
        double dot = 0.0;
        for (t = 0; t < DIM; ++t) dot += (double)q[r][h][t] * half_to_float(k16[g][j][t]);
        logits[j] = dot / sqrt((double)DIM);
        if (logits[j] > m) m = logits[j];
      }
      for (j = 0; j <= last; ++j) sum += exp(logits[j] - m);
      i = 0;
      for (s = 0; s < NSPANS; ++s)
        for (j = (int)spans[s].start; j < spans[s].start + spans[s].length; ++j, ++i)
          if (j <= last) out[i] += exp(logits[j] - m) / sum;
    }
  }
  for (i = 0; i < NIMG; ++i) out[i] /= HQ * NQ;
}

/* The best `n` of scores[first..first+len) (ties: lower index), marked in
 * chosen[] (indices into the image tokens). */
static void naive_top(const double* scores, int first, int len, int n, int* chosen) {
  int picked, i;
  for (picked = 0; picked < n; ++picked) {
    int best = -1;
    for (i = first; i < first + len; ++i)
      if (!chosen[i] && (best < 0 || scores[i] > scores[best])) best = i;
    chosen[best] = 1;
  }
}

/* The keep list of chosen image tokens plus all text, ascending. */
static int keep_list_of(const int* chosen, int64_t* keep) {
  int n = 0, t, s, i = 0;
  for (t = 0; t < T; ++t) {
    int image = -1;
    for (s = 0, i = 0; s < NSPANS; i += (int)spans[s].length, ++s)
      if (t >= spans[s].start && t < spans[s].start + spans[s].length)
        image = i + (t - (int)spans[s].start);
    if (image < 0 || chosen[image]) keep[n++] = t;
  }
  return n;
}

/* A C thread pool stand-in: runs the tasks in reverse order. */
static int pool_calls = 0;
static void reverse_pool(void* pool_ctx, int64_t n, void (*task)(void*, int64_t),
                         void* task_ctx) {
  int64_t i;
  ++*(int*)pool_ctx;
  for (i = n - 1; i >= 0; --i) task(task_ctx, i);
}

/* ---- the checks ---- */

static void test_schedule(void) {
  pdrop_schedule *s = NULL, *fastv = NULL, *untouched = (pdrop_schedule*)&failures;
  pdrop_schedule_info info;
  int64_t drops[4] = {-1, -1, -1, -1}, n = -1, stage = -1, tokens = -1;
  const int64_t bad_layers[2] = {2, 1};
  const double bad_ratios[2] = {0.5, 0.25};

  CHECK_OK(pdrop_schedule_pyramid(32, 4, 0.5, &s));
  CHECK_OK(pdrop_schedule_get_info(s, &info));
  CHECK(info.num_layers == 32 && info.num_stages == 4);
  CHECK(info.strategy == PDROP_STRATEGY_PYRAMID_DROP);
  CHECK(info.position_mode == PDROP_POSITION_MODE_REINDEX);
  /* PyramidDrop: drops after layers 8, 16, 24 of 32. */
  CHECK_OK(pdrop_schedule_drop_layers(s, drops, 4, &n));
  CHECK(n == 3 && drops[0] == 8 && drops[1] == 16 && drops[2] == 24 && drops[3] == -1);
  CHECK_FAILS(pdrop_schedule_drop_layers(s, drops, 2, &n), PDROP_STATUS_SHAPE_ERROR,
              "pdrop_schedule_drop_layers: capacity (2) must be >= the drops (3)");
  /* The stage that starts at 0-based layer 8 is 1; none starts at 7 or 0. */
  CHECK_OK(pdrop_schedule_drop_before(s, 8, &stage));
  CHECK(stage == 1);
  CHECK_OK(pdrop_schedule_drop_before(s, 7, &stage));
  CHECK(stage == 0);
  CHECK_OK(pdrop_schedule_drop_before(s, 24, &stage));
  CHECK(stage == 3);
  CHECK_FAILS(pdrop_schedule_drop_before(s, 32, &stage), PDROP_STATUS_VALUE_ERROR,
              "pdrop_schedule_drop_before: layer (32) must be in [0, 32)");
  /* int(576 * 0.5^k). */
  CHECK_OK(pdrop_schedule_image_tokens(s, 576, 1, &tokens));
  CHECK(tokens == 288);
  CHECK_OK(pdrop_schedule_image_tokens(s, 576, 3, &tokens));
  CHECK(tokens == 72);

  CHECK_OK(pdrop_schedule_with_strategy(s, PDROP_STRATEGY_FASTV, &fastv));
  CHECK_OK(pdrop_schedule_get_info(fastv, &info));
  CHECK(info.strategy == PDROP_STRATEGY_FASTV &&
        info.position_mode == PDROP_POSITION_MODE_KEEP_ORIGINAL);
  pdrop_schedule_free(fastv);

  /* Errors leave *out as it was. */
  CHECK_FAILS(pdrop_schedule_pyramid(32, 0, 0.5, &untouched), PDROP_STATUS_VALUE_ERROR,
              "pdrop_schedule_pyramid: stages (0) must be in [1, layers = 32]");
  CHECK(untouched == (pdrop_schedule*)&failures);
  CHECK_FAILS(pdrop_schedule_from_lists(4, bad_layers, bad_ratios, 2, &untouched),
              PDROP_STATUS_VALUE_ERROR,
              "pdrop_schedule_from_lists: drop_layers must be strictly increasing: "
              "[0] = 2, [1] = 1");
  CHECK(untouched == (pdrop_schedule*)&failures);
  CHECK_FAILS(pdrop_schedule_with_strategy(s, (pdrop_strategy)99, &untouched),
              PDROP_STATUS_INVALID_ARGUMENT,
              "pdrop_schedule_with_strategy: strategy (99) is not a pdrop_strategy");
  CHECK_FAILS(pdrop_schedule_pyramid(32, 4, 0.5, NULL), PDROP_STATUS_INVALID_ARGUMENT,
              "pdrop_schedule_pyramid: out is NULL");
  CHECK_FAILS(pdrop_schedule_get_info(NULL, &info), PDROP_STATUS_INVALID_ARGUMENT,
              "pdrop_schedule_get_info: schedule is NULL");
  CHECK(untouched == (pdrop_schedule*)&failures);
  /* A success clears the message. */
  CHECK_OK(pdrop_schedule_get_info(s, &info));
  CHECK(strcmp(pdrop_last_error(), "") == 0);
  pdrop_schedule_free(s);
  pdrop_schedule_free(NULL);
}

static pdrop_score_params score_params(void) {
  pdrop_score_params p = pdrop_score_default_params();
  p.q.data = q;
  p.q.type = PDROP_TYPE_F32;
  p.q.heads = HQ;
  p.q.tokens = NQ;
  p.q.dim = DIM;
  p.q.head_stride = DIM;          /* NHD */
  p.q.token_stride = HQ * DIM;
  p.query_pos = query_pos;
  p.n_query = NQ;
  p.k.data = k16;
  p.k.type = PDROP_TYPE_F16;
  p.k.heads = HKV;
  p.k.tokens = T;
  p.k.dim = DIM;
  p.k.head_stride = CAP * DIM;    /* HND, capacity CAP */
  p.k.token_stride = DIM;
  p.spans = spans;
  p.n_spans = NSPANS;
  return p;
}

static void test_scoring_and_drop(pdrop_workspace* ws) {
  double expected[NIMG];
  float scores[NIMG], scores_par[NIMG], ranked[NIMG], chain[NIMG];
  int chosen[NIMG], i, n_expected;
  int64_t keep[T], expected_keep[T], n = -1, before[T];
  int64_t counts[NSPANS] = {3, 4}, global = 6;
  pdrop_image_span new_spans[NSPANS] = {{-1, -1}, {-1, -1}};
  pdrop_score_params sp = score_params();
  pdrop_drop_params dp = pdrop_drop_default_params();

  naive_scores(expected);
  CHECK_OK(pdrop_score_image_tokens(ws, &sp, scores, NIMG));
  for (i = 0; i < NIMG; ++i) CHECK(fabs(scores[i] - expected[i]) <= 1e-5 * expected[i] + 1e-9);

  /* A caller's thread pool: bit-identical scores. */
  sp.maybe_parallel_for = reverse_pool;
  sp.parallel_ctx = &pool_calls;
  CHECK_OK(pdrop_workspace_reserve(ws, HQ, HKV, NQ, T, DIM, NIMG, 1));
  CHECK_OK(pdrop_score_image_tokens(ws, &sp, scores_par, NIMG));
  CHECK(pool_calls > 0);
  CHECK(memcmp(scores, scores_par, sizeof scores) == 0);

  /* The fp16 chain (pdrop::ScorePrecision; checked bit for bit against an
   * emulation of the PyTorch steps in tests/score_chain_test.cpp): fp16
   * values, within the chain's roundings (logits to fp16: up to ~0.6% of
   * a probability here) of the naive scores, not the float32 ones, the
   * same bits on the pool; with prob_rounding as well, an error. */
  sp = score_params();
  sp.precision = PDROP_SCORE_PRECISION_FP16_CHAIN;
  CHECK_OK(pdrop_score_image_tokens(ws, &sp, chain, NIMG));
  n_expected = 0;
  for (i = 0; i < NIMG; ++i) {
    CHECK(is_half_value(chain[i]));
    CHECK(fabs(chain[i] - expected[i]) <= 2e-2 * expected[i] + 1e-7);
    n_expected += chain[i] != scores[i];
  }
  CHECK(n_expected > NIMG / 2);
  sp.maybe_parallel_for = reverse_pool;
  sp.parallel_ctx = &pool_calls;
  CHECK_OK(pdrop_score_image_tokens(ws, &sp, scores_par, NIMG));
  CHECK(memcmp(chain, scores_par, sizeof chain) == 0);
  sp.prob_rounding = PDROP_PROB_ROUNDING_BF16;
  CHECK_FAILS(pdrop_score_image_tokens(ws, &sp, scores_par, NIMG), PDROP_STATUS_VALUE_ERROR,
              "pdrop_score_image_tokens: options.round_probs (bf16) and options.precision "
              "(fp16_chain) cannot both be set: the chain rounds the probabilities itself");
  sp.prob_rounding = PDROP_PROB_ROUNDING_NONE;
  sp.precision = (pdrop_score_precision)3;
  CHECK_FAILS(pdrop_score_image_tokens(ws, &sp, scores_par, NIMG),
              PDROP_STATUS_INVALID_ARGUMENT,
              "pdrop_score_image_tokens: params.precision (3) is not a pdrop_score_precision");
  CHECK(memcmp(chain, scores_par, sizeof chain) == 0);

  /* Per span: the best 3 of span 0 and 4 of span 1. */
  dp.score = score_params();
  dp.keep_counts = counts;
  dp.n_keep_counts = NSPANS;
  dp.maybe_new_spans = new_spans;
  dp.maybe_scores = ranked;
  dp.n_scores = NIMG;
  CHECK_OK(pdrop_rank_and_drop(ws, &dp, keep, T, &n));
  memset(chosen, 0, sizeof chosen);
  naive_top(expected, 0, 7, 3, chosen);
  naive_top(expected, 7, 8, 4, chosen);
  n_expected = keep_list_of(chosen, expected_keep);
  CHECK(n == n_expected && n == T - NIMG + 7);
  CHECK(memcmp(keep, expected_keep, (size_t)n_expected * sizeof keep[0]) == 0);
  CHECK(memcmp(ranked, scores, sizeof scores) == 0);
  /* Span 0 now starts where it did with 3 tokens; span 1 after 2 text tokens. */
  CHECK(new_spans[0].start == 3 && new_spans[0].length == 3);
  CHECK(new_spans[1].start == 8 && new_spans[1].length == 4);

  /* Global budget: the best 6 over both spans. */
  dp.budget = PDROP_BUDGET_GLOBAL;
  dp.keep_counts = &global;
  dp.n_keep_counts = 1;
  dp.maybe_new_spans = NULL;
  dp.maybe_scores = NULL;
  CHECK_OK(pdrop_rank_and_drop(ws, &dp, keep, T, &n));
  memset(chosen, 0, sizeof chosen);
  naive_top(expected, 0, NIMG, 6, chosen);
  n_expected = keep_list_of(chosen, expected_keep);
  CHECK(n == n_expected && n == T - NIMG + 6);
  CHECK(memcmp(keep, expected_keep, (size_t)n_expected * sizeof keep[0]) == 0);

  /* Errors: status, message, and nothing written. */
  for (i = 0; i < T; ++i) keep[i] = before[i] = -7;
  n = -7;
  dp.budget = PDROP_BUDGET_PER_SPAN;
  dp.keep_counts = counts;
  dp.n_keep_counts = NSPANS;
  dp.maybe_new_spans = new_spans;
  counts[0] = 9;
  CHECK_FAILS(pdrop_rank_and_drop(ws, &dp, keep, T, &n), PDROP_STATUS_VALUE_ERROR,
              "pdrop_rank_and_drop: keep_counts[0] (9) must be in [0, spans[0].length = 7]");
  CHECK(memcmp(keep, before, sizeof keep) == 0 && n == -7);
  CHECK(new_spans[0].start == 3 && new_spans[0].length == 3);
  counts[0] = 3;
  dp.score.q.type = PDROP_TYPE_I32;
  CHECK_FAILS(pdrop_rank_and_drop(ws, &dp, keep, T, &n), PDROP_STATUS_INVALID_ARGUMENT,
              "pdrop_rank_and_drop: q.type (PDROP_TYPE_I32) must be PDROP_TYPE_F32, "
              "PDROP_TYPE_F16 or PDROP_TYPE_BF16");
  dp.score.q.type = PDROP_TYPE_F32;
  dp.budget = (pdrop_budget)5;
  CHECK_FAILS(pdrop_rank_and_drop(ws, &dp, keep, T, &n), PDROP_STATUS_INVALID_ARGUMENT,
              "pdrop_rank_and_drop: params.budget (5) is not a pdrop_budget");
  dp.budget = PDROP_BUDGET_PER_SPAN;
  CHECK_FAILS(pdrop_rank_and_drop(ws, &dp, keep, 5, &n), PDROP_STATUS_SHAPE_ERROR,
              "pdrop_rank_and_drop: keep.size (5) must be >= the new length 15 "
              "(tokens 23 - image 15 + kept 7)");
  CHECK(memcmp(keep, before, sizeof keep) == 0 && n == -7);
  CHECK_FAILS(pdrop_rank_and_drop(ws, NULL, keep, T, &n), PDROP_STATUS_INVALID_ARGUMENT,
              "pdrop_rank_and_drop: params is NULL");
}

static void test_compaction(void) {
  /* 6 tokens x 3 features, row stride 4; keep tokens 0, 2, 5. */
  float rows[6][4], before[6][4];
  uint8_t kv[2][6][3], kv_before[2][6][3];
  int32_t pos[6], mpos[6][3];
  const int64_t keep[3] = {0, 2, 5}, bad[3] = {0, 5, 2}, base = 100;
  pdrop_rows r = {NULL, PDROP_TYPE_F32, 6, 3, 4};
  pdrop_heads h = {NULL, PDROP_TYPE_U8, 2, 6, 3, 6 * 3, 3};
  pdrop_rows p = {NULL, PDROP_TYPE_I32, 6, 1, 1};
  pdrop_rows mp = {NULL, PDROP_TYPE_I32, 6, 3, 3};
  int t, f, g;

  for (t = 0; t < 6; ++t)
    for (f = 0; f < 4; ++f) rows[t][f] = before[t][f] = (float)(10 * t + f);
  r.data = rows;
  CHECK_FAILS(pdrop_compact_rows(r, bad, 3), PDROP_STATUS_VALUE_ERROR,
              "pdrop_compact_rows: keep must be strictly ascending: keep[1] = 5, keep[2] = 2");
  CHECK(memcmp(rows, before, sizeof rows) == 0);
  CHECK_OK(pdrop_compact_rows(r, keep, 3));
  for (t = 0; t < 3; ++t)
    for (f = 0; f < 3; ++f) CHECK(rows[t][f] == before[keep[t]][f]);
  for (t = 0; t < 3; ++t) CHECK(rows[t][3] == before[t][3]); /* padding untouched */
  for (t = 3; t < 6; ++t)
    for (f = 0; f < 4; ++f) CHECK(rows[t][f] == before[t][f]);

  for (g = 0; g < 2; ++g)
    for (t = 0; t < 6; ++t)
      for (f = 0; f < 3; ++f) kv[g][t][f] = kv_before[g][t][f] = (uint8_t)(60 * g + 10 * t + f);
  h.data = kv;
  CHECK_OK(pdrop_compact_heads(h, keep, 3));
  for (g = 0; g < 2; ++g)
    for (t = 0; t < 3; ++t)
      for (f = 0; f < 3; ++f) CHECK(kv[g][t][f] == kv_before[g][keep[t]][f]);
  h.type = (pdrop_type)17;
  CHECK_FAILS(pdrop_compact_heads(h, keep, 3), PDROP_STATUS_INVALID_ARGUMENT,
              "pdrop_compact_heads: kv.type (17) is not a pdrop_type");

  for (t = 0; t < 6; ++t) pos[t] = 40 + t;
  p.data = pos;
  CHECK_OK(pdrop_compact_positions(p, keep, 3, PDROP_POSITION_MODE_REINDEX, NULL));
  CHECK(pos[0] == 40 && pos[1] == 41 && pos[2] == 42 && pos[3] == 43);
  CHECK_OK(pdrop_compact_positions(p, keep, 3, PDROP_POSITION_MODE_REINDEX, &base));
  CHECK(pos[0] == 100 && pos[1] == 101 && pos[2] == 102);
  for (t = 0; t < 6; ++t)
    for (f = 0; f < 3; ++f) mpos[t][f] = 7 * t + f;
  mp.data = mpos;
  CHECK_FAILS(pdrop_compact_positions(mp, keep, 3, PDROP_POSITION_MODE_REINDEX, NULL),
              PDROP_STATUS_SHAPE_ERROR,
              "pdrop_compact_positions: positions.features (3) must be 1 to re-index; "
              "multi-axis positions (M-RoPE) use PositionMode::keep_original");
  CHECK_OK(pdrop_compact_positions(mp, keep, 3, PDROP_POSITION_MODE_KEEP_ORIGINAL, NULL));
  for (t = 0; t < 3; ++t)
    for (f = 0; f < 3; ++f) CHECK(mpos[t][f] == 7 * (int)keep[t] + f);
  mp.type = PDROP_TYPE_F32;
  CHECK_FAILS(pdrop_compact_positions(mp, keep, 3, PDROP_POSITION_MODE_KEEP_ORIGINAL, NULL),
              PDROP_STATUS_INVALID_ARGUMENT,
              "pdrop_compact_positions: positions.type (PDROP_TYPE_F32) must be "
              "PDROP_TYPE_I32 or PDROP_TYPE_I64");
}

static void test_sequence(pdrop_workspace* ws) {
  pdrop_schedule* s = NULL;
  pdrop_sequence* seq = NULL;
  pdrop_sequence_info info;
  pdrop_drop_params dp = pdrop_drop_default_params();
  pdrop_image_span now[NSPANS], new_spans[NSPANS];
  int32_t pos[T];
  int64_t counts[NSPANS] = {-1, -1}, keep[T], n = 0, m = 0, v = 0;
  const int64_t drop_after = 2;
  const double ratio = 0.5;
  pdrop_rows positions = {NULL, PDROP_TYPE_I32, T, 1, 1};
  int t;

  for (t = 0; t < T; ++t) pos[t] = t;
  positions.data = pos;
  CHECK_OK(pdrop_schedule_from_lists(4, &drop_after, &ratio, 1, &s));
  CHECK_OK(pdrop_sequence_new(s, positions, spans, NSPANS, &seq));
  /* int(7 * 0.5) and int(8 * 0.5) of the original spans. */
  CHECK_OK(pdrop_sequence_keep_counts(seq, 1, PDROP_BUDGET_PER_SPAN, counts, NSPANS, &n));
  CHECK(n == 2 && counts[0] == 3 && counts[1] == 4);

  dp.score = score_params();
  dp.keep_counts = counts;
  dp.n_keep_counts = NSPANS;
  dp.maybe_new_spans = new_spans;
  CHECK_OK(pdrop_rank_and_drop(ws, &dp, keep, T, &n));
  CHECK_OK(pdrop_sequence_apply_drop(seq, keep, n));
  CHECK_OK(pdrop_sequence_get_info(seq, &info));
  CHECK(info.tokens == n && info.drops_applied == 1 && info.appended == 0);
  CHECK(info.position_rows == 1 && info.position_mode == PDROP_POSITION_MODE_REINDEX);
  CHECK(info.base_position == 0 && info.prompt_next_position == T);
  CHECK_OK(pdrop_sequence_spans(seq, 1, now, NSPANS, &m));
  CHECK(m == NSPANS && memcmp(now, new_spans, sizeof now) == 0);
  /* Layers 0-1 hold the whole prompt, layers 2-3 the kept tokens. */
  CHECK_OK(pdrop_sequence_cache_length(seq, 1, &v));
  CHECK(v == T);
  CHECK_OK(pdrop_sequence_cache_length(seq, 3, &v));
  CHECK(v == n);
  /* Re-indexed: the first decode token sits at T_j of its layer's stage. */
  CHECK_OK(pdrop_sequence_position(seq, 0, 0, &v));
  CHECK(v == T);
  CHECK_OK(pdrop_sequence_position(seq, 3, 1, &v));
  CHECK(v == n + 1);
  CHECK_OK(pdrop_sequence_append(seq, 2));
  CHECK_OK(pdrop_sequence_cache_length(seq, 3, &v));
  CHECK(v == n + 2);
  CHECK_FAILS(pdrop_sequence_apply_drop(seq, keep, n), PDROP_STATUS_VALUE_ERROR,
              "pdrop_sequence_apply_drop: every drop of the schedule (1) is already applied");
  CHECK_FAILS(pdrop_sequence_append(seq, -1), PDROP_STATUS_VALUE_ERROR,
              "pdrop_sequence_append: n (-1) must be >= 0");
  CHECK_OK(pdrop_sequence_get_info(seq, &info));
  CHECK(info.tokens == n && info.drops_applied == 1 && info.appended == 2);
  pdrop_sequence_free(seq);
  pdrop_schedule_free(s);
}

int main(void) {
  pdrop_workspace* ws = NULL;
  int h, r, j, t, major = -1, minor = -1, patch = -1;

  for (r = 0; r < NQ; ++r)
    for (h = 0; h < HQ; ++h)
      for (t = 0; t < DIM; ++t) q[r][h][t] = 1.5f * uniform();
  for (h = 0; h < HKV; ++h)
    for (j = 0; j < CAP; ++j)
      for (t = 0; t < DIM; ++t) k16[h][j][t] = random_half();

  CHECK(sscanf(pdrop_version(), "%d.%d.%d", &major, &minor, &patch) == 3 && major >= 0);
  CHECK(strcmp(pdrop_status_name(PDROP_STATUS_SHAPE_ERROR), "shape_error") == 0);
  CHECK(strcmp(pdrop_status_name((pdrop_status)42), "unknown") == 0);

  CHECK_OK(pdrop_workspace_new(&ws));
  test_schedule();
  test_scoring_and_drop(ws);
  test_compaction();
  test_sequence(ws);
  pdrop_workspace_free(ws);

  if (failures) {
    fprintf(stderr, "%d checks failed\n", failures);
    return 1;
  }
  printf("ok: the C API from C (pdrop %s)\n", pdrop_version());
  return 0;
}
