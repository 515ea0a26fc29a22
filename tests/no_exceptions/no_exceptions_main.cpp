// Built with -fno-exceptions and TFORMER_NO_EXCEPTIONS: a failed check must print its message
// and abort (ctest matches the message). Passing checks must cost nothing.
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "tformer/rope/apply.hpp"

int main() {
  // abort() is the expected end; turn it into exit code 42 so ctest reads the output as usual.
  std::signal(SIGABRT, [](int) { std::_Exit(42); });
  tformer::RopeTable table(tformer::RopeConfig{.rotary_dim = 8, .max_positions = 16});
  std::vector<float> x(2 * 8, 1.0f);
  tformer::apply_rope_inplace<tformer::RopeLayout::RotateHalf>(
      table, tformer::HeadsView<float>(x.data(), 2, 1, 8), tformer::Positions::offset(0));
  std::fputs("valid call returned\n", stderr);
  tformer::apply_rope_inplace<tformer::RopeLayout::RotateHalf>(
      table, tformer::HeadsView<float>(x.data(), 2, 1, 8), tformer::Positions::offset(15));
  std::fputs("unreachable: the invalid call returned\n", stderr);
  return 0;
}
