// pdrop/c_api_impl.hpp - the definitions of pdrop/c_api.h.
//
// Include it in exactly one C++17 translation unit compiled WITH exceptions
// (CMake's pdrop::c library does; see c_api.h). Each C function validates
// what only the C layer knows (NULL handles and params, enum values, the
// element type a view names), then calls the C++ operator inside one
// try/catch that turns pdrop's exceptions into a pdrop_status and the
// message into pdrop_last_error(), named after the C function (CalledAs,
// pdrop/errors.hpp). No exception leaves a C function.
#ifndef PDROP_C_API_IMPL_HPP
#define PDROP_C_API_IMPL_HPP

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <new>
#include <optional>
#include <string>

#include "pdrop/c_api.h"
#include "pdrop/compact.hpp"
#include "pdrop/dart.hpp"
#include "pdrop/rank_drop.hpp"
#include "pdrop/schedule.hpp"
#include "pdrop/score.hpp"
#include "pdrop/sequence.hpp"
#include "pdrop/strategies.hpp"
#include "pdrop/v2drop.hpp"
#include "pdrop/workspace.hpp"

#if !PDROP_EXCEPTIONS
#error "pdrop/c_api_impl.hpp turns pdrop's exceptions into status codes: compile this file with exceptions (the rest of the program may use -fno-exceptions)"
#endif

// The handles: C names, C++ contents.
struct pdrop_schedule {
  pdrop::Schedule schedule;
};
struct pdrop_workspace {
  pdrop::Workspace ws;
};
struct pdrop_sequence {
  pdrop::SequenceState state;
};

PDROP_BEGIN_NAMESPACE
namespace detail {
namespace c_api {

static_assert(sizeof(pdrop_image_span) == sizeof(ImageSpan) &&
                  offsetof(pdrop_image_span, start) == offsetof(ImageSpan, start) &&
                  offsetof(pdrop_image_span, length) == offsetof(ImageSpan, length),
              "pdrop_image_span and pdrop::ImageSpan must have one layout");

inline std::string& last_error() {
  thread_local std::string message;
  return message;
}

// Thrown by the C layer's own checks; caught as pdrop_status.
struct c_error {
  pdrop_status status;
  std::string message;
};

// Runs body(), every error it raises named after c_fn (CalledAs); maps
// what it throws to a status and this thread's message.
template <class Body>
pdrop_status guarded(const char* c_fn, Body&& body) noexcept {
  try {
    try {
      const CalledAs called(c_fn);
      body();
      last_error().clear();
      return PDROP_STATUS_OK;
    } catch (const c_error& e) {
      last_error() = std::string(c_fn) + ": " + e.message;
      return e.status;
    } catch (const shape_error& e) {
      last_error() = e.what();
      return PDROP_STATUS_SHAPE_ERROR;
    } catch (const value_error& e) {
      last_error() = e.what();
      return PDROP_STATUS_VALUE_ERROR;
    } catch (const invalid_argument& e) {
      last_error() = e.what();
      return PDROP_STATUS_INVALID_ARGUMENT;
    } catch (const std::bad_alloc&) {
      last_error() = std::string(c_fn) + ": out of memory";
      return PDROP_STATUS_OUT_OF_MEMORY;
    } catch (const std::exception& e) {
      last_error() = std::string(c_fn) + ": " + e.what();
      return PDROP_STATUS_INTERNAL_ERROR;
    } catch (...) {
      last_error() = std::string(c_fn) + ": unknown exception";
      return PDROP_STATUS_INTERNAL_ERROR;
    }
  } catch (...) {  // building the message itself failed
    return PDROP_STATUS_OUT_OF_MEMORY;
  }
}

template <class... Parts>
[[noreturn]] void fail_c(pdrop_status status, Parts&&... parts) {
  throw c_error{status, concat(std::forward<Parts>(parts)...)};
}

inline void need(const void* p, const char* name) {
  if (p == nullptr) fail_c(PDROP_STATUS_INVALID_ARGUMENT, name, " is NULL");
}

// A (pointer, count) pair from C: count >= 0, pointer non-NULL when count > 0.
template <class T>
span<T> c_span(T* p, std::int64_t n, const char* name) {
  if (n < 0) fail_c(PDROP_STATUS_SHAPE_ERROR, name, " count (", n, ") must be >= 0");
  if (n > 0 && p == nullptr)
    fail_c(PDROP_STATUS_SHAPE_ERROR, name, " is NULL with ", n, " entries");
  return span<T>(p, n);
}

inline span<const ImageSpan> c_spans(const pdrop_image_span* p, std::int64_t n,
                                     const char* name) {
  const auto s = c_span(p, n, name);
  return {reinterpret_cast<const ImageSpan*>(s.data), s.size};
}

inline const char* type_name(pdrop_type t) {
  switch (t) {
    case PDROP_TYPE_F32: return "PDROP_TYPE_F32";
    case PDROP_TYPE_F16: return "PDROP_TYPE_F16";
    case PDROP_TYPE_BF16: return "PDROP_TYPE_BF16";
    case PDROP_TYPE_I32: return "PDROP_TYPE_I32";
    case PDROP_TYPE_I64: return "PDROP_TYPE_I64";
    case PDROP_TYPE_U8: return "PDROP_TYPE_U8";
    default: break;  // unknown values: handled below
  }
  return nullptr;
}

inline void check_type(pdrop_type t, const char* name) {
  if (type_name(t) == nullptr)
    fail_c(PDROP_STATUS_INVALID_ARGUMENT, name, ".type (", static_cast<int>(t),
           ") is not a pdrop_type");
}

// Calls f(T{}) with the C++ type of `name`.type; an unknown type is the
// error check_type reports.
template <class F>
decltype(auto) with_type(pdrop_type t, const char* name, F&& f) {
  switch (t) {
    case PDROP_TYPE_F32: return f(float{});
    case PDROP_TYPE_F16: return f(half{});
    case PDROP_TYPE_BF16: return f(bfloat16{});
    case PDROP_TYPE_I32: return f(std::int32_t{});
    case PDROP_TYPE_I64: return f(std::int64_t{});
    case PDROP_TYPE_U8: return f(static_cast<unsigned char>(0));
    default: break;  // unknown values: handled below
  }
  check_type(t, name);  // throws: t is none of the above
  fail_c(PDROP_STATUS_INTERNAL_ERROR, name, ".type (", static_cast<int>(t), ") was not handled");
}

template <class F>
decltype(auto) with_float_type(pdrop_type t, const char* name, F&& f) {
  check_type(t, name);
  switch (t) {
    case PDROP_TYPE_F32: return f(float{});
    case PDROP_TYPE_F16: return f(half{});
    case PDROP_TYPE_BF16: return f(bfloat16{});
    default: break;
  }
  fail_c(PDROP_STATUS_INVALID_ARGUMENT, name, ".type (", type_name(t),
         ") must be PDROP_TYPE_F32, PDROP_TYPE_F16 or PDROP_TYPE_BF16");
}

template <class F>
decltype(auto) with_position_type(pdrop_type t, const char* name, F&& f) {
  check_type(t, name);
  if (t == PDROP_TYPE_I32) return f(std::int32_t{});
  if (t == PDROP_TYPE_I64) return f(std::int64_t{});
  fail_c(PDROP_STATUS_INVALID_ARGUMENT, name, ".type (", type_name(t),
         ") must be PDROP_TYPE_I32 or PDROP_TYPE_I64");
}

// The C++ view of a pdrop_rows. C++'s TokenView reads a negative stride as
// "dense"; the C header promises row_stride >= features, so a negative one
// is refused here rather than quietly reinterpreted.
template <class T>
TokenView<T> rows_of(const pdrop_rows& r, const char* name) {
  if (r.row_stride < 0)
    fail_c(PDROP_STATUS_SHAPE_ERROR, name, ".row_stride (", r.row_stride,
           ") must be >= features (", r.features, ")");
  return TokenView<T>(static_cast<T*>(r.data), r.tokens, r.features, r.row_stride);
}

template <class T>
HeadView<T> heads_of(const pdrop_heads& h) {
  return HeadView<T>(static_cast<T*>(h.data), h.heads, h.tokens, h.dim, h.head_stride,
                     h.token_stride);
}

inline Strategy strategy_of(pdrop_strategy s) {
  switch (s) {
    case PDROP_STRATEGY_PYRAMID_DROP: return Strategy::pyramid_drop;
    case PDROP_STRATEGY_FASTV: return Strategy::fastv;
    case PDROP_STRATEGY_VTW: return Strategy::vtw;
    case PDROP_STRATEGY_DART: return Strategy::dart;
    case PDROP_STRATEGY_RANDOM: return Strategy::random;
    case PDROP_STRATEGY_V2DROP: return Strategy::v2drop;
    default: break;  // unknown values: handled below
  }
  fail_c(PDROP_STATUS_INVALID_ARGUMENT, "strategy (", static_cast<int>(s),
         ") is not a pdrop_strategy");
}

inline pdrop_strategy c_strategy(Strategy s) {
  switch (s) {
    case Strategy::pyramid_drop: return PDROP_STRATEGY_PYRAMID_DROP;
    case Strategy::fastv: return PDROP_STRATEGY_FASTV;
    case Strategy::vtw: return PDROP_STRATEGY_VTW;
    case Strategy::dart: return PDROP_STRATEGY_DART;
    case Strategy::random: return PDROP_STRATEGY_RANDOM;
    case Strategy::v2drop: return PDROP_STRATEGY_V2DROP;
    default: break;  // unknown values: handled below
  }
  fail_c(PDROP_STATUS_INTERNAL_ERROR, "strategy ", static_cast<int>(s),
         " has no pdrop_strategy value");
}

inline PositionMode mode_of(pdrop_position_mode m, const char* name) {
  if (m == PDROP_POSITION_MODE_REINDEX) return PositionMode::reindex;
  if (m == PDROP_POSITION_MODE_KEEP_ORIGINAL) return PositionMode::keep_original;
  fail_c(PDROP_STATUS_INVALID_ARGUMENT, name, " (", static_cast<int>(m),
         ") is not a pdrop_position_mode");
}

inline pdrop_position_mode c_mode(PositionMode m) {
  return m == PositionMode::reindex ? PDROP_POSITION_MODE_REINDEX
                                    : PDROP_POSITION_MODE_KEEP_ORIGINAL;
}

inline Budget budget_of(pdrop_budget b, const char* name) {
  if (b == PDROP_BUDGET_PER_SPAN) return Budget::per_span;
  if (b == PDROP_BUDGET_GLOBAL) return Budget::global;
  fail_c(PDROP_STATUS_INVALID_ARGUMENT, name, " (", static_cast<int>(b),
         ") is not a pdrop_budget");
}

inline ScoreOptions options_of(const pdrop_score_params& p, const char* name) {
  ScoreOptions o;
  o.softmax_scale = p.softmax_scale;
  switch (p.prob_rounding) {
    case PDROP_PROB_ROUNDING_NONE: o.round_probs = ProbRounding::none; break;
    case PDROP_PROB_ROUNDING_FP16: o.round_probs = ProbRounding::fp16; break;
    case PDROP_PROB_ROUNDING_BF16: o.round_probs = ProbRounding::bf16; break;
    default:
      fail_c(PDROP_STATUS_INVALID_ARGUMENT, name, ".prob_rounding (",
             static_cast<int>(p.prob_rounding), ") is not a pdrop_prob_rounding");
  }
  switch (p.precision) {
    case PDROP_SCORE_PRECISION_FP32: o.precision = ScorePrecision::fp32; break;
    case PDROP_SCORE_PRECISION_FP16_CHAIN: o.precision = ScorePrecision::fp16_chain; break;
    case PDROP_SCORE_PRECISION_BF16_CHAIN: o.precision = ScorePrecision::bf16_chain; break;
    default:
      fail_c(PDROP_STATUS_INVALID_ARGUMENT, name, ".precision (",
             static_cast<int>(p.precision), ") is not a pdrop_score_precision");
  }
  return o;
}

// The caller's C thread pool as a pdrop parallel_for.
struct CParallelFor {
  pdrop_parallel_for_fn fn;
  void* ctx;
  template <class F>
  void operator()(std::int64_t n, F&& f) const {
    using Fn = std::remove_reference_t<F>;
    fn(ctx, n, [](void* task_ctx, std::int64_t i) { (*static_cast<Fn*>(task_ctx))(i); },
       const_cast<void*>(static_cast<const void*>(&f)));
  }
};

// Calls run(q_type, k_type, parallel_for or nullptr) for a score params.
template <class Run>
void with_score_types(const pdrop_score_params& p, const char* name, Run&& run) {
  with_float_type(p.q.type, "q", [&](auto tq) {
    with_float_type(p.k.type, "k", [&](auto tk) {
      using Tq = decltype(tq);
      using Tk = decltype(tk);
      if (p.n_query != p.q.tokens)
        fail_c(PDROP_STATUS_SHAPE_ERROR, name, ".n_query (", p.n_query,
               ") must equal q.tokens (", p.q.tokens, ")");
      const HeadView<const Tq> q = heads_of<const Tq>(p.q);
      const HeadView<const Tk> k = heads_of<const Tk>(p.k);
      const auto query_pos = c_span(p.query_pos, p.n_query, "query_pos");
      const auto spans = c_spans(p.spans, p.n_spans, "spans");
      const ScoreOptions options = options_of(p, name);
      run(q, query_pos, k, spans, options);
    });
  });
}

// maybe_new_spans of a drop: NULL (not wanted) or n_spans entries.
inline span<ImageSpan> c_new_spans(pdrop_image_span* p, std::int64_t n_spans) {
  return {reinterpret_cast<ImageSpan*>(p), p != nullptr && n_spans > 0 ? n_spans : 0};
}

// The arguments the V2Drop, random and DART drops share (their params
// structs name them alike), checked in this order: the pointers, then
// query_pos, spans, keep_counts and keep.
struct DropArgs {
  span<const std::int64_t> query_pos;
  span<const ImageSpan> spans;
  span<const std::int64_t> counts;
  span<std::int64_t> keep;
};

template <class Params>
DropArgs drop_args(const pdrop_workspace* ws, const Params* params, std::int64_t* keep,
                   std::int64_t keep_capacity, const std::int64_t* n_keep_out) {
  need(ws, "ws");
  need(params, "params");
  need(n_keep_out, "n_keep_out");
  return DropArgs{c_span(params->query_pos, params->n_query, "query_pos"),
                  c_spans(params->spans, params->n_spans, "spans"),
                  c_span(params->keep_counts, params->n_keep_counts, "keep_counts"),
                  c_span(keep, keep_capacity, "keep")};
}

}  // namespace c_api
}  // namespace detail
PDROP_END_NAMESPACE

extern "C" {

const char* pdrop_status_name(pdrop_status status) {
  switch (status) {
    case PDROP_STATUS_OK: return "ok";
    case PDROP_STATUS_INVALID_ARGUMENT: return "invalid_argument";
    case PDROP_STATUS_SHAPE_ERROR: return "shape_error";
    case PDROP_STATUS_VALUE_ERROR: return "value_error";
    case PDROP_STATUS_OUT_OF_MEMORY: return "out_of_memory";
    case PDROP_STATUS_INTERNAL_ERROR: return "internal_error";
    default: break;  // unknown values: handled below
  }
  return "unknown";
}

const char* pdrop_last_error(void) { return pdrop::detail::c_api::last_error().c_str(); }

const char* pdrop_version(void) {
#define PDROP_C_API_STR2(x) #x
#define PDROP_C_API_STR(x) PDROP_C_API_STR2(x)
  return PDROP_C_API_STR(PDROP_VERSION_MAJOR) "." PDROP_C_API_STR(
      PDROP_VERSION_MINOR) "." PDROP_C_API_STR(PDROP_VERSION_PATCH);
#undef PDROP_C_API_STR
#undef PDROP_C_API_STR2
}

// ---- schedules ----

pdrop_status pdrop_schedule_pyramid(int64_t layers, int64_t stages, double lambda,
                                    pdrop_schedule** out) {
  using namespace pdrop::detail::c_api;
  return guarded("pdrop_schedule_pyramid", [&] {
    need(out, "out");
    *out = new pdrop_schedule{pdrop::Schedule::pyramid(layers, stages, lambda)};
  });
}

pdrop_status pdrop_schedule_from_lists(int64_t layers, const int64_t* drop_layers,
                                       const double* ratios, int64_t n_drops,
                                       pdrop_schedule** out) {
  using namespace pdrop::detail::c_api;
  return guarded("pdrop_schedule_from_lists", [&] {
    need(out, "out");
    const auto d = c_span(drop_layers, n_drops, "drop_layers");
    const auto r = c_span(ratios, n_drops, "ratios");
    *out = new pdrop_schedule{pdrop::Schedule::from_lists(layers, d, r)};
  });
}

pdrop_status pdrop_schedule_with_strategy(const pdrop_schedule* schedule,
                                          pdrop_strategy strategy, pdrop_schedule** out) {
  using namespace pdrop::detail::c_api;
  return guarded("pdrop_schedule_with_strategy", [&] {
    need(schedule, "schedule");
    need(out, "out");
    *out = new pdrop_schedule{schedule->schedule.with_strategy(strategy_of(strategy))};
  });
}

pdrop_status pdrop_schedule_with_position_mode(const pdrop_schedule* schedule,
                                               pdrop_position_mode mode, pdrop_schedule** out) {
  using namespace pdrop::detail::c_api;
  return guarded("pdrop_schedule_with_position_mode", [&] {
    need(schedule, "schedule");
    need(out, "out");
    *out = new pdrop_schedule{schedule->schedule.with_position_mode(mode_of(mode, "mode"))};
  });
}

void pdrop_schedule_free(pdrop_schedule* schedule) { delete schedule; }

pdrop_status pdrop_schedule_get_info(const pdrop_schedule* schedule, pdrop_schedule_info* out) {
  using namespace pdrop::detail::c_api;
  return guarded("pdrop_schedule_get_info", [&] {
    need(schedule, "schedule");
    need(out, "out");
    const pdrop::Schedule& s = schedule->schedule;
    *out = pdrop_schedule_info{s.num_layers(), s.num_stages(), c_strategy(s.strategy()),
                               c_mode(s.position_mode())};
  });
}

pdrop_status pdrop_schedule_drop_layers(const pdrop_schedule* schedule, int64_t* out,
                                        int64_t capacity, int64_t* n_out) {
  using namespace pdrop::detail::c_api;
  return guarded("pdrop_schedule_drop_layers", [&] {
    need(schedule, "schedule");
    need(n_out, "n_out");
    const auto dst = c_span(out, capacity, "out");
    const auto& d = schedule->schedule.drop_layers();
    const auto n = static_cast<std::int64_t>(d.size());
    if (capacity < n)
      fail_c(PDROP_STATUS_SHAPE_ERROR, "capacity (", capacity, ") must be >= the drops (", n,
             ")");
    for (std::int64_t i = 0; i < n; ++i) dst[i] = d[static_cast<std::size_t>(i)];
    *n_out = n;
  });
}

pdrop_status pdrop_schedule_drop_before(const pdrop_schedule* schedule, int64_t layer,
                                        int64_t* stage_out) {
  using namespace pdrop::detail::c_api;
  return guarded("pdrop_schedule_drop_before", [&] {
    need(schedule, "schedule");
    need(stage_out, "stage_out");
    *stage_out = schedule->schedule.drop_before(layer);
  });
}

pdrop_status pdrop_schedule_image_tokens(const pdrop_schedule* schedule, int64_t n0,
                                         int64_t stage, int64_t* out) {
  using namespace pdrop::detail::c_api;
  return guarded("pdrop_schedule_image_tokens", [&] {
    need(schedule, "schedule");
    need(out, "out");
    *out = schedule->schedule.image_tokens(n0, stage);
  });
}

// ---- workspace ----

pdrop_status pdrop_workspace_new(pdrop_workspace** out) {
  using namespace pdrop::detail::c_api;
  return guarded("pdrop_workspace_new", [&] {
    need(out, "out");
    *out = new pdrop_workspace{};
  });
}

void pdrop_workspace_free(pdrop_workspace* ws) { delete ws; }

pdrop_status pdrop_workspace_reserve(pdrop_workspace* ws, int64_t q_heads, int64_t kv_heads,
                                     int64_t queries, int64_t tokens, int64_t dim,
                                     int64_t image_tokens, int parallel) {
  using namespace pdrop::detail::c_api;
  return guarded("pdrop_workspace_reserve", [&] {
    need(ws, "ws");
    const std::pair<const char*, std::int64_t> sizes[] = {
        {"q_heads", q_heads}, {"kv_heads", kv_heads}, {"queries", queries},
        {"tokens", tokens},   {"dim", dim},           {"image_tokens", image_tokens}};
    for (const auto& [name, v] : sizes)
      if (v < 0) fail_c(PDROP_STATUS_VALUE_ERROR, name, " (", v, ") must be >= 0");
    if (kv_heads > 0 && q_heads % kv_heads != 0)
      fail_c(PDROP_STATUS_VALUE_ERROR, "q_heads (", q_heads,
             ") must be a multiple of kv_heads (", kv_heads, ")");
    if (parallel)
      ws->ws.reserve_parallel(q_heads, kv_heads, queries, tokens, dim, image_tokens);
    else
      ws->ws.reserve(q_heads, kv_heads, queries, tokens, dim, image_tokens);
  });
}

// ---- scoring ----

pdrop_score_params pdrop_score_default_params(void) {
  pdrop_score_params p;
  std::memset(&p, 0, sizeof p);
  p.q.type = PDROP_TYPE_F32;
  p.k.type = PDROP_TYPE_F32;
  p.softmax_scale = 0.0f;
  p.prob_rounding = PDROP_PROB_ROUNDING_NONE;
  p.precision = PDROP_SCORE_PRECISION_FP32;
  return p;
}

pdrop_status pdrop_score_image_tokens(pdrop_workspace* ws, const pdrop_score_params* params,
                                      float* scores, int64_t n_scores) {
  using namespace pdrop::detail::c_api;
  return guarded("pdrop_score_image_tokens", [&] {
    need(ws, "ws");
    need(params, "params");
    const auto out = c_span(scores, n_scores, "scores");
    with_score_types(*params, "params", [&](auto q, auto query_pos, auto k, auto spans,
                                            const pdrop::ScoreOptions& options) {
      if (params->maybe_parallel_for != nullptr)
        pdrop::score_image_tokens(q, query_pos, k, spans, ws->ws, out, options,
                                  CParallelFor{params->maybe_parallel_for,
                                               params->parallel_ctx});
      else
        pdrop::score_image_tokens(q, query_pos, k, spans, ws->ws, out, options);
    });
  });
}

// ---- rank & drop ----

pdrop_drop_params pdrop_drop_default_params(void) {
  pdrop_drop_params p;
  std::memset(&p, 0, sizeof p);
  p.score = pdrop_score_default_params();
  p.budget = PDROP_BUDGET_PER_SPAN;
  return p;
}

pdrop_status pdrop_rank_and_drop(pdrop_workspace* ws, const pdrop_drop_params* params,
                                 int64_t* keep, int64_t keep_capacity, int64_t* n_keep_out) {
  using namespace pdrop::detail::c_api;
  return guarded("pdrop_rank_and_drop", [&] {
    need(ws, "ws");
    need(params, "params");
    need(n_keep_out, "n_keep_out");
    const pdrop::Budget budget = budget_of(params->budget, "params.budget");
    const auto counts = c_span(params->keep_counts, params->n_keep_counts, "keep_counts");
    const auto out = c_span(keep, keep_capacity, "keep");
    if (budget == pdrop::Budget::global && counts.size != 1)
      fail_c(PDROP_STATUS_SHAPE_ERROR, "n_keep_counts (", counts.size,
             ") must be 1 with PDROP_BUDGET_GLOBAL");
    const auto new_spans = c_new_spans(params->maybe_new_spans, params->score.n_spans);
    const auto scores = c_span(params->maybe_scores,
                               params->maybe_scores != nullptr ? params->n_scores : 0,
                               "maybe_scores");
    with_score_types(params->score, "params.score", [&](auto q, auto query_pos, auto k,
                                                        auto spans,
                                                        const pdrop::ScoreOptions& options) {
      std::int64_t n = 0;
      const bool par = params->score.maybe_parallel_for != nullptr;
      const CParallelFor pf{params->score.maybe_parallel_for, params->score.parallel_ctx};
      if (budget == pdrop::Budget::global)
        n = par ? pdrop::rank_and_drop_global(q, query_pos, k, spans, counts[0], ws->ws, out,
                                              new_spans, scores, options, pf)
                : pdrop::rank_and_drop_global(q, query_pos, k, spans, counts[0], ws->ws, out,
                                              new_spans, scores, options);
      else
        n = par ? pdrop::rank_and_drop(q, query_pos, k, spans, counts, ws->ws, out, new_spans,
                                       scores, options, pf)
                : pdrop::rank_and_drop(q, query_pos, k, spans, counts, ws->ws, out, new_spans,
                                       scores, options);
      *n_keep_out = n;
    });
  });
}

// ---- compaction ----

pdrop_status pdrop_compact_rows(pdrop_rows rows, const int64_t* keep, int64_t n_keep) {
  using namespace pdrop::detail::c_api;
  return guarded("pdrop_compact_rows", [&] {
    const auto k = c_span(keep, n_keep, "keep");
    with_type(rows.type, "rows", [&](auto t) {
      pdrop::compact_rows(rows_of<decltype(t)>(rows, "rows"), k);
    });
  });
}

pdrop_status pdrop_compact_heads(pdrop_heads kv, const int64_t* keep, int64_t n_keep) {
  using namespace pdrop::detail::c_api;
  return guarded("pdrop_compact_heads", [&] {
    const auto k = c_span(keep, n_keep, "keep");
    with_type(kv.type, "kv", [&](auto t) {
      pdrop::compact_heads(heads_of<decltype(t)>(kv), k);
    });
  });
}

pdrop_status pdrop_compact_positions(pdrop_rows positions, const int64_t* keep,
                                     int64_t n_keep, pdrop_position_mode mode,
                                     const int64_t* maybe_base) {
  using namespace pdrop::detail::c_api;
  return guarded("pdrop_compact_positions", [&] {
    const auto k = c_span(keep, n_keep, "keep");
    const pdrop::PositionMode m = mode_of(mode, "mode");
    const std::optional<std::int64_t> base =
        maybe_base != nullptr ? std::optional<std::int64_t>(*maybe_base) : std::nullopt;
    with_position_type(positions.type, "positions", [&](auto t) {
      pdrop::compact_positions(rows_of<decltype(t)>(positions, "positions"), k, m, base);
    });
  });
}

// ---- other strategies' drops ----

pdrop_v2drop_params pdrop_v2drop_default_params(void) {
  pdrop_v2drop_params p;
  std::memset(&p, 0, sizeof p);
  p.before.type = PDROP_TYPE_F32;
  p.after.type = PDROP_TYPE_F32;
  p.budget = PDROP_BUDGET_PER_SPAN;
  return p;
}

pdrop_status pdrop_v2drop_drop(pdrop_workspace* ws, const pdrop_v2drop_params* params,
                               int64_t* keep, int64_t keep_capacity, int64_t* n_keep_out) {
  using namespace pdrop::detail::c_api;
  return guarded("pdrop_v2drop_drop", [&] {
    const DropArgs a = drop_args(ws, params, keep, keep_capacity, n_keep_out);
    const pdrop::Budget budget = budget_of(params->budget, "params.budget");
    if (budget == pdrop::Budget::global && a.counts.size != 1)
      fail_c(PDROP_STATUS_SHAPE_ERROR, "n_keep_counts (", a.counts.size,
             ") must be 1 with PDROP_BUDGET_GLOBAL");
    const auto new_spans = c_new_spans(params->maybe_new_spans, params->n_spans);
    const auto scores = c_span(params->maybe_scores,
                               params->maybe_scores != nullptr ? params->n_scores : 0,
                               "maybe_scores");
    with_float_type(params->before.type, "before", [&](auto tb) {
      with_float_type(params->after.type, "after", [&](auto ta) {
        using Tb = decltype(tb);
        using Ta = decltype(ta);
        *n_keep_out = pdrop::v2drop_drop(rows_of<const Tb>(params->before, "before"),
                                         rows_of<const Ta>(params->after, "after"), a.query_pos,
                                         a.spans, budget, a.counts, ws->ws, a.keep, new_spans,
                                         scores);
      });
    });
  });
}

pdrop_random_params pdrop_random_default_params(void) {
  pdrop_random_params p;
  std::memset(&p, 0, sizeof p);
  return p;
}

pdrop_status pdrop_random_drop(pdrop_workspace* ws, const pdrop_random_params* params,
                               int64_t* keep, int64_t keep_capacity, int64_t* n_keep_out) {
  using namespace pdrop::detail::c_api;
  constexpr const char* fn = "pdrop_random_drop";
  return guarded(fn, [&] {
    const DropArgs a = drop_args(ws, params, keep, keep_capacity, n_keep_out);
    if (params->tokens < 0)
      fail_c(PDROP_STATUS_SHAPE_ERROR, "tokens (", params->tokens, ") must be >= 0");
    // drop_by_strategy checks these as "in.query_pos"; the C name first.
    pdrop::detail::check_query_positions(fn, "query_pos", a.query_pos, params->tokens);
    pdrop::DropInputs<float, float, float> in;
    in.query_pos = a.query_pos;
    in.seed = params->seed;
    *n_keep_out = pdrop::drop_by_strategy(pdrop::Strategy::random, params->tokens, in, a.spans,
                                          a.counts, ws->ws, a.keep,
                                          c_new_spans(params->maybe_new_spans, params->n_spans));
  });
}

pdrop_dart_params pdrop_dart_default_params(void) {
  pdrop_dart_params p;
  std::memset(&p, 0, sizeof p);
  p.k.type = PDROP_TYPE_F32;
  p.features.type = PDROP_TYPE_F32;
  p.pivots = pdrop::DartOptions{}.pivots;
  p.text_pivots = pdrop::DartOptions{}.text_pivots;
  p.pivot_norm = PDROP_PIVOT_NORM_L2;
  return p;
}

pdrop_status pdrop_dart_drop(pdrop_workspace* ws, const pdrop_dart_params* params,
                             int64_t* keep, int64_t keep_capacity, int64_t* n_keep_out) {
  using namespace pdrop::detail::c_api;
  constexpr const char* fn = "pdrop_dart_drop";
  return guarded(fn, [&] {
    const DropArgs a = drop_args(ws, params, keep, keep_capacity, n_keep_out);
    pdrop::DartOptions options;
    switch (params->pivot_norm) {
      case PDROP_PIVOT_NORM_L2: options.pivot_norm = pdrop::PivotNorm::l2; break;
      case PDROP_PIVOT_NORM_L1: options.pivot_norm = pdrop::PivotNorm::l1; break;
      default:
        fail_c(PDROP_STATUS_INVALID_ARGUMENT, "params.pivot_norm (",
               static_cast<int>(params->pivot_norm), ") is not a pdrop_pivot_norm");
    }
    // drop_by_strategy names these after its C++ arguments; the C names first.
    if (params->pivots < 1 || params->pivots > (std::int64_t{1} << 31))
      fail_c(PDROP_STATUS_VALUE_ERROR, "params.pivots (", params->pivots,
             ") must be in [1, 2^31]");
    if (params->text_pivots < 0 || params->text_pivots > (std::int64_t{1} << 31))
      fail_c(PDROP_STATUS_VALUE_ERROR, "params.text_pivots (", params->text_pivots,
             ") must be in [0, 2^31]");
    options.pivots = params->pivots;
    options.text_pivots = params->text_pivots;
    const std::int64_t tokens = params->k.tokens;
    if (tokens < 0) fail_c(PDROP_STATUS_SHAPE_ERROR, "k.tokens (", tokens, ") must be >= 0");
    pdrop::detail::check_query_positions(fn, "query_pos", a.query_pos, tokens);
    const bool own_features = params->features.data != nullptr || params->features.tokens != 0;
    const auto new_spans = c_new_spans(params->maybe_new_spans, params->n_spans);
    with_float_type(params->k.type, "k", [&](auto tk) {
      using Tk = decltype(tk);
      const auto run = [&](auto tf) {
        using Tf = decltype(tf);
        pdrop::DropInputs<float, Tk, Tf> in;
        in.k = heads_of<const Tk>(params->k);
        if (own_features) in.features = rows_of<const Tf>(params->features, "features");
        in.query_pos = a.query_pos;
        in.dart = options;
        *n_keep_out = pdrop::drop_by_strategy(pdrop::Strategy::dart, tokens, in, a.spans,
                                              a.counts, ws->ws, a.keep, new_spans);
      };
      if (own_features)
        with_float_type(params->features.type, "features", run);
      else
        run(float{});
    });
  });
}

// ---- sequences ----

pdrop_status pdrop_sequence_new(const pdrop_schedule* schedule, pdrop_rows positions,
                                const pdrop_image_span* spans, int64_t n_spans,
                                pdrop_sequence** out) {
  using namespace pdrop::detail::c_api;
  return guarded("pdrop_sequence_new", [&] {
    need(schedule, "schedule");
    need(out, "out");
    const auto s = c_spans(spans, n_spans, "spans");
    with_position_type(positions.type, "positions", [&](auto t) {
      using P = decltype(t);
      *out = new pdrop_sequence{
          pdrop::SequenceState(schedule->schedule, rows_of<const P>(positions, "positions"), s)};
    });
  });
}

void pdrop_sequence_free(pdrop_sequence* seq) { delete seq; }

pdrop_status pdrop_sequence_get_info(const pdrop_sequence* seq, pdrop_sequence_info* out) {
  using namespace pdrop::detail::c_api;
  return guarded("pdrop_sequence_get_info", [&] {
    need(seq, "seq");
    need(out, "out");
    const pdrop::SequenceState& s = seq->state;
    *out = pdrop_sequence_info{s.tokens(),          s.drops_applied(),
                               s.appended(),        s.position_rows(),
                               c_mode(s.position_mode()), s.base_position(),
                               s.prompt_next_position()};
  });
}

pdrop_status pdrop_sequence_spans(const pdrop_sequence* seq, int64_t stage,
                                  pdrop_image_span* out, int64_t capacity, int64_t* n_out) {
  using namespace pdrop::detail::c_api;
  return guarded("pdrop_sequence_spans", [&] {
    need(seq, "seq");
    need(n_out, "n_out");
    const auto dst = c_span(out, capacity, "out");
    const pdrop::span<const pdrop::ImageSpan> s = seq->state.spans(stage);
    if (capacity < s.size)
      fail_c(PDROP_STATUS_SHAPE_ERROR, "capacity (", capacity, ") must be >= the spans (",
             s.size, ")");
    for (std::int64_t i = 0; i < s.size; ++i) dst[i] = pdrop_image_span{s[i].start, s[i].length};
    *n_out = s.size;
  });
}

pdrop_status pdrop_sequence_keep_counts(const pdrop_sequence* seq, int64_t stage,
                                        pdrop_budget budget, int64_t* out, int64_t capacity,
                                        int64_t* n_out) {
  using namespace pdrop::detail::c_api;
  return guarded("pdrop_sequence_keep_counts", [&] {
    need(seq, "seq");
    need(n_out, "n_out");
    const pdrop::Budget b = budget_of(budget, "budget");
    const auto dst = c_span(out, capacity, "out");
    const std::int64_t n = b == pdrop::Budget::global ? 1 : seq->state.spans(0).size;
    if (capacity < n)
      fail_c(PDROP_STATUS_SHAPE_ERROR, "capacity (", capacity, ") must be >= ", n,
             b == pdrop::Budget::global ? " (one global count)" : " (one count per span)");
    *n_out = seq->state.keep_counts(stage, b, {dst.data, n});
  });
}

pdrop_status pdrop_sequence_apply_drop(pdrop_sequence* seq, const int64_t* keep,
                                       int64_t n_keep) {
  using namespace pdrop::detail::c_api;
  return guarded("pdrop_sequence_apply_drop", [&] {
    need(seq, "seq");
    seq->state.apply_drop(c_span(keep, n_keep, "keep"));
  });
}

pdrop_status pdrop_sequence_append(pdrop_sequence* seq, int64_t n) {
  using namespace pdrop::detail::c_api;
  return guarded("pdrop_sequence_append", [&] {
    need(seq, "seq");
    seq->state.append(n);
  });
}

pdrop_status pdrop_sequence_cache_length(const pdrop_sequence* seq, int64_t layer,
                                         int64_t* out) {
  using namespace pdrop::detail::c_api;
  return guarded("pdrop_sequence_cache_length", [&] {
    need(seq, "seq");
    need(out, "out");
    *out = seq->state.cache_length(layer);
  });
}

pdrop_status pdrop_sequence_position(const pdrop_sequence* seq, int64_t layer, int64_t step,
                                     int64_t* out) {
  using namespace pdrop::detail::c_api;
  return guarded("pdrop_sequence_position", [&] {
    need(seq, "seq");
    need(out, "out");
    *out = seq->state.position(layer, step);
  });
}

}  // extern "C"

#endif  // PDROP_C_API_IMPL_HPP
