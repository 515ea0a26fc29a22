// Bad inputs of the public entry points in include/tformer/core/ (see bad_input.hpp).
#include <cstddef>
#include <cstdint>
#include <fstream>
#include <limits>
#include <vector>

#include "bad_input/bad_input.hpp"
#include "tformer/core/convert.hpp"
#include "tformer/core/memory.hpp"
#include "tformer/core/positions.hpp"
#include "tformer/core/views.hpp"
#include "tformer/core/weight_view.hpp"

using namespace tformer;
using Index = tformer::index;
using namespace bad_input;

TEST_CASE("bad_input: sizes, buffers and views", "[bad_input][core]") {
  std::vector<float> data(64, 1.0f);
  std::vector<std::int32_t> ids = {0, 1, 2}, negative_id = {0, -1, 2};
  alignas(64) std::byte bytes[256] = {};
  bad_input::run({
      {"checked_size", "a negative factor", "rows * cols",
       [] { (void)checked_size("f", "rows * cols", {4, -1}, 4); }},
      {"checked_size", "2^62 * 8 (wraps)", "rows * cols",
       [] { (void)checked_size("f", "rows * cols", {huge, 8}, 4); }},
      {"checked_size", "2^38 floats (2^40 bytes + 4)", "2^40 bytes",
       [] { (void)checked_size("f", "n", {(Index(1) << 38) + 1}, 4); }},
      {"AlignedBuffer", "2^62 floats", "AlignedBuffer",
       [] { AlignedBuffer<float> b(std::size_t(1) << 62); }},
      {"AlignedBuffer", "SIZE_MAX doubles", "2^40 bytes",
       [] { AlignedBuffer<double> b(std::numeric_limits<std::size_t>::max()); }},
      {"check_view(MatrixView)", "rows = -1", "x shape",
       [&] { check_view("f", "x", MatrixView<const float>(data.data(), -1, 4)); }},
      {"check_view(MatrixView)", "row_stride < cols", "row_stride >= cols",
       [&] { check_view("f", "x", MatrixView<const float>(data.data(), 2, 4, 3)); }},
      {"check_view(MatrixView)", "null data", "x data",
       [&] { check_view("f", "x", MatrixView<const float>(nullptr, 2, 4)); }},
      {"check_view(MatrixView)", "2^62 rows of 8 (extent wraps)", "x shape",
       [&] { check_view("f", "x", MatrixView<const float>(data.data(), huge, 8)); }},
      {"check_view(HeadsView)", "heads = 2^61 (heads * head_dim wraps)", "q shape",
       [&] { check_view("f", "q", HeadsView<const float>(data.data(), 1, Index(1) << 61, 8)); }},
      {"check_view(HeadsView)", "token_stride < heads * head_dim", "token_stride",
       [&] { check_view("f", "q", HeadsView<const float>(data.data(), 2, 2, 4, 6)); }},
      {"check_view(HeadsView)", "tokens = INT64_MAX", "q shape",
       [&] { check_view("f", "q", HeadsView<const float>(data.data(), max_index, 2, 4)); }},
      {"check_view(HeadsView)", "head_dim = -2", "q shape",
       [&] { check_view("f", "q", HeadsView<const float>(data.data(), 1, 2, -2, 8)); }},
      {"check_disjoint", "y overlapping x", "y: expected memory disjoint from x",
       [&] {
         check_disjoint("f", "y", MatrixView<const float>(data.data() + 4, 2, 4), "x",
                        MatrixView<const float>(data.data(), 2, 4));
       }},
      {"check_shape", "[2, 4] for [4, 2]", "w shape",
       [&] { check_shape("f", "w", MatrixView<const float>(data.data(), 2, 4), 4, 2); }},
      {"Positions::validate", "offset -1", "positions",
       [] { Positions::offset(-1).validate("f", 2, 16); }},
      {"Positions::validate", "offset + tokens past the limit", "positions",
       [] { Positions::offset(15).validate("f", 2, 16); }},
      {"Positions::validate", "offset INT32_MAX + 2 tokens", "positions",
       [] { Positions::offset(std::numeric_limits<std::int32_t>::max()).validate("f", 2, max_index); }},
      {"Positions::validate", "ids count != tokens", "position ids count",
       [&] { Positions::ids(ids).validate("f", 2, 16); }},
      {"Positions::validate", "a negative id", "position",
       [&] { Positions::ids(negative_id).validate("f", 3, 16); }},
      {"Positions::validate", "per_sequence 0", "tokens per sequence",
       [&] { Positions::per_sequence(ids, 0).validate("f", 3, 16); }},
      {"Positions::validate", "per_sequence 2^62 (sequences * it wraps)", "tokens per sequence",
       [&] { Positions::per_sequence(ids, huge).validate("f", 4, 16); }},
      {"check_weight_view", "an unknown type", "type",
       [&] { check_weight_view("f", WeightView(static_cast<WeightType>(77), bytes, 1, 4)); }},
      {"check_weight_view", "cols not whole q8_0 blocks", "cols",
       [&] { check_weight_view("f", WeightView(WeightType::q8_0, bytes, 1, 33)); }},
      {"check_weight_view", "rows = -1", "shape",
       [&] { check_weight_view("f", WeightView(WeightType::f32, bytes, -1, 4)); }},
      {"check_weight_view", "cols 2^62 of f32 (row bytes wrap)", "shape",
       [&] { check_weight_view("f", WeightView(WeightType::f32, bytes, 1, huge)); }},
      {"check_weight_view", "2^40 rows of 2^30 bytes", "shape",
       [&] { check_weight_view("f", WeightView(WeightType::f32, bytes, Index(1) << 40, Index(1) << 28)); }},
      {"check_weight_view", "row_stride below a packed row", "row_stride",
       [&] { check_weight_view("f", WeightView(WeightType::f32, bytes, 2, 8, 16)); }},
      {"check_weight_view", "misaligned f32 data", "alignment",
       [&] { check_weight_view("f", WeightView(WeightType::f32, bytes + 2, 1, 4)); }},
      {"check_weight_view", "null data", "data",
       [&] { check_weight_view("f", WeightView(WeightType::f32, nullptr, 1, 4)); }},
      {"check_weight_view", "q8_group with group 0", "group",
       [&] {
         check_weight_view("f", WeightView::q8_group(reinterpret_cast<const std::int8_t*>(bytes),
                                                     reinterpret_cast<const float*>(bytes), 0, 1,
                                                     64));
       }},
      {"convert_weights", "a NaN value", "value [0, 1]",
       [&] {
         std::vector<float> src = {1.0f, std::numeric_limits<float>::quiet_NaN(), 0.0f, 0.0f};
         (void)convert_weights({src.data(), 1, 4}, WeightType::bf16, {bytes, 8});
       }},
      {"convert_weights", "a value past f16's range", "value [0, 0]",
       [&] {
         std::vector<float> src = {1e5f, 0.0f, 0.0f, 0.0f};
         (void)convert_weights({src.data(), 1, 4}, WeightType::f16, {bytes, 8});
       }},
      {"convert_weights", "dst of the wrong size", "dst size",
       [&] { (void)convert_weights({data.data(), 1, 4}, WeightType::f16, {bytes, 6}); }},
      {"convert_weights", "to q8_group", "type",
       [&] { (void)convert_weights({data.data(), 1, 64}, WeightType::q8_group, {bytes, 64}); }},
  });
  if (overcommit_refuses())
    bad_input::run({{"AlignedBuffer", "512 GiB (under the limit, more than the machine has)",
                     "memory the system can give",
                     [] { AlignedBuffer<float> b(std::size_t(1) << 37); }}});
}
