// core/weight_view.hpp: the checks a typed view passes before any kernel reads it.
#include <catch2/catch.hpp>

#include <cstring>
#include <vector>

#include "tformer/core/convert.hpp"
#include "tformer/core/weight_view.hpp"

using Catch::Matchers::Contains;
using tformer::WeightType;
using tformer::WeightView;

TEST_CASE("core/weight_view: sizes, slices and f32 views", "[core][weight_view]") {
  std::vector<float> m(6 * 10);
  const WeightView f(tformer::MatrixView<const float>(m.data(), 4, 8, 10), "f");
  REQUIRE(f.type() == WeightType::f32);
  REQUIRE(f.row_stride() == 40);
  REQUIRE(f.extent_bytes() == 3 * 40 + 32);
  REQUIRE(f.row_slice(1, 2).row(0) == f.row(1));
  REQUIRE(f.f32().row_stride() == 10);
  REQUIRE(tformer::row_bytes(WeightType::q4_0, 64) == 36);
  REQUIRE(tformer::row_bytes(WeightType::q8_0, 64) == 68);
  REQUIRE(tformer::row_bytes(WeightType::bf16, 7) == 14);
  REQUIRE(std::string(tformer::type_name(WeightType::q4_0)) == "q4_0");
}

TEST_CASE("core/weight_view: malformed views are errors naming the tensor", "[core][weight_view]") {
  alignas(64) std::byte buf[4096] = {};
  REQUIRE_THROWS_WITH(tformer::check_weight_view("t", WeightView(WeightType::q8_0, buf, 2, 48, "attn_q")),
                      Contains("attn_q (q8_0) cols: expected a multiple of 32 (whole blocks), got 48"));
  REQUIRE_THROWS_WITH(tformer::check_weight_view("t", WeightView(WeightType::f32, buf + 2, 2, 8, "x")),
                      Contains("x (f32) alignment"));
  REQUIRE_THROWS_WITH(tformer::check_weight_view("t", WeightView(WeightType::bf16, buf, 2, 8, 15, "x")),
                      Contains("row_stride: expected >= 16 bytes"));
  REQUIRE_THROWS_WITH(tformer::check_weight_view("t", WeightView(WeightType::f16, nullptr, 2, 8, "x")),
                      Contains("data: expected a non-null pointer"));
  REQUIRE_THROWS_WITH(tformer::check_weight_view("t", WeightView(WeightType(9), buf, 2, 8, "x")),
                      Contains("type: expected f32, bf16, f16, q8_0 or q4_0, got 9"));
  REQUIRE_THROWS_WITH(tformer::check_weight_view("t", WeightView(WeightType::f32, buf, -1, 8, "x")),
                      Contains("shape: expected non-negative sizes"));
  tformer::check_weight_view("t", WeightView(WeightType::q4_0, buf + 2, 3, 64, "ok"));  // 2-aligned
  tformer::check_weight_view("t", WeightView(WeightType::f32, nullptr, 0, 8, "empty"));
}

TEST_CASE("core/weight_view: a view past its buffer and non-finite scales are errors",
          "[core][weight_view]") {
  std::vector<float> src(4 * 64, 0.25f);
  std::vector<std::byte> bytes(std::size_t(tformer::converted_bytes(WeightType::q4_0, 4, 64)));
  const WeightView w = tformer::convert_weights({src.data(), 4, 64}, WeightType::q4_0, bytes, "ffn_down");
  tformer::check_weight_within("load", w, bytes.data(), bytes.size());
  REQUIRE_THROWS_WITH(tformer::check_weight_within("load", w, bytes.data(), bytes.size() - 1),
                      Contains("ffn_down (q4_0) extent: expected 144 bytes inside a buffer of 143"));
  REQUIRE_THROWS_WITH(tformer::check_weight_within("load", w, bytes.data() + 1, bytes.size()),
                      Contains("before the start"));
  tformer::check_weight_scales("load", w);
  const tformer::f16 nan{0x7e00};
  std::memcpy(bytes.data() + 2 * 36 + 18, &nan, 2);  // row 2, block 1
  REQUIRE_THROWS_WITH(tformer::check_weight_scales("load", w),
                      Contains("ffn_down (q4_0) scale of row 2 block 1: expected a finite f16"));
}
