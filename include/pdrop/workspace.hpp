// pdrop/workspace.hpp - reusable scratch memory for the operators.
//
// Scoring and selection need a little scratch space (logits for one kv-head
// group, running sums, selection keys). A Workspace owns it and only ever grows:
// size it once with reserve() for the largest shape a runtime will
// see, then every later call on shapes up to that size allocates nothing.
// One Workspace per thread; it is not shared state of any operator.
#ifndef PDROP_WORKSPACE_HPP
#define PDROP_WORKSPACE_HPP

#include <cstddef>
#include <cstdint>
#include <vector>

#include "pdrop/config.hpp"
#include "pdrop/detail/std.hpp"

PDROP_BEGIN_NAMESPACE
class Workspace {
 public:
  Workspace() = default;

  // Bytes held now.
  std::size_t bytes() const {
    return (scratch_.capacity() + scores_.capacity()) * sizeof(float) +
           keys_.capacity() * sizeof(std::uint64_t) +
           (indices_.capacity() + faults_.capacity() + forced_.capacity()) *
               sizeof(std::int64_t) +
           keys32_.capacity() * sizeof(std::uint32_t);
  }

  // Sizes everything rank_and_drop (and so score_image_tokens and
  // select_top_k) needs for inputs up to these sizes: q_heads query heads
  // over kv_heads kv heads, `queries` query rows, `tokens` keys, head dim
  // `dim`, `image_tokens` scored tokens over all spans.
  void reserve(std::int64_t q_heads, std::int64_t kv_heads, std::int64_t queries,
               std::int64_t tokens, std::int64_t dim, std::int64_t image_tokens) {
    const std::int64_t group = kv_heads > 0 ? q_heads / kv_heads : 0;
    scratch(as_size(score_floats(group * queries, tokens, dim, image_tokens)));
    forced(as_size(queries));
    reserve_select(image_tokens);
  }

  // As reserve, for the overloads that take a parallel_for and for
  // score_partial_by_kv_head: every kv-head group gets its own slice
  // (kv_heads slices of one group's scratch).
  void reserve_parallel(std::int64_t q_heads, std::int64_t kv_heads,
                        std::int64_t queries, std::int64_t tokens, std::int64_t dim,
                        std::int64_t image_tokens) {
    const std::int64_t group = kv_heads > 0 ? q_heads / kv_heads : 0;
    scratch(as_size(
        score_floats(group * queries, tokens, dim, image_tokens, kv_heads)));
    faults(as_size(2 * kv_heads));
    forced(as_size(queries));
    reserve_select(image_tokens);
  }

  // Floats score_image_tokens uses for `rows` query rows per kv head.
  static std::int64_t score_floats(std::int64_t rows, std::int64_t tokens,
                                   std::int64_t dim, std::int64_t image_tokens) {
    return score_floats(rows, tokens, dim, image_tokens, 1);
  }
  // ... with `slots` kv-head groups in flight at once (the parallel_for
  // overloads and score_partial_by_kv_head use one per kv head): 64 bytes
  // of alignment slack, the running sums, and per slot the group's query
  // rows as float, one logits row per query row and the group's partial
  // sums; or, for ScorePrecision's chain modes (pdrop/score.hpp) when that
  // is more, one logits row and the group's rounded probabilities (rows x
  // image tokens; on one thread, the per-query-row sums over heads fit in
  // the same room).
  static std::int64_t score_floats(std::int64_t rows, std::int64_t tokens,
                                   std::int64_t dim, std::int64_t image_tokens,
                                   std::int64_t slots) {
    return 16 + pad16(image_tokens) +
           slots * score_slot_floats(rows, tokens, dim, image_tokens);
  }
  static std::int64_t score_slot_floats(std::int64_t rows, std::int64_t tokens,
                                        std::int64_t dim, std::int64_t image_tokens) {
    const std::int64_t fp32 = pad16(rows * dim) + pad16(rows * tokens) + pad16(image_tokens);
    const std::int64_t chain = pad16(tokens) + pad16(rows * image_tokens);
    return fp32 > chain ? fp32 : chain;
  }

  // Internal buffers, each at least n long, growing only when needed:
  // scratch (score kernel), scores and indices (rank_and_drop), keys and
  // keys32 (select_top_k), faults (parallel scoring), forced (the query
  // tokens inside image spans that a drop keeps).
  float* scratch(std::size_t n) { return grow(scratch_, n); }
  float* scores(std::size_t n) { return grow(scores_, n); }
  std::uint64_t* keys(std::size_t n) { return grow(keys_, n); }
  std::uint32_t* keys32(std::size_t n) { return grow(keys32_, n); }
  std::int64_t* indices(std::size_t n) { return grow(indices_, n); }
  std::int64_t* faults(std::size_t n) { return grow(faults_, n); }
  std::int64_t* forced(std::size_t n) { return grow(forced_, n); }

 private:
  template <class T>
  static T* grow(detail::vector<T>& v, std::size_t n) {
    if (v.size() < n) v.resize(n);
    return v.data();
  }
  static std::size_t as_size(std::int64_t n) {
    return n > 0 ? static_cast<std::size_t>(n) : 0;
  }
  static std::int64_t pad16(std::int64_t n) { return (n + 15) / 16 * 16; }
  void reserve_select(std::int64_t image_tokens) {
    scores(as_size(image_tokens));
    keys(as_size(image_tokens));
    keys32(as_size(image_tokens));
    indices(as_size(image_tokens));
  }

  detail::vector<float> scratch_;
  detail::vector<float> scores_;
  detail::vector<std::uint64_t> keys_;
  detail::vector<std::int64_t> indices_;
  detail::vector<std::int64_t> faults_;
  detail::vector<std::int64_t> forced_;
  detail::vector<std::uint32_t> keys32_;
};

PDROP_END_NAMESPACE

#endif  // PDROP_WORKSPACE_HPP
