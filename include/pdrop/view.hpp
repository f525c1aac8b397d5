// pdrop/view.hpp - the element types pdrop does math on, and views over
// Eigen objects; includes Eigen and pdrop/types.hpp (the views themselves).
//
// Element types for tensors that take part in math: float, pdrop::half
// (Eigen::half) and pdrop::bfloat16 (Eigen::bfloat16); math always
// accumulates in float. Compaction moves any trivially copyable type.
#ifndef PDROP_VIEW_HPP
#define PDROP_VIEW_HPP

#include <Eigen/Core>

#include "pdrop/config.hpp"
#include "pdrop/errors.hpp"
#include "pdrop/types.hpp"

#include <cstddef>
#include <cstdint>
#include <type_traits>
#include <utility>
#include <vector>

PDROP_BEGIN_NAMESPACE

using half = Eigen::half;
using bfloat16 = Eigen::bfloat16;

// True for the element types pdrop does math on.
template <class T>
inline constexpr bool is_float_type_v =
    std::is_same_v<std::remove_cv_t<T>, float> ||
    std::is_same_v<std::remove_cv_t<T>, half> ||
    std::is_same_v<std::remove_cv_t<T>, bfloat16>;

namespace detail {
template <class M>
using eigen_elem_t =
    std::remove_pointer_t<decltype(std::declval<std::remove_reference_t<M>&>().data())>;
template <class M>
inline constexpr bool is_eigen_dense_v = std::is_base_of_v<
    Eigen::DenseBase<std::decay_t<M>>, std::decay_t<M>>;
}  // namespace detail

// TokenView over an Eigen object with direct access (Matrix, Map, Ref, a
// block of them) whose rows are tokens. Row-major storage is required (a
// compile-time check), except for a single column (a vector of per-token
// integers), whose inner stride then becomes the row stride. The view is
// const when the object is.
template <class M, class = std::enable_if_t<detail::is_eigen_dense_v<M>>>
auto rows_as_tokens(M&& m) {
  using D = std::decay_t<M>;
  using Elem = detail::eigen_elem_t<M>;
  if constexpr (D::ColsAtCompileTime == 1) {
    return TokenView<Elem>(m.data(), m.rows(), 1, m.innerStride());
  } else {
    static_assert(D::IsRowMajor,
                  "pdrop::rows_as_tokens needs row-major storage (features "
                  "contiguous per token); use cols_as_tokens for column-major");
    return TokenView<Elem>(m.data(), m.rows(), m.cols(), m.outerStride());
  }
}

// TokenView over a column-major Eigen object whose columns are tokens
// (features x tokens, Eigen's default storage order); a single row (one
// scalar per token) may have any storage, its inner stride is the row stride.
template <class M, class = std::enable_if_t<detail::is_eigen_dense_v<M>>>
auto cols_as_tokens(M&& m) {
  using D = std::decay_t<M>;
  using Elem = detail::eigen_elem_t<M>;
  if constexpr (D::RowsAtCompileTime == 1) {  // a row of per-token scalars
    return TokenView<Elem>(m.data(), m.cols(), 1, m.innerStride());
  } else {
    static_assert(!D::IsRowMajor, "pdrop::cols_as_tokens needs column-major storage");
    return TokenView<Elem>(m.data(), m.cols(), m.rows(), m.outerStride());
  }
}

PDROP_END_NAMESPACE

#endif  // PDROP_VIEW_HPP
