// tformer::Error and the checks that public entry points use to report bad arguments.
//
// Every message names the function, the parameter, what was expected and what was given:
//   "apply_rope: q.head_dim: expected an even number <= 128, got 127"
// Defining TFORMER_NO_EXCEPTIONS turns a failed check into print-to-stderr and abort().
#pragma once

#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>

#include "tformer/core/arch.hpp"

namespace tformer {

// The one exception type the library throws; outside the instruction-set namespace (see
// core/arch.hpp) so that one catch clause serves every translation unit.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

inline namespace TFORMER_ARCH_NS {
namespace detail {

[[noreturn]] inline void fail(const std::string& message) {
#ifdef TFORMER_NO_EXCEPTIONS
  std::fprintf(stderr, "tformer error: %s\n", message.c_str());
  std::abort();
#else
  throw Error(message);
#endif
}

template <class Expected, class Given>
[[noreturn]] void fail_check(std::string_view where, std::string_view what,
                             const Expected& expected, const Given& given) {
  std::ostringstream s;
  s << where << ": " << what << ": expected " << expected << ", got " << given;
  fail(s.str());
}

}  // namespace detail

// Throws unless `condition`; `expected` describes the valid values ("<= 128", "an even number").
template <class Expected, class Given>
void check(bool condition, std::string_view where, std::string_view what, const Expected& expected,
           const Given& given) {
  if (!condition) [[unlikely]]
    detail::fail_check(where, what, expected, given);
}

// Throws unless given == expected.
template <class T, class U>
void check_eq(std::string_view where, std::string_view what, const T& expected, const U& given) {
  if (!(given == expected)) [[unlikely]]
    detail::fail_check(where, what, expected, given);
}

// Throws unless 0 <= value < bound (a valid index into something of size `bound`).
template <class T, class U>
void check_index(std::string_view where, std::string_view what, const T& value, const U& bound) {
  if (value < 0 || !(value < bound)) [[unlikely]] {
    std::ostringstream expected;
    expected << "a value in [0, " << bound << ")";
    detail::fail_check(where, what, expected.str(), value);
  }
}

}  // namespace TFORMER_ARCH_NS
}  // namespace tformer
