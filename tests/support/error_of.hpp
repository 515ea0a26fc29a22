// The message of the tformer::Error a call raises, for tests that check what it names.
#pragma once

#include <string>

#include "tformer/core/error.hpp"

namespace test {

// The message of the tformer::Error that `call` raises ("" if it raises none; any other
// exception escapes and fails the test).
template <class Call>
std::string error_of(Call&& call) {
  try {
    call();
  } catch (const tformer::Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace test
