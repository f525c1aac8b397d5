// pdrop/errors.hpp - the exceptions every pdrop operator throws.
//
// Every operator validates all of its arguments before it writes anything.
// A rejected call throws pdrop::invalid_argument (derived from
// std::invalid_argument) whose message names the function, the argument and
// the value it got, and leaves every buffer it was handed unchanged.
#ifndef PDROP_ERRORS_HPP
#define PDROP_ERRORS_HPP

#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <sstream>
#include <stdexcept>
#include <string>
#include <type_traits>
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

// ---- without exceptions (-fno-exceptions) ----
//
// Built without exceptions, pdrop reports an error it would throw by
// calling the error handler with the error's kind ("shape_error",
// "value_error" or "invalid_argument") and the same message the exception
// would carry, then calls std::abort() if the handler returns. The default
// handler (none installed) writes "pdrop: <kind>: <message>" to stderr. An
// engine installs its own to route the message to its log; pdrop aborts
// when it returns. It must not longjmp out: that would skip the
// destructors of the frames in between. For a status code instead, call the C API (pdrop/c_api.h),
// whose library is compiled with exceptions and returns a pdrop_status and
// the same message. The handler is shared by all threads; set it before
// starting them. With exceptions it is never called. (fmt and
// nlohmann/json do the same: FMT_THROW, JSON_THROW.)
using error_handler = void (*)(const char* kind, const char* message);

namespace detail {
inline error_handler& installed_error_handler() {
  static error_handler handler = nullptr;
  return handler;
}
}  // namespace detail

// Installs `handler` (nullptr: the default); returns the previous one.
inline error_handler set_error_handler(error_handler handler) {
  error_handler previous = detail::installed_error_handler();
  detail::installed_error_handler() = handler;
  return previous;
}

namespace detail {

template <class... Parts>
std::string concat(Parts&&... parts) {
  std::ostringstream os;
  (os << ... << std::forward<Parts>(parts));
  return os.str();
}

// The public function the caller called, while one that calls other
// public operators runs (CalledAs); errors are named after it.
inline const char*& outer_call() {
  thread_local const char* name = nullptr;
  return name;
}

// While it lives, every error raised on this thread is named after `fn`
// rather than the inner operator that found it (pdrop::Pruner::drop calls
// rank_and_drop: its errors say "pdrop::Pruner::drop: ..."). An outer
// CalledAs wins over an inner one.
class CalledAs {
 public:
  explicit CalledAs(const char* fn) : owner_(outer_call() == nullptr) {
    if (owner_) outer_call() = fn;
  }
  ~CalledAs() {
    if (owner_) outer_call() = nullptr;
  }
  CalledAs(const CalledAs&) = delete;
  CalledAs& operator=(const CalledAs&) = delete;

 private:
  bool owner_;
};

// Throws Error with "fn: part part part..." (fn: the outer call's name when
// there is one). Kept out of line of the hot loops: callers write
// `if (bad) detail::fail<shape_error>(...)`.
template <class Error = invalid_argument, class... Parts>
[[noreturn]] void fail(const char* fn, Parts&&... parts) {
  if (const char* outer = outer_call()) fn = outer;
#if PDROP_EXCEPTIONS
  throw Error(concat(fn, ": ", std::forward<Parts>(parts)...));
#else
  const char* kind = std::is_same_v<Error, shape_error>   ? "shape_error"
                     : std::is_same_v<Error, value_error> ? "value_error"
                                                          : "invalid_argument";
  const std::string message = concat(fn, ": ", std::forward<Parts>(parts)...);
  if (error_handler handler = installed_error_handler())
    handler(kind, message.c_str());
  else
    std::fprintf(stderr, "pdrop: %s: %s\n", kind, message.c_str());
  std::abort();
#endif
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
