// pdrop/errors.hpp - the exceptions every pdrop operator throws.
//
// Every operator validates all of its arguments before it writes anything.
// A rejected call throws pdrop::invalid_argument (derived from
// std::invalid_argument) whose message names the function, the argument and
// the value it got, and leaves every buffer it was handed unchanged.
#ifndef PDROP_ERRORS_HPP
#define PDROP_ERRORS_HPP

#include <cstddef>
#include <cstring>
#include <exception>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

#include "pdrop/config.hpp"

PDROP_BEGIN_NAMESPACE

// Base of every error pdrop reports for bad input.
class invalid_argument : public std::invalid_argument {
 public:
  explicit invalid_argument(const std::string& what_arg)
      : std::invalid_argument(what_arg) {}
};

// Shapes, strides or sizes that do not fit together.
class shape_error : public invalid_argument {
 public:
  using invalid_argument::invalid_argument;
};

// Values that are out of range or not finite (scores, ratios, indices).
class value_error : public invalid_argument {
 public:
  using invalid_argument::invalid_argument;
};

namespace detail {

template <class... Parts>
std::string concat(Parts&&... parts) {
  std::ostringstream os;
  (os << ... << std::forward<Parts>(parts));
  return os.str();
}

// Throws Error with "fn: part part part...". Kept out of line of the hot
// loops: callers write `if (bad) detail::fail<shape_error>(...)`.
template <class Error = invalid_argument, class... Parts>
[[noreturn]] void fail(const char* fn, Parts&&... parts) {
  throw Error(concat(fn, ": ", std::forward<Parts>(parts)...));
}

// e's message without a leading "fn: " (a batch call names itself once, then
// the sequence).
inline const char* without_prefix(const char* fn, const std::exception& e) {
  const char* w = e.what();
  const std::size_t n = std::strlen(fn);
  return std::strncmp(w, fn, n) == 0 && w[n] == ':' && w[n + 1] == ' ' ? w + n + 2 : w;
}

}  // namespace detail
PDROP_END_NAMESPACE

#endif  // PDROP_ERRORS_HPP
