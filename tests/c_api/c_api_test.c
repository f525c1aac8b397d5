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
  /* C++'s views read a negative stride as "dense"; the C API refuses it. */
  r.row_stride = -1;
  CHECK_FAILS(pdrop_compact_rows(r, keep, 3), PDROP_STATUS_SHAPE_ERROR,
              "pdrop_compact_rows: rows.row_stride (-1) must be >= features (3)");
  CHECK(memcmp(rows, before, sizeof rows) == 0);
  r.row_stride = 4;
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

/* ---- V2Drop: a naive variation and top-k ---- */

/* A drop's outputs against the test's own: the keep list (entries past it
 * left at -1, as the caller filled them), and the new spans. */
static void check_drop(const int64_t* keep, int64_t n, const int64_t* expected,
                       int64_t n_expected, const pdrop_image_span* new_spans,
                       const pdrop_image_span* expected_spans) {
  int64_t i;
  CHECK(n == n_expected);
  CHECK(memcmp(keep, expected, (size_t)n_expected * sizeof keep[0]) == 0);
  for (i = n_expected; i < T; ++i) CHECK(keep[i] == -1);
  for (i = 0; i < NSPANS; ++i)
    CHECK(new_spans[i].start == expected_spans[i].start &&
          new_spans[i].length == expected_spans[i].length);
}

enum { VD = 6, VS32 = 8, VS16 = 10 }; /* features; padded row strides */
static float vb32[T][VS32], va32[T][VS32];   /* fp32 rows, NaN padding */
static uint16_t vb16[T][VS16], va16[T][VS16]; /* fp16 rows, NaN padding */
/* The values the rows under test hold (exact as float). */
static float val_b[T][VD], val_a[T][VD];

/* ||after_t - before_t||_2 of every image token, span after span. */
static void naive_variation(double out[NIMG]) {
  int s, t, f, i = 0;
  for (s = 0; s < NSPANS; ++s)
    for (t = (int)spans[s].start; t < spans[s].start + spans[s].length; ++t, ++i) {
      double sum = 0.0;
      for (f = 0; f < VD; ++f) {
        const double d = (double)val_a[t][f] - (double)val_b[t][f];
        sum += d * d;
      }
      out[i] = sqrt(sum);
    }
}

/* Image index of position t, or -1 for a text token. */
static int image_index(int64_t t) {
  int s, i = 0;
  for (s = 0; s < NSPANS; i += (int)spans[s].length, ++s)
    if (t >= spans[s].start && t < spans[s].start + spans[s].length)
      return i + (int)(t - spans[s].start);
  return -1;
}

/* The spans after keeping the chosen image tokens. */
static void new_spans_of(const int* chosen, pdrop_image_span new_spans[NSPANS]) {
  int s, i, first = 0, removed = 0;
  for (s = 0; s < NSPANS; first += (int)spans[s].length, ++s) {
    int kept = 0;
    for (i = first; i < first + spans[s].length; ++i) kept += chosen[i];
    new_spans[s].start = spans[s].start - removed;
    new_spans[s].length = kept;
    removed += (int)spans[s].length - kept;
  }
}

/* The reference drop: query tokens inside a span chosen first, each taking
 * a slot of its span (GLOBAL: of the one count); the rest the best by
 * score, ties to the lower index. Returns the keep list's length. */
static int naive_drop(const double* scores, pdrop_budget budget, const int64_t* counts,
                      const int64_t* qpos, int nq, int64_t* keep,
                      pdrop_image_span new_spans[NSPANS]) {
  int chosen[NIMG], forced[NSPANS] = {0, 0}, s, i, first = 0, n_forced = 0;
  memset(chosen, 0, sizeof chosen);
  for (i = 0; i < nq; ++i) {
    const int im = image_index(qpos[i]);
    if (im >= 0 && !chosen[im]) {
      chosen[im] = 1;
      ++n_forced;
      for (s = 0; s < NSPANS; ++s)
        if (qpos[i] >= spans[s].start && qpos[i] < spans[s].start + spans[s].length)
          ++forced[s];
    }
  }
  if (budget == PDROP_BUDGET_GLOBAL) {
    if (counts[0] > n_forced) naive_top(scores, 0, NIMG, (int)counts[0] - n_forced, chosen);
  } else {
    for (s = 0; s < NSPANS; first += (int)spans[s].length, ++s)
      if (counts[s] > forced[s])
        naive_top(scores, first, (int)spans[s].length, (int)counts[s] - forced[s], chosen);
  }
  new_spans_of(chosen, new_spans);
  return keep_list_of(chosen, keep);
}

/* One pdrop_v2drop_drop call against the reference (the rows hold
 * val_b / val_a). */
static void check_v2drop(pdrop_workspace* ws, pdrop_rows before, pdrop_rows after,
                         pdrop_budget budget, const int64_t* counts, const int64_t* qpos,
                         int nq) {
  double expected[NIMG];
  float scores[NIMG];
  int64_t keep[T], expected_keep[T], n = -1;
  pdrop_image_span new_spans[NSPANS], expected_spans[NSPANS];
  pdrop_v2drop_params p = pdrop_v2drop_default_params();
  int i, n_expected;

  naive_variation(expected);
  n_expected = naive_drop(expected, budget, counts, qpos, nq, expected_keep, expected_spans);
  p.before = before;
  p.after = after;
  p.query_pos = qpos;
  p.n_query = nq;
  p.spans = spans;
  p.n_spans = NSPANS;
  p.budget = budget;
  p.keep_counts = counts;
  p.n_keep_counts = budget == PDROP_BUDGET_GLOBAL ? 1 : NSPANS;
  p.maybe_new_spans = new_spans;
  p.maybe_scores = scores;
  p.n_scores = NIMG;
  for (i = 0; i < T; ++i) keep[i] = -1;
  CHECK_OK(pdrop_v2drop_drop(ws, &p, keep, T, &n));
  check_drop(keep, n, expected_keep, n_expected, new_spans, expected_spans);
  for (i = 0; i < NIMG; ++i)
    CHECK(fabs((double)scores[i] - expected[i]) <= 1e-6 * expected[i]);
}

static void test_v2drop(pdrop_workspace* ws) {
  const int64_t per_span[NSPANS] = {3, 4}, global = 6;
  const int64_t text_query = 22, queries[2] = {22, 14};
  pdrop_rows b32 = {NULL, PDROP_TYPE_F32, T, VD, VS32}, a32 = {NULL, PDROP_TYPE_F32, T, VD, VS32};
  pdrop_rows b16 = {NULL, PDROP_TYPE_F16, T, VD, VS16}, a16 = {NULL, PDROP_TYPE_F16, T, VD, VS16};
  int64_t keep[T], n = -1, counts[NSPANS] = {3, 4}, bad_counts[2] = {3, 3};
  pdrop_image_span new_spans[NSPANS] = {{-1, -1}, {-1, -1}};
  float scores[NIMG];
  pdrop_v2drop_params p = pdrop_v2drop_default_params();
  int t, f, i;

  b32.data = vb32;
  a32.data = va32;
  b16.data = vb16;
  a16.data = va16;

  /* fp32 rows, stride 8 for 6 features; the padding is NaN, so reading it
   * would fail the call. */
  for (t = 0; t < T; ++t)
    for (f = 0; f < VS32; ++f) {
      vb32[t][f] = f < VD ? uniform() : NAN;
      va32[t][f] = f < VD ? vb32[t][f] + 0.5f * uniform() : NAN;
      if (f < VD) {
        val_b[t][f] = vb32[t][f];
        val_a[t][f] = va32[t][f];
      }
    }
  check_v2drop(ws, b32, a32, PDROP_BUDGET_PER_SPAN, per_span, &text_query, 1);
  check_v2drop(ws, b32, a32, PDROP_BUDGET_GLOBAL, &global, &text_query, 1);
  /* A query token inside span 1 (14) is kept and takes one of its slots. */
  check_v2drop(ws, b32, a32, PDROP_BUDGET_PER_SPAN, per_span, queries, 2);
  check_v2drop(ws, b32, a32, PDROP_BUDGET_GLOBAL, &global, queries, 2);

  /* fp16 rows, stride 10; span 1's rows do not change (every variation 0:
   * a tie, which goes to the lower indices). */
  for (t = 0; t < T; ++t)
    for (f = 0; f < VS16; ++f) {
      vb16[t][f] = f < VD ? random_half() : 0x7E00;
      va16[t][f] = f < VD ? (t >= 12 && t < 20 ? vb16[t][f] : random_half()) : 0x7E00;
      if (f < VD) {
        val_b[t][f] = half_to_float(vb16[t][f]);
        val_a[t][f] = half_to_float(va16[t][f]);
      }
    }
  check_v2drop(ws, b16, a16, PDROP_BUDGET_PER_SPAN, per_span, &text_query, 1);
  check_v2drop(ws, b16, a16, PDROP_BUDGET_GLOBAL, &global, &text_query, 1);
  check_v2drop(ws, b16, a16, PDROP_BUDGET_PER_SPAN, per_span, queries, 2);
  /* The tie, stated on its own: span 1 keeps the query token 14 and its
   * lowest others, 12, 13 and 15. */
  p.before = b16;
  p.after = a16;
  p.query_pos = queries;
  p.n_query = 2;
  p.spans = spans;
  p.n_spans = NSPANS;
  p.keep_counts = per_span;
  p.n_keep_counts = NSPANS;
  CHECK_OK(pdrop_v2drop_drop(ws, &p, keep, T, &n));
  CHECK(n == T - NIMG + 7 && keep[n - 7] == 12 && keep[n - 6] == 13 && keep[n - 5] == 14 &&
        keep[n - 4] == 15 && keep[n - 3] == 20 && keep[n - 1] == 22);

  /* Mixed: fp16 before, fp32 after. */
  for (t = 0; t < T; ++t)
    for (f = 0; f < VD; ++f) {
      val_b[t][f] = half_to_float(vb16[t][f]);
      va32[t][f] = val_a[t][f] = uniform();
    }
  check_v2drop(ws, b16, a32, PDROP_BUDGET_PER_SPAN, per_span, &text_query, 1);

  /* Errors: status, message, and keep, n, new spans and scores untouched. */
  for (i = 0; i < T; ++i) keep[i] = -7;
  for (i = 0; i < NIMG; ++i) scores[i] = -7.0f;
  n = -7;
  p = pdrop_v2drop_default_params();
  p.before = b32;
  p.after = a32;
  p.query_pos = &text_query;
  p.n_query = 1;
  p.spans = spans;
  p.n_spans = NSPANS;
  p.keep_counts = counts;
  p.n_keep_counts = NSPANS;
  p.maybe_new_spans = new_spans;
  p.maybe_scores = scores;
  p.n_scores = NIMG;
  counts[1] = 9;
  CHECK_FAILS(pdrop_v2drop_drop(ws, &p, keep, T, &n), PDROP_STATUS_VALUE_ERROR,
              "pdrop_v2drop_drop: keep_counts[1] (9) must be in [0, spans[1].length = 8]");
  counts[1] = 4;
  p.budget = (pdrop_budget)7;
  CHECK_FAILS(pdrop_v2drop_drop(ws, &p, keep, T, &n), PDROP_STATUS_INVALID_ARGUMENT,
              "pdrop_v2drop_drop: params.budget (7) is not a pdrop_budget");
  p.budget = PDROP_BUDGET_GLOBAL;
  p.keep_counts = bad_counts;
  CHECK_FAILS(pdrop_v2drop_drop(ws, &p, keep, T, &n), PDROP_STATUS_SHAPE_ERROR,
              "pdrop_v2drop_drop: n_keep_counts (2) must be 1 with PDROP_BUDGET_GLOBAL");
  p.budget = PDROP_BUDGET_PER_SPAN;
  p.keep_counts = counts;
  p.before.type = PDROP_TYPE_I64;
  CHECK_FAILS(pdrop_v2drop_drop(ws, &p, keep, T, &n), PDROP_STATUS_INVALID_ARGUMENT,
              "pdrop_v2drop_drop: before.type (PDROP_TYPE_I64) must be PDROP_TYPE_F32, "
              "PDROP_TYPE_F16 or PDROP_TYPE_BF16");
  p.before.type = PDROP_TYPE_F32;
  p.after.type = (pdrop_type)99;
  CHECK_FAILS(pdrop_v2drop_drop(ws, &p, keep, T, &n), PDROP_STATUS_INVALID_ARGUMENT,
              "pdrop_v2drop_drop: after.type (99) is not a pdrop_type");
  p.after.type = PDROP_TYPE_F32;
  p.after.row_stride = -2;
  CHECK_FAILS(pdrop_v2drop_drop(ws, &p, keep, T, &n), PDROP_STATUS_SHAPE_ERROR,
              "pdrop_v2drop_drop: after.row_stride (-2) must be >= features (6)");
  p.after.row_stride = VS32;
  p.after.tokens = T - 1;
  CHECK_FAILS(pdrop_v2drop_drop(ws, &p, keep, T, &n), PDROP_STATUS_SHAPE_ERROR,
              "pdrop_v2drop_drop: after.tokens (22) must equal before.tokens (23)");
  p.after.tokens = T;
  p.query_pos = &n; /* -7 */
  CHECK_FAILS(pdrop_v2drop_drop(ws, &p, keep, T, &n), PDROP_STATUS_VALUE_ERROR,
              "pdrop_v2drop_drop: query_pos[0] (-7) must be in [0, tokens = 23)");
  p.query_pos = &text_query;
  CHECK_FAILS(pdrop_v2drop_drop(ws, &p, keep, T - 9, &n), PDROP_STATUS_SHAPE_ERROR,
              "pdrop_v2drop_drop: keep.size (14) must be >= the new length 15 "
              "(tokens 23 - image 15 + kept 7)");
  /* An inf in an image row (token 5): checked before anything is written. */
  va32[5][2] = INFINITY;
  CHECK_FAILS(pdrop_v2drop_drop(ws, &p, keep, T, &n), PDROP_STATUS_VALUE_ERROR,
              "pdrop_v2drop_drop: the variation of token 5 (inf) is not finite: before/after "
              "rows hold inf or NaN, or their difference exceeds float's range");
  va32[5][2] = 0.0f;
  CHECK_FAILS(pdrop_v2drop_drop(NULL, &p, keep, T, &n), PDROP_STATUS_INVALID_ARGUMENT,
              "pdrop_v2drop_drop: ws is NULL");
  CHECK_FAILS(pdrop_v2drop_drop(ws, &p, keep, T, NULL), PDROP_STATUS_INVALID_ARGUMENT,
              "pdrop_v2drop_drop: n_keep_out is NULL");
  for (i = 0; i < T; ++i) CHECK(keep[i] == -7);
  for (i = 0; i < NIMG; ++i) CHECK(scores[i] == -7.0f);
  CHECK(n == -7 && new_spans[0].start == -1 && new_spans[1].length == -1);
  /* The same call, fixed, succeeds and writes. */
  CHECK_OK(pdrop_v2drop_drop(ws, &p, keep, T, &n));
  CHECK(n == T - NIMG + 7 && new_spans[0].length == 3 && new_spans[1].length == 4);
}

/* ---- random: the documented rule, written out ---- */

/* SplitMix64 (Steele, Lea, Flood 2014), as pdrop/strategies.hpp states it. */
static uint64_t splitmix64(uint64_t* state) {
  uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
/* Uniform in [0, n): draws below 2^64 mod n rejected, the rest mod n. */
static uint64_t below(uint64_t* state, uint64_t n) {
  const uint64_t reject = (0 - n) % n;
  for (;;) {
    const uint64_t x = splitmix64(state);
    if (x >= reject) return x % n;
  }
}

/* The keep list of the random rule: span i draws from SplitMix64 seeded by
 * the i-th output of SplitMix64(seed); its query tokens are kept without a
 * draw, and Algorithm S keeps each other token with probability
 * need / left. */
static int naive_random(uint64_t seed, const int64_t* counts, const int64_t* qpos, int nq,
                        int64_t* keep) {
  int chosen[NIMG], s, i, t, first = 0;
  uint64_t master = seed;
  memset(chosen, 0, sizeof chosen);
  for (i = 0; i < nq; ++i)
    if (image_index(qpos[i]) >= 0) chosen[image_index(qpos[i])] = 1;
  for (s = 0; s < NSPANS; first += (int)spans[s].length, ++s) {
    uint64_t state = splitmix64(&master);
    int64_t forced = 0, left, need;
    for (t = 0; t < spans[s].length; ++t) forced += chosen[first + t];
    left = spans[s].length - forced;
    need = counts[s] > forced ? counts[s] - forced : 0;
    for (t = 0; t < spans[s].length; ++t) {
      if (chosen[first + t]) continue;
      if (need > 0 && below(&state, (uint64_t)left) < (uint64_t)need) {
        chosen[first + t] = 1;
        --need;
      }
      --left;
    }
  }
  return keep_list_of(chosen, keep);
}

static void test_random(pdrop_workspace* ws) {
  const int64_t text_query = 22, queries[2] = {22, 5};
  const uint64_t seeds[3] = {0, 42, 0xFFFFFFFFFFFFFFFFull};
  int64_t counts[NSPANS] = {3, 4}, keep[T], keep2[T], expected[T], n = -1, n2 = -1;
  pdrop_image_span new_spans[NSPANS] = {{-1, -1}, {-1, -1}};
  pdrop_random_params p = pdrop_random_default_params();
  int i, k, n_expected;

  CHECK(p.seed == 0 && p.tokens == 0 && p.keep_counts == NULL && p.maybe_new_spans == NULL);
  p.tokens = T;
  p.spans = spans;
  p.n_spans = NSPANS;
  p.keep_counts = counts;
  p.n_keep_counts = NSPANS;
  p.maybe_new_spans = new_spans;
  for (k = 0; k < 3; ++k) {
    /* A text query, then one inside span 0 (5) taking one of its 3 slots. */
    p.seed = seeds[k];
    p.query_pos = &text_query;
    p.n_query = 1;
    n_expected = naive_random(seeds[k], counts, &text_query, 1, expected);
    CHECK_OK(pdrop_random_drop(ws, &p, keep, T, &n));
    CHECK(n == n_expected && n == T - NIMG + 7);
    CHECK(memcmp(keep, expected, (size_t)n * sizeof keep[0]) == 0);
    CHECK(new_spans[0].start == 3 && new_spans[0].length == 3);
    CHECK(new_spans[1].start == 8 && new_spans[1].length == 4);
    /* The same seed, the same list. */
    CHECK_OK(pdrop_random_drop(ws, &p, keep2, T, &n2));
    CHECK(n2 == n && memcmp(keep, keep2, (size_t)n * sizeof keep[0]) == 0);
    p.query_pos = queries;
    p.n_query = 2;
    n_expected = naive_random(seeds[k], counts, queries, 2, expected);
    CHECK_OK(pdrop_random_drop(ws, &p, keep2, T, &n2));
    CHECK(n2 == n_expected && memcmp(keep2, expected, (size_t)n2 * sizeof keep2[0]) == 0);
    for (i = 0; i < n2 && keep2[i] != 5; ++i) {}
    CHECK(i < n2);
  }
  /* Another seed, another pick (seeds 0 and 42 keep different tokens). */
  p.query_pos = &text_query;
  p.n_query = 1;
  p.seed = 0;
  CHECK_OK(pdrop_random_drop(ws, &p, keep, T, &n));
  p.seed = 42;
  CHECK_OK(pdrop_random_drop(ws, &p, keep2, T, &n2));
  CHECK(memcmp(keep, keep2, (size_t)n * sizeof keep[0]) != 0);
  /* Every count 0 (VTW's drop): only text and the query tokens stay. */
  counts[0] = counts[1] = 0;
  p.query_pos = queries;
  p.n_query = 2;
  CHECK_OK(pdrop_random_drop(ws, &p, keep, T, &n));
  CHECK(n == T - NIMG + 1 && keep[2] == 2 && keep[3] == 5 && keep[4] == 10);
  CHECK(new_spans[0].start == 3 && new_spans[0].length == 1 && new_spans[1].length == 0);

  /* Errors: status, message, nothing written. */
  counts[0] = 3;
  counts[1] = 4;
  for (i = 0; i < T; ++i) keep[i] = -7;
  n = -7;
  new_spans[0].start = new_spans[0].length = new_spans[1].start = new_spans[1].length = -1;
  counts[0] = 8;
  CHECK_FAILS(pdrop_random_drop(ws, &p, keep, T, &n), PDROP_STATUS_VALUE_ERROR,
              "pdrop_random_drop: keep_counts[0] (8) must be in [0, spans[0].length = 7]");
  counts[0] = 3;
  p.n_keep_counts = 1;
  CHECK_FAILS(pdrop_random_drop(ws, &p, keep, T, &n), PDROP_STATUS_SHAPE_ERROR,
              "pdrop_random_drop: keep_counts.size (1) must equal spans.size (2)");
  p.n_keep_counts = NSPANS;
  p.tokens = 15;
  CHECK_FAILS(pdrop_random_drop(ws, &p, keep, T, &n), PDROP_STATUS_VALUE_ERROR,
              "pdrop_random_drop: query_pos[0] (22) must be in [0, tokens = 15)");
  p.query_pos = NULL;
  p.n_query = 0;
  CHECK_FAILS(pdrop_random_drop(ws, &p, keep, T, &n), PDROP_STATUS_VALUE_ERROR,
              "pdrop_random_drop: spans[1] (start 12, length 8) must lie inside "
              "[0, tokens = 15)");
  p.tokens = -1;
  CHECK_FAILS(pdrop_random_drop(ws, &p, keep, T, &n), PDROP_STATUS_SHAPE_ERROR,
              "pdrop_random_drop: tokens (-1) must be >= 0");
  p.tokens = T;
  CHECK_FAILS(pdrop_random_drop(ws, &p, keep, 3, &n), PDROP_STATUS_SHAPE_ERROR,
              "pdrop_random_drop: keep.size (3) must be >= the new length 15 "
              "(tokens 23 - image 15 + kept 7)");
  CHECK_FAILS(pdrop_random_drop(ws, NULL, keep, T, &n), PDROP_STATUS_INVALID_ARGUMENT,
              "pdrop_random_drop: params is NULL");
  for (i = 0; i < T; ++i) CHECK(keep[i] == -7);
  CHECK(n == -7 && new_spans[0].start == -1 && new_spans[1].length == -1);
}

/* ---- DART: the documented rule, written out ---- */

static float df32[T][VS32]; /* feature rows, 6 of stride 8, NaN padding */

/* Which rows DART compares: the key rows (k16's heads side by side), the
 * fp32 features df32, or the fp16 rows vb16. */
enum { ROWS_KEYS, ROWS_F32, ROWS_F16 };

static int dart_row(int rows, int t, double* out) {
  int h, i;
  if (rows == ROWS_KEYS) {
    for (h = 0; h < HKV; ++h)
      for (i = 0; i < DIM; ++i) out[h * DIM + i] = half_to_float(k16[h][t][i]);
    return HKV * DIM;
  }
  for (i = 0; i < VD; ++i)
    out[i] = rows == ROWS_F32 ? (double)df32[t][i] : (double)half_to_float(vb16[t][i]);
  return VD;
}

static double key_norm(int t, pdrop_pivot_norm norm) {
  double row[HKV * DIM], acc = 0.0;
  int i;
  dart_row(ROWS_KEYS, t, row);
  for (i = 0; i < HKV * DIM; ++i) acc += norm == PDROP_PIVOT_NORM_L1 ? fabs(row[i]) : row[i] * row[i];
  return acc;
}

static double cosine(int rows, int a, int b) {
  double x[HKV * DIM], y[HKV * DIM], xy = 0.0, xx = 0.0, yy = 0.0;
  int i, w = dart_row(rows, a, x);
  dart_row(rows, b, y);
  for (i = 0; i < w; ++i) {
    xy += x[i] * y[i];
    xx += x[i] * x[i];
    yy += y[i] * y[i];
  }
  return xx > 0.0 && yy > 0.0 ? xy / sqrt(xx * yy) : 0.0;
}

/* DART per span (pdrop/dart.hpp's steps 1-4): query tokens kept, then
 * image pivots by key norm, text pivots after the span, and each pivot's
 * share of the least similar remaining tokens; ties to the lower index. */
static int naive_dart(const int64_t* counts, const int64_t* qpos, int nq, int pivots,
                      int text_pivots, pdrop_pivot_norm norm, int rows, int64_t* keep,
                      pdrop_image_span new_spans[NSPANS]) {
  int chosen[NIMG], s, i, r, j, first = 0;
  memset(chosen, 0, sizeof chosen);
  for (i = 0; i < nq; ++i)
    if (image_index(qpos[i]) >= 0) chosen[image_index(qpos[i])] = 1;
  for (s = 0; s < NSPANS; first += (int)spans[s].length, ++s) {
    const int start = (int)spans[s].start, n = (int)spans[s].length;
    int taken[T], piv[T], np = 0, p, extra, k, forced = 0, text_used[T];
    for (i = 0; i < n; ++i) forced += chosen[first + i];
    k = (int)counts[s] > forced ? (int)counts[s] - forced : 0;
    if (k == 0) continue;
    for (i = 0; i < n; ++i) taken[i] = chosen[first + i]; /* not candidates */
    p = pivots < k ? pivots : k;
    for (r = 0; r < p; ++r) {
      int best = -1;
      for (i = 0; i < n; ++i)
        if (!taken[i] && (best < 0 || key_norm(start + i, norm) > key_norm(start + best, norm)))
          best = i;
      taken[best] = 1;
      chosen[first + best] = 1;
      piv[np++] = start + best;
    }
    extra = k - p;
    if (extra == 0) continue;
    memset(text_used, 0, sizeof text_used);
    for (r = 0; r < text_pivots; ++r) {
      int best = -1;
      for (j = start + n; j < T; ++j)
        if (image_index(j) < 0 && !text_used[j] &&
            (best < 0 || key_norm(j, norm) > key_norm(best, norm)))
          best = j;
      if (best < 0) break;
      text_used[best] = 1;
      piv[np++] = best;
    }
    for (r = 0; r < np && r < extra; ++r) {
      int share = extra / np + (r < extra % np ? 1 : 0);
      for (; share > 0; --share) {
        int best = -1;
        for (i = 0; i < n; ++i)
          if (!taken[i] && (best < 0 || cosine(rows, start + i, piv[r]) <
                                            cosine(rows, start + best, piv[r])))
            best = i;
        taken[best] = 1;
        chosen[first + best] = 1;
      }
    }
  }
  new_spans_of(chosen, new_spans);
  return keep_list_of(chosen, keep);
}

static void check_dart(pdrop_workspace* ws, const int64_t* counts, const int64_t* qpos, int nq,
                       int pivots, int text_pivots, pdrop_pivot_norm norm, int rows) {
  int64_t keep[T], expected[T], n = -1;
  pdrop_image_span new_spans[NSPANS], expected_spans[NSPANS];
  pdrop_dart_params p = pdrop_dart_default_params();
  const pdrop_rows f32 = {df32, PDROP_TYPE_F32, T, VD, VS32};
  const pdrop_rows f16 = {vb16, PDROP_TYPE_F16, T, VD, VS16};
  int i;
  const int n_expected = naive_dart(counts, qpos, nq, pivots, text_pivots, norm, rows, expected,
                                    expected_spans);

  p.k = score_params().k; /* fp16 HND, capacity CAP */
  if (rows == ROWS_F32) p.features = f32;
  if (rows == ROWS_F16) p.features = f16;
  p.query_pos = qpos;
  p.n_query = nq;
  p.spans = spans;
  p.n_spans = NSPANS;
  p.keep_counts = counts;
  p.n_keep_counts = NSPANS;
  p.pivots = pivots;
  p.text_pivots = text_pivots;
  p.pivot_norm = norm;
  p.maybe_new_spans = new_spans;
  for (i = 0; i < T; ++i) keep[i] = -1;
  CHECK_OK(pdrop_dart_drop(ws, &p, keep, T, &n));
  check_drop(keep, n, expected, n_expected, new_spans, expected_spans);
}

static void test_dart(pdrop_workspace* ws) {
  const int64_t small[NSPANS] = {3, 4}, large[NSPANS] = {6, 7}, most[NSPANS] = {5, 6};
  const int64_t few[NSPANS] = {4, 4};
  const int64_t text_query = 22, queries[2] = {22, 5}, queries14[2] = {14, 22};
  int64_t keep[T], n = -7, counts[NSPANS] = {6, 7};
  pdrop_image_span new_spans[NSPANS] = {{-1, -1}, {-1, -1}};
  pdrop_dart_params p = pdrop_dart_default_params();
  int t, f, i;

  CHECK(p.pivots == 8 && p.text_pivots == 0 && p.pivot_norm == PDROP_PIVOT_NORM_L2);
  CHECK(p.features.data == NULL && p.features.tokens == 0);
  for (t = 0; t < T; ++t)
    for (f = 0; f < VS32; ++f) df32[t][f] = f < VD ? uniform() : NAN;
  /* Span 1's keys doubled (exactly: exponent + 1): the largest norms after
   * span 0, which text pivots must skip (they are image tokens). */
  for (i = 0; i < HKV; ++i)
    for (t = 12; t < 20; ++t)
      for (f = 0; f < DIM; ++f) k16[i][t][f] = (uint16_t)(k16[i][t][f] + (1u << 10));

  /* The defaults (8 pivots, L2, the key rows compared): 3 and 4 kept are
   * all pivots, the largest key norms. */
  check_dart(ws, small, &text_query, 1, 8, 0, PDROP_PIVOT_NORM_L2, ROWS_KEYS);
  /* 2 image + 2 text pivots, L1 norms, fp32 features: every pivot shares. */
  check_dart(ws, large, &text_query, 1, 2, 2, PDROP_PIVOT_NORM_L1, ROWS_F32);
  check_dart(ws, large, queries, 2, 2, 2, PDROP_PIVOT_NORM_L1, ROWS_F32);
  check_dart(ws, most, queries14, 2, 1, 0, PDROP_PIVOT_NORM_L2, ROWS_KEYS);
  check_dart(ws, most, queries14, 2, 3, 1, PDROP_PIVOT_NORM_L1, ROWS_F16);
  /* More text pivots asked for than there are text tokens after span 1. */
  check_dart(ws, large, &text_query, 1, 1, 6, PDROP_PIVOT_NORM_L2, ROWS_KEYS);
  /* Few kept of many: the text pivots decide most of the pick. */
  check_dart(ws, few, &text_query, 1, 1, 3, PDROP_PIVOT_NORM_L1, ROWS_F32);
  check_dart(ws, few, &text_query, 1, 1, 2, PDROP_PIVOT_NORM_L2, ROWS_KEYS);
  check_dart(ws, few, queries14, 2, 1, 2, PDROP_PIVOT_NORM_L2, ROWS_F16);

  /* Errors: status, message, nothing written. */
  for (i = 0; i < T; ++i) keep[i] = -7;
  p.k = score_params().k;
  p.features.data = df32;
  p.features.tokens = T;
  p.features.features = VD;
  p.features.row_stride = VS32;
  p.query_pos = &text_query;
  p.n_query = 1;
  p.spans = spans;
  p.n_spans = NSPANS;
  p.keep_counts = counts;
  p.n_keep_counts = NSPANS;
  p.pivots = 2;
  p.text_pivots = 2;
  p.maybe_new_spans = new_spans;
  p.pivot_norm = (pdrop_pivot_norm)3;
  CHECK_FAILS(pdrop_dart_drop(ws, &p, keep, T, &n), PDROP_STATUS_INVALID_ARGUMENT,
              "pdrop_dart_drop: params.pivot_norm (3) is not a pdrop_pivot_norm");
  p.pivot_norm = PDROP_PIVOT_NORM_L1;
  p.pivots = 0;
  CHECK_FAILS(pdrop_dart_drop(ws, &p, keep, T, &n), PDROP_STATUS_VALUE_ERROR,
              "pdrop_dart_drop: params.pivots (0) must be in [1, 2^31]");
  p.pivots = 2;
  p.text_pivots = -1;
  CHECK_FAILS(pdrop_dart_drop(ws, &p, keep, T, &n), PDROP_STATUS_VALUE_ERROR,
              "pdrop_dart_drop: params.text_pivots (-1) must be in [0, 2^31]");
  p.text_pivots = 2;
  counts[0] = 8;
  CHECK_FAILS(pdrop_dart_drop(ws, &p, keep, T, &n), PDROP_STATUS_VALUE_ERROR,
              "pdrop_dart_drop: keep_counts[0] (8) must be in [0, spans[0].length = 7]");
  counts[0] = 6;
  p.features.tokens = T - 1;
  CHECK_FAILS(pdrop_dart_drop(ws, &p, keep, T, &n), PDROP_STATUS_SHAPE_ERROR,
              "pdrop_dart_drop: features.tokens (22) must equal k.tokens (23)");
  p.features.tokens = T;
  p.features.type = PDROP_TYPE_U8;
  CHECK_FAILS(pdrop_dart_drop(ws, &p, keep, T, &n), PDROP_STATUS_INVALID_ARGUMENT,
              "pdrop_dart_drop: features.type (PDROP_TYPE_U8) must be PDROP_TYPE_F32, "
              "PDROP_TYPE_F16 or PDROP_TYPE_BF16");
  p.features.type = PDROP_TYPE_F32;
  p.k.type = PDROP_TYPE_I32;
  CHECK_FAILS(pdrop_dart_drop(ws, &p, keep, T, &n), PDROP_STATUS_INVALID_ARGUMENT,
              "pdrop_dart_drop: k.type (PDROP_TYPE_I32) must be PDROP_TYPE_F32, "
              "PDROP_TYPE_F16 or PDROP_TYPE_BF16");
  p.k.type = PDROP_TYPE_F16;
  p.query_pos = &n; /* -7 */
  CHECK_FAILS(pdrop_dart_drop(ws, &p, keep, T, &n), PDROP_STATUS_VALUE_ERROR,
              "pdrop_dart_drop: query_pos[0] (-7) must be in [0, tokens = 23)");
  p.query_pos = &text_query;
  /* A NaN in a compared row (token 4 of span 0, which keeps 6 of 7). */
  df32[4][1] = NAN;
  CHECK_FAILS(pdrop_dart_drop(ws, &p, keep, T, &n), PDROP_STATUS_VALUE_ERROR,
              "pdrop_dart_drop: features hold a non-finite value in the row of token 4");
  df32[4][1] = 0.5f;
  CHECK_FAILS(pdrop_dart_drop(ws, &p, keep, 8, &n), PDROP_STATUS_SHAPE_ERROR,
              "pdrop_dart_drop: keep.size (8) must be >= the new length 21 "
              "(tokens 23 - image 15 + kept 13)");
  CHECK_FAILS(pdrop_dart_drop(ws, &p, NULL, 0, &n), PDROP_STATUS_SHAPE_ERROR,
              "pdrop_dart_drop: keep.size (0) must be >= the new length 21 "
              "(tokens 23 - image 15 + kept 13)");
  for (i = 0; i < T; ++i) CHECK(keep[i] == -7);
  CHECK(n == -7 && new_spans[0].start == -1 && new_spans[1].length == -1);
  CHECK_OK(pdrop_dart_drop(ws, &p, keep, T, &n));
  CHECK(n == T - NIMG + 13 && new_spans[0].length == 6 && new_spans[1].length == 7);
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
  test_v2drop(ws);
  test_random(ws);
  test_dart(ws);
  pdrop_workspace_free(ws);

  if (failures) {
    fprintf(stderr, "%d checks failed\n", failures);
    return 1;
  }
  printf("ok: the C API from C (pdrop %s)\n", pdrop_version());
  return 0;
}
