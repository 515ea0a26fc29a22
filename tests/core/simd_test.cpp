#include <catch2/catch.hpp>

#include <string>

#include "tformer/core/simd.hpp"

TEST_CASE("core/simd: the kernels' namespace names the compiled instruction set", "[core]") {
  const std::string name = tformer::simd::arch_name;
#if defined(TFORMER_SIMD_SCALAR)
  CHECK(name == "scalar");
  CHECK(tformer::simd::lanes == 1);
  CHECK(TFORMER_HAS_SIMD == 0);
#elif TFORMER_HAS_SIMD
  CHECK(name != "scalar");
  CHECK(tformer::simd::lanes * sizeof(float) == tformer::simd::arch::alignment());
  // The chosen architecture is one the compiler flags enable (and xsimd agrees).
  CHECK(tformer::simd::arch::supported());
  CHECK(tformer::simd::arch::version() <= xsimd::default_arch::version());
  WARN("kernels compiled for " << name << " (" << tformer::simd::arch::name() << "), "
                               << tformer::simd::lanes << " floats per register");
#endif
}
