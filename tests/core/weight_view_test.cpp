// core/weight_view.hpp: the checks a typed view passes before any kernel reads it.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
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
  REQUIRE_THROWS_WITH(
      tformer::check_weight_view("t", WeightView(WeightType(9), buf, 2, 8, "x")),
      Contains("type: expected f32, bf16, f16, q8_0, q4_0, q8_group, q4_0x16 or q8_0x16, got 9"));
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

TEST_CASE("core/weight_view: q8_group keeps its scales apart, per row and per slice",
          "[core][weight_view]") {
  // [3, 8] int8, groups of 4: two scales per row; value (r, c) = q · scales[r·2 + c/4].
  std::vector<std::int8_t> q(24);
  for (int i = 0; i < 24; ++i) q[std::size_t(i)] = std::int8_t(i - 12);
  const std::vector<float> scales = {0.5f, 1, 2, 4, 8, 16};
  const WeightView w = WeightView::q8_group(q.data(), scales.data(), 4, 3, 8, "wq");
  tformer::check_weight_view("t", w);
  REQUIRE(w.extent_bytes() == 24);
  REQUIRE(w.scales_extent_bytes() == 24);
  const WeightView tail = w.row_slice(1, 2);
  REQUIRE(tail.group() == 4);
  std::vector<float> row(8);
  tformer::dequantize_row(tail, 1, row);  // row 2 of w
  for (int c = 0; c < 8; ++c) REQUIRE(row[std::size_t(c)] == float(16 + c - 12) * scales[std::size_t(4 + c / 4)]);
  // Errors: a group that does not divide cols, no scales, scales past the buffer, a NaN scale.
  REQUIRE_THROWS_WITH(tformer::check_weight_view("t", WeightView::q8_group(q.data(), scales.data(), 3, 3, 8, "wq")),
                      Contains("wq (q8_group) group: expected a divisor of cols (8), got 3"));
  REQUIRE_THROWS_WITH(tformer::check_weight_view("t", WeightView::q8_group(q.data(), nullptr, 4, 3, 8, "wq")),
                      Contains("wq (q8_group) scales: expected a non-null pointer"));
  REQUIRE_THROWS_WITH(tformer::check_weight_within("load", w, scales.data(), 20),
                      Contains("wq (q8_group) extent"));
  std::vector<std::byte> file(24 + 20);
  std::memcpy(file.data(), q.data(), 24);
  const WeightView in_file = WeightView::q8_group(reinterpret_cast<const std::int8_t*>(file.data()),
                                                  reinterpret_cast<const float*>(file.data() + 24), 4, 3, 8, "wq");
  REQUIRE_THROWS_WITH(tformer::check_weight_within("load", in_file, file.data(), file.size()),
                      Contains("wq (q8_group) scales extent: expected 24 bytes inside a buffer of 44"));
  auto bad = scales;
  bad[3] = INFINITY;
  REQUIRE_THROWS_WITH(tformer::check_weight_scales("load", WeightView::q8_group(q.data(), bad.data(), 4, 3, 8, "wq")),
                      Contains("wq (q8_group) scale of row 1 group 1: expected a finite f32, got inf"));
  tformer::check_weight_scales("load", w);
  // Not a conversion target: its scales live apart.
  std::vector<float> src(8, 1.0f);
  std::vector<std::byte> out(8);
  REQUIRE_THROWS_WITH(
      tformer::convert_weights({src.data(), 1, 8}, WeightType::q8_group, out),
      Contains(
          "type: expected f32, bf16, f16, q8_0, q4_0, q4_0x16 or q8_0x16 (a packed type), got "
          "q8_group"));
}

TEST_CASE("core/weight_view: the x16 types store groups of 16 rows, and slices start on a group",
          "[core][weight_view]") {
  // [19, 64]: two groups (the second padded) of 2 blocks × 288 (q4_0x16) or 544 bytes (q8_0x16).
  const WeightType type = GENERATE(WeightType::q4_0x16, WeightType::q8_0x16);
  const std::string name = tformer::type_name(type);
  CAPTURE(name);
  const tformer::index block = type == WeightType::q4_0x16 ? 288 : 544, group = 2 * block;
  std::vector<float> src(19 * 64);
  for (std::size_t i = 0; i < src.size(); ++i) src[i] = float(int(i % 29) - 14) * 0.01f;
  std::vector<std::byte> bytes(std::size_t(tformer::converted_bytes(type, 19, 64)));
  REQUIRE(bytes.size() == std::size_t(2 * group));
  const WeightView w = tformer::convert_weights({src.data(), 19, 64}, type, bytes, "ffn_up");
  REQUIRE(w.row_stride() == group);
  REQUIRE(w.stored_rows() == 2);
  REQUIRE(w.extent_bytes() == 2 * group);
  REQUIRE(w.activations() == tformer::Activations::int8);
  tformer::check_weight_within("load", w, bytes.data(), bytes.size());
  REQUIRE_THROWS_WITH(tformer::check_weight_within("load", w, bytes.data(), bytes.size() - 1),
                      Contains("ffn_up (" + name + ") extent: expected " +
                               std::to_string(2 * group) + " bytes inside a buffer of " +
                               std::to_string(2 * group - 1)));
  const WeightView tail = w.row_slice(16, 3);
  tformer::check_weight_view("t", tail);
  REQUIRE(tail.row_group(0) == w.row_group(1));
  REQUIRE(tail.extent_bytes() == group);
  // A slice of a slice counts from the first view's group: rows 8 + 8 = 16 on are group 1.
  const WeightView inner = w.row_slice(8, 11).row_slice(8, 3);
  tformer::check_weight_view("t", inner);
  REQUIRE(inner.row_group(0) == w.row_group(1));
  REQUIRE(w.row_slice(8, 11).first_lane() == 8);
  REQUIRE_THROWS_WITH(tformer::check_weight_view("t", w.row_slice(5, 11)),
                      Contains("ffn_up (" + name +
                               ") row_slice start: expected a multiple of 16 (whole "
                               "groups of rows), got 16k + 5"));
  REQUIRE_THROWS_WITH(
      tformer::check_weight_view("t", w.with_activations(tformer::Activations::f32)),
      Contains("ffn_up (" + name + ") activations: expected int8 (" + name +
               " is a layout of the int8 kernel), got f32"));
  tformer::check_weight_scales("load", w);
  const tformer::f16 inf{0x7c00};
  // Row 17 (group 1, lane 1), block 1: its scale follows the block's values.
  std::memcpy(bytes.data() + group + block + (block - 32) + 2 * 1, &inf, 2);
  REQUIRE_THROWS_WITH(
      tformer::check_weight_scales("load", w),
      Contains("ffn_up (" + name + ") scale of row 17 block 1: expected a finite f16, got inf"));
}
