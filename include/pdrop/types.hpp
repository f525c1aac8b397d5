// pdrop/types.hpp - pdrop's vocabulary, with the standard library only:
// non-owning strided views over a runtime's own buffers, image spans, the
// position mode and strategy of a drop, and parallel_for adapters.
//
// pdrop never allocates or copies the tensors a runtime already holds. The
// runtime describes its memory with one of these views and hands it over:
//
//   TokenView<T>  tokens x features, features contiguous, `row_stride`
//                 elements between consecutive tokens. Hidden states
//                 (T x D), positions (T x 1, or T x 3 for M-RoPE), labels,
//                 masks: anything with one row per token.
//   HeadView<T>   heads x tokens x dim, dim contiguous, explicit
//                 `head_stride` and `token_stride` (in elements). Queries and
//                 KV-cache rows in either layout runtimes use:
//                   HND (head-major):  head_stride = cap*dim, token_stride = dim
//                   NHD (token-major): head_stride = dim,     token_stride = heads*dim
//   span<T>       a plain (pointer, size) pair for 1-D inputs and outputs.
//
// Views are aggregates with no invariants of their own: every operator checks
// the views it receives (sizes >= 0, strides large enough, no null data with
// non-zero sizes, no int64 overflow of the extent) and names the argument in
// its error. The 16-bit float types (pdrop::half, pdrop::bfloat16) and the
// Eigen adapters are in pdrop/view.hpp.
#ifndef PDROP_TYPES_HPP
#define PDROP_TYPES_HPP

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <type_traits>
#include <utility>
#include <vector>

#include "pdrop/config.hpp"
#include "pdrop/errors.hpp"

PDROP_BEGIN_NAMESPACE

// A (pointer, size) pair, the C++17 stand-in for std::span.
template <class T>
struct span {
  T* data = nullptr;
  std::int64_t size = 0;

  constexpr span() = default;
  constexpr span(T* d, std::int64_t n) : data(d), size(n) {}
  // A braced list for a read-only parameter, as C++26's std::span
  // (P2447): from_lists(32, {8, 16, 24}, {0.5, 0.25, 0.125}). The list
  // lives until the end of the call's full expression: never keep the span.
  template <class U = T, class = std::enable_if_t<std::is_const_v<U>>>
  constexpr span(std::initializer_list<std::remove_const_t<T>> list)  // NOLINT: implicit
      : data(first(list)), size(static_cast<std::int64_t>(list.size())) {}
  template <class U, class A,
            class = std::enable_if_t<std::is_convertible_v<U*, T*>>>
  span(std::vector<U, A>& v)  // NOLINT: implicit by design
      : data(v.data()), size(static_cast<std::int64_t>(v.size())) {}
  template <class U, class A,
            class = std::enable_if_t<std::is_convertible_v<const U*, T*>>>
  span(const std::vector<U, A>& v)  // NOLINT: implicit by design
      : data(v.data()), size(static_cast<std::int64_t>(v.size())) {}
  template <class U,
            class = std::enable_if_t<!std::is_same_v<U, T> &&
                                     std::is_convertible_v<U*, T*>>>
  constexpr span(span<U> s) : data(s.data), size(s.size) {}  // NOLINT

  constexpr T& operator[](std::int64_t i) const { return data[i]; }

 private:
  // (Through a function: the span knowingly outlives nothing but the call.)
  template <class E>
  static constexpr const E* first(std::initializer_list<E> list) {
    return list.begin();
  }

 public:
  constexpr T* begin() const { return data; }
  constexpr T* end() const { return data + size; }
  constexpr bool empty() const { return size == 0; }
};

// tokens x features; element (t, f) is data[t * row_stride + f].
template <class T>
struct TokenView {
  T* data = nullptr;
  std::int64_t tokens = 0;
  std::int64_t features = 0;
  std::int64_t row_stride = 0;  // elements; >= features

  constexpr TokenView() = default;
  // row_stride < 0 means dense rows (row_stride = features).
  constexpr TokenView(T* d, std::int64_t n_tokens, std::int64_t n_features,
                      std::int64_t stride = -1)
      : data(d), tokens(n_tokens), features(n_features),
        row_stride(stride < 0 ? n_features : stride) {}
  template <class U,
            class = std::enable_if_t<!std::is_same_v<U, T> &&
                                     std::is_convertible_v<U*, T*>>>
  constexpr TokenView(const TokenView<U>& o)  // NOLINT: T -> const T
      : data(o.data), tokens(o.tokens), features(o.features),
        row_stride(o.row_stride) {}

  constexpr T* row(std::int64_t t) const { return data + t * row_stride; }
};

// heads x tokens x dim; element (h, t, i) is
// data[h * head_stride + t * token_stride + i].
template <class T>
struct HeadView {
  T* data = nullptr;
  std::int64_t heads = 0;
  std::int64_t tokens = 0;
  std::int64_t dim = 0;
  std::int64_t head_stride = 0;   // elements
  std::int64_t token_stride = 0;  // elements

  constexpr HeadView() = default;
  constexpr HeadView(T* d, std::int64_t n_heads, std::int64_t n_tokens,
                     std::int64_t n_dim, std::int64_t h_stride,
                     std::int64_t t_stride)
      : data(d), heads(n_heads), tokens(n_tokens), dim(n_dim),
        head_stride(h_stride), token_stride(t_stride) {}
  template <class U,
            class = std::enable_if_t<!std::is_same_v<U, T> &&
                                     std::is_convertible_v<U*, T*>>>
  constexpr HeadView(const HeadView<U>& o)  // NOLINT: T -> const T
      : data(o.data), heads(o.heads), tokens(o.tokens), dim(o.dim),
        head_stride(o.head_stride), token_stride(o.token_stride) {}

  constexpr T* row(std::int64_t h, std::int64_t t) const {
    return data + h * head_stride + t * token_stride;
  }
};

// The view factories. Each takes its sizes as named types, always in the
// view's order (heads, tokens, dim) and the capacity of a head-major
// buffer always given: a size in the wrong place, or a forgotten
// capacity, is a compile error rather than rows read silently from the
// wrong place.
//
//   pdrop::hnd_view(k, pdrop::Heads{Hkv}, pdrop::Tokens{T}, pdrop::Dim{d},
//                   pdrop::Capacity{n_ctx})      // [Hkv][n_ctx][d] cache
//   pdrop::nhd_view(k, pdrop::Heads{Hkv}, pdrop::Tokens{T}, pdrop::Dim{d})
//                                                // [T][Hkv][d] rows
//
// The plain-integer forms further down take the sizes in the buffer's
// memory order instead (hnd_view: heads, tokens, dim, capacity; nhd_view:
// tokens, heads, dim); they stay for existing callers.
struct Heads {
  std::int64_t n;
};
struct Tokens {
  std::int64_t n;
};
struct Dim {
  std::int64_t n;
};
struct Capacity {
  std::int64_t n;
};

// Head-major [heads][capacity][dim] buffer holding `tokens` valid rows per
// head (capacity >= tokens rows allocated per head). llama.cpp-style
// per-layer caches and PyTorch's (B=1, H, T, d) tensors look like this.
template <class T>
constexpr HeadView<T> hnd_view(T* data, Heads heads, Tokens tokens, Dim dim,
                               Capacity capacity) {
  return HeadView<T>(data, heads.n, tokens.n, dim.n, capacity.n * dim.n, dim.n);
}

// Token-major [tokens][heads][dim] buffer: the output of a fused QKV
// projection viewed per head, or (T, H, d) caches of serving engines.
template <class T>
constexpr HeadView<T> nhd_view(T* data, Heads heads, Tokens tokens, Dim dim) {
  return HeadView<T>(data, heads.n, tokens.n, dim.n, dim.n, heads.n * dim.n);
}

// hnd_view with plain integers in memory order; capacity < 0 means
// capacity = tokens (a buffer without spare rows).
template <class T>
constexpr HeadView<T> hnd_view(T* data, std::int64_t heads, std::int64_t tokens,
                               std::int64_t dim, std::int64_t capacity = -1) {
  return hnd_view(data, Heads{heads}, Tokens{tokens}, Dim{dim},
                  Capacity{capacity < 0 ? tokens : capacity});
}

// nhd_view with plain integers in memory order (tokens, heads, dim).
template <class T>
constexpr HeadView<T> nhd_view(T* data, std::int64_t tokens, std::int64_t heads,
                               std::int64_t dim) {
  return nhd_view(data, Heads{heads}, Tokens{tokens}, Dim{dim});
}

// Per-head view of token rows that hold `heads` heads side by side
// (tokens x heads*dim, e.g. the output of a q or k projection, or one slice
// of a fused QKV row): an NHD view with token_stride = rows.row_stride.
// Throws shape_error when rows.features is not a multiple of heads.
template <class T>
HeadView<T> split_heads(TokenView<T> rows, std::int64_t heads) {
  if (heads <= 0 || rows.features % heads != 0)
    detail::fail<shape_error>("pdrop::split_heads", "rows.features (",
                              rows.features, ") must be a positive multiple "
                              "of heads (", heads, ")");
  const std::int64_t dim = rows.features / heads;
  return HeadView<T>(rows.data, heads, rows.tokens, dim, dim, rows.row_stride);
}

// Image tokens [start, start + length) of a sequence.
struct ImageSpan {
  std::int64_t start = 0;
  std::int64_t length = 0;
  constexpr std::int64_t end() const { return start + length; }
};

// How positions follow a drop (pdrop/compact.hpp: compact_positions).
enum class PositionMode {
  reindex,        // positions become 0..T_new-1 (reference default)
  keep_original,  // positions move with their tokens
};

// Which method picks the image tokens a drop keeps. All run on pdrop's
// operators (score -> select -> keep list -> compact):
//   pyramid_drop  PyramidDrop (Xing et al., CVPR 2025, arXiv 2410.17247):
//                 attention of the last instruction token, computed from the
//                 next layer's q/k; positions re-indexed.
//   fastv         FastV (Chen et al., ECCV 2024, arXiv 2403.06764): one drop
//                 after layer K by the last token's attention averaged over
//                 heads (of the layer that just ran); original positions.
//   vtw           Visual Tokens Withdrawal (Lin et al., AAAI 2025, arXiv
//                 2405.05803): every image token withdrawn after layer K;
//                 original positions.
//   dart          DART (Wen et al., arXiv 2502.11494): attention-free, keeps
//                 pivots and the tokens least similar to them; original
//                 positions (pdrop/dart.hpp).
//   random        a seeded uniform subset per span, a baseline; positions
//                 re-indexed like PyramidDrop, which it is a control for.
//   v2drop        V2Drop (Chen et al., CVPR 2026, arXiv 2509.01552):
//                 attention-free, progressive; keeps the image tokens whose
//                 hidden states the last layer changed most (L2 norm of the
//                 difference); original positions (pdrop/v2drop.hpp).
// The values are stable (replay cases store them): a new strategy is
// appended.
enum class Strategy { pyramid_drop, fastv, vtw, dart, random, v2drop };

// The position mode each strategy's reference code uses.
constexpr PositionMode default_position_mode(Strategy s) {
  return (s == Strategy::fastv || s == Strategy::vtw || s == Strategy::dart ||
          s == Strategy::v2drop)
             ? PositionMode::keep_original
             : PositionMode::reindex;
}

// Runs fn(i) for i = 0 .. n-1 in order on the calling thread: the
// parallel_for of the single-threaded path.
struct SerialFor {
  template <class F>
  void operator()(std::int64_t n, F&& fn) const {
    for (std::int64_t i = 0; i < n; ++i) fn(i);
  }
};

#if defined(_OPENMP)
// A parallel_for over OpenMP's threads (built with -fopenmp).
struct OpenMPFor {
  template <class F>
  void operator()(std::int64_t n, F&& fn) const {
#pragma omp parallel for schedule(static)
    for (std::int64_t i = 0; i < n; ++i) fn(i);
  }
};
#endif

PDROP_END_NAMESPACE

#endif  // PDROP_TYPES_HPP
