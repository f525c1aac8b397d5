// pdrop/detail/std.hpp - standard containers and comparators under pdrop
// names.
//
// A std template instantiated only on built-in types (std::vector<float>,
// std::sort of int64_t* with std::less) is the same symbol in every TU of a
// program, whatever each TU's -m flags, and the linker keeps one copy: a
// baseline TU could run the copy a -mavx2 TU compiled. Instantiated on a
// pdrop type, it is named in pdrop's inline namespace (pdrop/config.hpp)
// and so is per CPU level like the rest of pdrop. tests/link/ checks that
// two such TUs running a drop share no external symbol at all (optimised
// builds; pdrop/config.hpp says what is not covered).
#ifndef PDROP_DETAIL_STD_HPP
#define PDROP_DETAIL_STD_HPP

#include <cstddef>
#include <memory>
#include <vector>

#include "pdrop/config.hpp"

PDROP_BEGIN_NAMESPACE
namespace detail {

// std::allocator under a pdrop name.
template <class T>
struct allocator {
  using value_type = T;
  allocator() = default;
  template <class U>
  constexpr allocator(const allocator<U>&) noexcept {}  // NOLINT: rebinding
  T* allocate(std::size_t n) { return std::allocator<T>().allocate(n); }
  void deallocate(T* p, std::size_t n) noexcept { std::allocator<T>().deallocate(p, n); }
  friend constexpr bool operator==(allocator, allocator) noexcept { return true; }
  friend constexpr bool operator!=(allocator, allocator) noexcept { return false; }
};

// A std::vector of pdrop's own.
template <class T>
using vector = std::vector<T, allocator<T>>;

// std::less<> and std::greater<> under pdrop names, for std::sort and
// std::nth_element over built-in types.
struct less {
  template <class T>
  constexpr bool operator()(const T& a, const T& b) const {
    return a < b;
  }
};
struct greater {
  template <class T>
  constexpr bool operator()(const T& a, const T& b) const {
    return b < a;
  }
};

}  // namespace detail
PDROP_END_NAMESPACE

#endif  // PDROP_DETAIL_STD_HPP
