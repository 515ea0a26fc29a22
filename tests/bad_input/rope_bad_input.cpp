// Bad inputs of the public entry points in include/tformer/rope/ (see bad_input.hpp).
#include <cstdint>
#include <fstream>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "bad_input/bad_input.hpp"
#include "tformer/rope/apply.hpp"
#include "tformer/rope/givens.hpp"
#include "tformer/rope/scaling.hpp"
#include "tformer/rope/sinusoidal.hpp"
#include "tformer/rope/table.hpp"

using namespace tformer;
using Index = tformer::index;
using bad_input::contents;
using bad_input::huge;
using bad_input::opaque;
using bad_input::overcommit_refuses;
namespace rs = tformer::rope_scaling;

namespace {

constexpr int int32_max = std::numeric_limits<std::int32_t>::max();
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr float kNaNf = std::numeric_limits<float>::quiet_NaN();
constexpr float kInff = std::numeric_limits<float>::infinity();


// compute_rope_frequencies for a scaling, rotary_dim 8, base 10^4, 4096 positions, length 64.
auto freqs(RopeScaling s, int rotary_dim = 8, double base = 1e4, int max_positions = 4096,
           int length = 64) {
  return [=] { (void)compute_rope_frequencies(s, rotary_dim, base, max_positions, length); };
}

rs::Yarn yarn(void (*change)(rs::Yarn&)) {
  rs::Yarn y{.factor = 4, .original_max_positions = 64};
  change(y);
  return y;
}

rs::LongRope long_rope(void (*change)(rs::LongRope&)) {
  rs::LongRope l{.short_factor = {1, 1, 1, 1}, .long_factor = {2, 2, 2, 2},
                 .original_max_positions = 64};
  change(l);
  return l;
}

auto table_with(RopeConfig c) {
  return [c] { RopeTable t(c); };
}

}  // namespace

TEST_CASE("bad_input: RoPE frequencies and tables", "[bad_input][rope]") {
  const std::string f = "compute_rope_frequencies";
  std::vector<bad_input::Row> rows = {
      {f, "rotary_dim = 7", "rotary_dim", freqs(rs::None{}, 7)},
      {f, "rotary_dim = 2^30 (8 GiB of frequencies)", "rotary_dim", freqs(rs::None{}, 1 << 30)},
      {f, "rotary_dim = -8", "rotary_dim", freqs(rs::None{}, -8)},
      {f, "base = NaN", "base", freqs(rs::None{}, 8, kNaN)},
      {f, "base = +inf", "base", freqs(rs::None{}, 8, kInf)},
      {f, "base = 1", "base", freqs(rs::None{}, 8, 1.0)},
      {f, "base = -10", "base", freqs(rs::None{}, 8, -10.0)},
      {f, "max_positions = 0", "max_positions", freqs(rs::None{}, 8, 1e4, 0)},
      {f, "sequence_length = -1", "sequence_length", freqs(rs::None{}, 8, 1e4, 4096, -1)},
      {f, "Linear factor = NaN", "scaling factor", freqs(rs::Linear{kNaN})},
      {f, "Linear factor = +inf", "scaling factor", freqs(rs::Linear{kInf})},
      {f, "Linear factor = 0", "scaling factor", freqs(rs::Linear{0.0})},
      {f, "Linear factor = 1e-310 (frequencies overflow)", "inverse frequency",
       freqs(rs::Linear{1e-310})},
      {f, "DynamicNtk factor = NaN", "scaling factor", freqs(rs::DynamicNtk{kNaN, 64})},
      {f, "DynamicNtk factor = -2", "scaling factor", freqs(rs::DynamicNtk{-2.0, 64})},
      {f, "DynamicNtk original_max_positions = 0", "original_max_positions",
       freqs(rs::DynamicNtk{2.0, 0})},
      {f, "DynamicNtk rotary_dim = 2", "rotary_dim", freqs(rs::DynamicNtk{2.0, 64}, 2)},
      {f, "DynamicNtk factor = 1e17 (scaled base rounds to 0)", "scaled base",
       freqs(rs::DynamicNtk{1e17, 64})},
      {f, "Yarn factor = NaN", "scaling factor", freqs(yarn([](auto& y) { y.factor = kNaN; }))},
      {f, "Yarn factor = 0", "scaling factor", freqs(yarn([](auto& y) { y.factor = 0; }))},
      {f, "Yarn original_max_positions = -1", "original_max_positions",
       freqs(yarn([](auto& y) { y.original_max_positions = -1; }))},
      {f, "Yarn beta_fast = +inf", "beta_fast, beta_slow",
       freqs(yarn([](auto& y) { y.beta_fast = kInf; }))},
      {f, "Yarn beta_slow = NaN", "beta_fast, beta_slow",
       freqs(yarn([](auto& y) { y.beta_slow = kNaN; }))},
      {f, "Yarn beta_slow = 0", "beta_fast, beta_slow",
       freqs(yarn([](auto& y) { y.beta_slow = 0; }))},
      {f, "Yarn attention_factor = NaN", "attention_factor",
       freqs(yarn([](auto& y) { y.attention_factor = kNaN; }))},
      {f, "Yarn attention_factor = 0 (Inverse would divide by 0)", "attention_factor",
       freqs(yarn([](auto& y) { y.attention_factor = 0.0; }))},
      {f, "Yarn attention_factor = -1", "attention_factor",
       freqs(yarn([](auto& y) { y.attention_factor = -1.0; }))},
      {f, "Yarn attention_factor = +inf", "attention_factor",
       freqs(yarn([](auto& y) { y.attention_factor = kInf; }))},
      {f, "Yarn mscale = NaN", "mscale", freqs(yarn([](auto& y) {
         y.mscale = kNaN;
         y.mscale_all_dim = 1.0;
       }))},
      {f, "Yarn mscale_all_dim = -inf", "mscale_all_dim", freqs(yarn([](auto& y) {
         y.mscale = 1.0;
         y.mscale_all_dim = -kInf;
       }))},
      {f, "Yarn mscale = -20 (negative attention factor)", "attention factor",
       freqs(yarn([](auto& y) {
         y.mscale = -20.0;
         y.mscale_all_dim = 1.0;
       }))},
      {f, "LongRope original_max_positions = 1 (ln 1 = 0 divides)", "original_max_positions",
       freqs(long_rope([](auto& l) { l.original_max_positions = 1; }))},
      {f, "LongRope original_max_positions = 0", "original_max_positions",
       freqs(long_rope([](auto& l) { l.original_max_positions = 0; }))},
      {f, "LongRope factor = NaN", "scaling factor",
       freqs(long_rope([](auto& l) { l.factor = kNaN; }))},
      {f, "LongRope factor = -1", "scaling factor",
       freqs(long_rope([](auto& l) { l.factor = -1.0; }))},
      {f, "LongRope attention_factor = NaN", "attention_factor",
       freqs(long_rope([](auto& l) { l.attention_factor = kNaN; }))},
      {f, "LongRope attention_factor = 0", "attention_factor",
       freqs(long_rope([](auto& l) { l.attention_factor = 0.0; }))},
      {f, "LongRope 3 short factors for rotary_dim 8", "short_factor size",
       freqs(long_rope([](auto& l) { l.short_factor.pop_back(); }))},
      {f, "LongRope 5 long factors for rotary_dim 8", "long_factor size",
       freqs(long_rope([](auto& l) { l.long_factor.push_back(1.0); }))},
      {f, "LongRope short factor = NaN", "extension factor",
       freqs(long_rope([](auto& l) { l.short_factor[2] = kNaN; }))},
      {f, "LongRope long factor = 0 (used past L0)", "extension factor",
       freqs(long_rope([](auto& l) { l.long_factor[0] = 0.0; }), 8, 1e4, 4096, 100)},
      {f, "Llama3 factor = +inf", "scaling factor", freqs(rs::Llama3{.factor = kInf})},
      {f, "Llama3 factor = NaN", "scaling factor", freqs(rs::Llama3{.factor = kNaN})},
      {f, "Llama3 low_freq_factor = NaN", "low_freq_factor",
       freqs(rs::Llama3{.low_freq_factor = kNaN})},
      {f, "Llama3 low_freq_factor = 0", "low_freq_factor",
       freqs(rs::Llama3{.low_freq_factor = 0.0})},
      {f, "Llama3 high_freq_factor = +inf", "high_freq_factor",
       freqs(rs::Llama3{.high_freq_factor = kInf})},
      {f, "Llama3 high_freq_factor < low_freq_factor", "high_freq_factor",
       freqs(rs::Llama3{.low_freq_factor = 4, .high_freq_factor = 1})},
      {f, "Llama3 original_max_positions = 0", "original_max_positions",
       freqs(rs::Llama3{.original_max_positions = 0})},

      {"partial_rotary_dim", "head_dim = -128", "head_dim",
       [] { (void)partial_rotary_dim(-128, 0.5); }},
      {"partial_rotary_dim", "head_dim = 0", "head_dim", [] { (void)partial_rotary_dim(0, 0.5); }},
      {"partial_rotary_dim", "factor = NaN", "partial_rotary_factor",
       [] { (void)partial_rotary_dim(64, kNaN); }},
      {"partial_rotary_dim", "factor = 0", "partial_rotary_factor",
       [] { (void)partial_rotary_dim(64, 0.0); }},
      {"partial_rotary_dim", "factor = 1.5", "partial_rotary_factor",
       [] { (void)partial_rotary_dim(64, 1.5); }},

      {"RopeTable", "rotary_dim = 0", "rotary_dim",
       table_with({.rotary_dim = 0, .max_positions = 16})},
      {"RopeTable", "rotary_dim = 7", "rotary_dim",
       table_with({.rotary_dim = 7, .max_positions = 16})},
      {"RopeTable", "max_positions = -3", "max_positions",
       table_with({.rotary_dim = 8, .max_positions = -3})},
      {"RopeTable", "max_positions = INT32_MAX, rotary_dim 1024 (2^43 bytes)",
       "max_positions * rotary_dim", table_with({.rotary_dim = 1024, .max_positions = int32_max})},
      {"RopeTable", "rotary_dim = INT32_MAX - 1, max_positions 512", "max_positions * rotary_dim",
       table_with({.rotary_dim = int32_max - 1, .max_positions = 512})},
      {"RopeTable", "base = NaN (a 256 MiB table: checked before allocating)", "base",
       table_with({.rotary_dim = 128, .max_positions = 1 << 19, .base = kNaN})},
      {"RopeTable", "base = +inf", "base",
       table_with({.rotary_dim = 8, .max_positions = 16, .base = kInf})},
      {"RopeTable", "Yarn attention_factor = 0", "attention_factor",
       table_with({.rotary_dim = 8, .max_positions = 16,
                   .scaling = yarn([](auto& y) { y.attention_factor = 0.0; })})},
      {"RopeTable", "DynamicNtk original_max_positions = -5", "original_max_positions",
       table_with({.rotary_dim = 8, .max_positions = 16,
                   .scaling = rs::DynamicNtk{2.0, -5}})},
      {"RopeTable", "LongRope original_max_positions = 1", "original_max_positions",
       table_with({.rotary_dim = 8, .max_positions = 16,
                   .scaling = long_rope([](auto& l) { l.original_max_positions = 1; })})},
  };
  if (overcommit_refuses())  // 1 TiB − 512 bytes passes checked_size; the allocation fails
    rows.push_back({"RopeTable", "max_positions = INT32_MAX, rotary_dim 128 (1 TiB - 512 B)",
                    "AlignedBuffer", table_with({.rotary_dim = 128, .max_positions = int32_max})});

  RopeTable table(RopeConfig{.rotary_dim = 8, .max_positions = 16, .base = 500.0});
  RopeTable ntk(RopeConfig{.rotary_dim = 8, .max_positions = 16,
                           .scaling = rs::DynamicNtk{2.0, 8}});
  auto table_state = [&] {
    std::ostringstream s;
    s << table.base() << " " << table.sequence_length() << " " << table.cos(5)[1] << " "
      << ntk.sequence_length() << " " << ntk.cos(5)[3];
    return s.str();
  };
  std::vector<float> out(4 * 8, 0.0f);
  auto out_state = [&] { return contents(out); };
  const std::vector<std::int32_t> ids = {0, -1};
  rows.insert(rows.end(), {
      {"RopeTable::set_base", "NaN", "base", [&] { table.set_base(kNaN); }, table_state},
      {"RopeTable::set_base", "+inf", "base", [&] { table.set_base(kInf); }, table_state},
      {"RopeTable::set_base", "0.5", "base", [&] { table.set_base(0.5); }, table_state},
      {"RopeTable::set_sequence_length", "-1", "length",
       [&] { ntk.set_sequence_length(-1); }, table_state},
      {"RopeTable::compute_rows", "out [2, 8] for 3 tokens", "out shape",
       [&] { table.compute_rows(Positions::offset(0), 3, {out.data(), 2, 8}); }, out_state},
      {"RopeTable::compute_rows", "out [3, 6]", "out shape",
       [&] { table.compute_rows(Positions::offset(0), 3, {out.data(), 3, 6}); }, out_state},
      {"RopeTable::compute_rows", "position -1", "position",
       [&] { table.compute_rows(Positions::ids(ids), 2, {out.data(), 2, 8}); }, out_state},
      {"RopeTable::compute_rows", "length -1", "length",
       [&] { table.compute_rows(Positions::offset(0), 2, -1, {out.data(), 2, 8}); }, out_state},
      {"RopeTable::compute_rows", "at a length: out [3, 6]", "out shape",
       [&] { table.compute_rows(Positions::offset(0), 3, 5, {out.data(), 3, 6}); }, out_state},
      {"RopeTable", "sequence_length -2", "sequence_length",
       [] { RopeTable t(RopeConfig{.rotary_dim = 8, .max_positions = 4}, -2); }},
      {"RopeTable::compute_rows", "offset INT32_MAX + 2 tokens", "positions",
       [&] { table.compute_rows(Positions::offset(int32_max), 2, {out.data(), 2, 8}); },
       out_state},
      {"RopeTable::compute_rows", "out of 2^62 rows (extent wraps)", "out shape",
       [&] { table.compute_rows(Positions::offset(0), 1, {out.data(), opaque(huge), 8}); },
       out_state},
      {"RopeTable::compute_rows", "tokens = -1", "out shape",
       [&] { table.compute_rows(Positions::offset(0), -1, {out.data(), -1, 8}); }, out_state},
  });
  bad_input::run(rows);
}

TEST_CASE("bad_input: RoPE kernels", "[bad_input][rope]") {
  RopeTable table(RopeConfig{.rotary_dim = 8, .max_positions = 16});
  std::vector<float> buf(256, 0.25f), other(256, 0.5f), rows_buf(64, 1.0f);
  auto state = [&] { return contents(buf) + contents(other); };
  const auto at0 = Positions::offset(0);
  using L = RopeLayout;
  const HeadsView<float> x(buf.data(), 4, 2, 8), k(other.data(), 4, 1, 8);
  const HeadsView<const float> cx(x);
  const HeadsView<float> y(other.data(), 4, 2, 8);
  const std::vector<std::int32_t> ids3 = {0, 1, 2}, ids_far = {0, 1, 16, 2};
  const auto bad_direction = static_cast<RopeDirection>(3);
  const MatrixView<const float> rows(rows_buf.data(), 4, 8);

  // apply_rope_inplace(x): one view.
  const auto inplace = [&](HeadsView<float> v, Positions p,
                           RopeDirection d = RopeDirection::Forward) {
    return [&table, v, p, d] { apply_rope_inplace<L::Interleaved>(table, v, p, d); };
  };
  // apply_rope_inplace(q, k): two views.
  const auto both = [&](HeadsView<float> q, HeadsView<float> kk, Positions p,
                        RopeDirection d = RopeDirection::Forward) {
    return [&table, q, kk, p, d] { apply_rope_inplace<L::RotateHalf>(table, q, kk, p, d); };
  };
  const auto copy = [&](HeadsView<const float> in, HeadsView<float> o, Positions p,
                        RopeDirection d = RopeDirection::Forward) {
    return [&table, in, o, p, d] { apply_rope<L::RotateHalf>(table, in, o, p, d); };
  };
  const auto with_rows = [](MatrixView<const float> r, HeadsView<float> q, HeadsView<float> kk) {
    return [r, q, kk] { apply_rope_rows_inplace<L::Interleaved>(r, q, kk); };
  };
  const std::string ai = "apply_rope_inplace", a = "apply_rope", ar = "apply_rope_rows_inplace";
  bad_input::run({
      {ai, "head_dim = 7", "x.head_dim", inplace({buf.data(), 4, 2, 7}, at0), state},
      {ai, "head_dim = 6 < rotary_dim 8", "x.head_dim", inplace({buf.data(), 4, 2, 6}, at0),
       state},
      {ai, "tokens = -1", "x shape", inplace({buf.data(), -1, 2, 8}, at0), state},
      {ai, "heads = 2^61 (heads * head_dim wraps)", "x shape",
       inplace({buf.data(), 1, Index(1) << 61, 8}, at0), state},
      {ai, "token_stride = 2^62", "x shape", inplace({buf.data(), 2, 1, 8, huge}, at0), state},
      {ai, "token_stride < heads * head_dim", "token_stride", inplace({buf.data(), 4, 2, 8, 10}, at0),
       state},
      {ai, "null data", "x data", inplace({nullptr, 4, 2, 8}, at0), state},
      {ai, "offset 13 + 4 tokens past 16 positions", "positions", inplace(x, Positions::offset(13)),
       state},
      {ai, "offset -1", "positions", inplace(x, Positions::offset(-1)), state},
      {ai, "3 position ids for 4 tokens", "position ids count", inplace(x, Positions::ids(ids3)),
       state},
      {ai, "position id 16", "position", inplace(x, Positions::ids(ids_far)), state},
      {ai, "per_sequence with 0 tokens per sequence", "tokens per sequence",
       inplace(x, Positions::per_sequence(ids3, 0)), state},
      {ai, "direction = 3", "direction", inplace(x, at0, bad_direction), state},
      {ai, "direction = -1", "direction", inplace(x, at0, static_cast<RopeDirection>(-1)), state},
      {ai + "(layout)", "layout = 2", "layout",
       [&] { apply_rope_inplace(static_cast<RopeLayout>(2), table, x, at0); }, state},
      {ai + "(layout)", "direction = 5", "direction",
       [&] { apply_rope_inplace(L::RotateHalf, table, x, at0, static_cast<RopeDirection>(5)); },
       state},
      {ai + "(layout)", "head_dim = 7", "x.head_dim",
       [&] { apply_rope_inplace(L::RotateHalf, table, {buf.data(), 4, 2, 7}, at0); }, state},
      {ai + "(q, k)", "k.tokens = 3", "k.tokens", both(x, {other.data(), 3, 1, 8}, at0), state},
      {ai + "(q, k)", "k.head_dim = 10", "k.head_dim", both(x, {other.data(), 4, 1, 10}, at0),
       state},
      {ai + "(q, k)", "k.head_dim = 6", "k.head_dim", both(x, {other.data(), 4, 1, 6}, at0),
       state},
      {ai + "(q, k)", "k = q", "memory disjoint from q", both(x, x, at0), state},
      {ai + "(q, k)", "k one head into q", "memory disjoint from q",
       both(x, {buf.data() + 8, 4, 1, 8}, at0), state},
      {ai + "(q, k)", "k heads = 2^61", "k shape", both(x, {other.data(), 1, Index(1) << 61, 8}, at0),
       state},
      {ai + "(q, k)", "q null", "q data", both({nullptr, 4, 2, 8}, k, at0), state},
      {ai + "(q, k)", "positions past the table", "positions", both(x, k, Positions::offset(14)),
       state},
      {ai + "(q, k)", "direction = 3", "direction", both(x, k, at0, bad_direction), state},
      {a, "out.heads = 1", "out.heads", copy(cx, {other.data(), 4, 1, 8}, at0), state},
      {a, "out.tokens = 5", "out.tokens", copy(cx, {other.data(), 5, 2, 8}, at0), state},
      {a, "out.head_dim = 10", "out.head_dim", copy(cx, {other.data(), 4, 2, 10}, at0), state},
      {a, "out = in", "memory disjoint from in", copy(cx, x, at0), state},
      {a, "out shifted one value into in", "memory disjoint from in",
       copy(cx, {buf.data() + 1, 4, 2, 8}, at0), state},
      {a, "in heads = 2^61", "in shape", copy({buf.data(), 1, Index(1) << 61, 8}, y, at0), state},
      {a, "out null", "out data", copy(cx, {nullptr, 4, 2, 8}, at0), state},
      {a, "in.head_dim = 4 < rotary_dim", "in.head_dim",
       copy({buf.data(), 4, 2, 4}, {other.data(), 4, 2, 4}, at0), state},
      {a, "position id 16", "position", copy(cx, y, Positions::ids(ids_far)), state},
      {a, "direction = 3", "direction", copy(cx, y, at0, bad_direction), state},
      {ar, "rows.rows = 3 for 4 tokens", "rows.rows", with_rows(rows.row_slice(0, 3), x, k), state},
      {ar, "rows.cols = 7", "rows.cols", with_rows({rows_buf.data(), 4, 7}, x, k), state},
      {ar, "rows.cols = 0", "rows.cols", with_rows({rows_buf.data(), 4, 0}, x, k), state},
      {ar, "rows.cols = 16 > head_dim", "q.head_dim",
       with_rows({rows_buf.data(), 4, 16}, {buf.data(), 4, 2, 8}, {other.data(), 4, 1, 8}),
       state},
      {ar, "rows of 2^62 (extent wraps)", "rows shape", with_rows({rows_buf.data(), huge, 8}, x, k),
       state},
      {ar, "rows null", "rows data", with_rows({nullptr, 4, 8}, x, k), state},
      {ar, "k.tokens = 3", "k.tokens", with_rows(rows, x, {other.data(), 3, 1, 8}), state},
      {ar, "k.head_dim = 10", "k.head_dim", with_rows(rows, x, {other.data(), 4, 1, 10}), state},
      {ar, "k = q", "memory disjoint from q", with_rows(rows, x, x), state},
      {ar, "q heads = 2^61", "q shape", with_rows(rows, {buf.data(), 4, Index(1) << 61, 8}, k),
       state},
  });
}

TEST_CASE("bad_input: rotary block and sinusoidal positions", "[bad_input][rope]") {
  const int D = 8;
  std::vector<float> eye(D * D, 0.0f), wide(D * (D + 1), 0.0f), buf(64, 0.5f);
  for (int i = 0; i < D; ++i) eye[std::size_t(i * D + i)] = 1.0f;
  auto drifted = eye;
  drifted[3] = 0.1f;
  auto poisoned = eye;
  poisoned[10] = kNaNf;
  auto inf_entry = eye;
  inf_entry[0] = kInff;
  const std::vector<GivensRotation> plane_j_out = {{0, D, 0.1f}}, plane_i_negative = {{-1, 2, 0.1f}},
                                    same_plane = {{3, 3, 0.1f}}, nan_theta = {{0, 1, kNaNf}},
                                    inf_theta = {{1, 2, -kInff}};
  const std::span<const GivensRotation> none;
  const auto block = [](Index d, std::span<const GivensRotation> g,
                        MatrixView<const float> r = {}, double tol = 1e-4) {
    return [=] { RotaryBlock b(d, g, r, tol); };
  };
  RotaryBlock good(D, none);
  auto buf_state = [&] { return contents(buf); };
  auto poisoned_state = [&] { return contents(poisoned) + contents(drifted); };
  std::vector<float> table(16 * 4, 0.0f), x(2 * 4, 0.0f);
  sinusoidal_init({table.data(), 16, 4});
  auto x_state = [&] { return contents(x) + contents(table); };
  const std::vector<std::int32_t> far = {0, 16};
  bad_input::run({
      {"RotaryBlock", "head_dim = 0", "head_dim", block(0, none)},
      {"RotaryBlock", "head_dim = -4", "head_dim", block(-4, none)},
      {"RotaryBlock", "head_dim = 2^40 (scratch past 2^40 bytes)", "head_dim",
       block(Index(1) << 40, none)},
      {"RotaryBlock", "plane j = head_dim", "plane j", block(D, plane_j_out)},
      {"RotaryBlock", "plane i = -1", "plane i", block(D, plane_i_negative)},
      {"RotaryBlock", "plane (3, 3)", "two different dimensions", block(D, same_plane)},
      {"RotaryBlock", "theta = NaN", "theta", block(D, nan_theta)},
      {"RotaryBlock", "theta = -inf", "theta", block(D, inf_theta)},
      {"RotaryBlock", "tolerance = NaN", "tolerance",
       block(D, none, {eye.data(), D, D}, double(kNaNf))},
      {"RotaryBlock", "tolerance = -1", "tolerance", block(D, none, {eye.data(), D, D}, -1.0)},
      {"RotaryBlock", "tolerance = +inf", "tolerance", block(D, none, {eye.data(), D, D}, kInf)},
      {"RotaryBlock", "r not orthogonal", "RᵀR", block(D, none, {drifted.data(), D, D})},
      {"RotaryBlock", "r with a NaN", "RᵀR", block(D, none, {poisoned.data(), D, D})},
      {"RotaryBlock", "r with +inf", "RᵀR", block(D, none, {inf_entry.data(), D, D})},
      {"RotaryBlock", "r [8, 9]", "r shape", block(D, none, {wide.data(), D, D + 1})},
      {"RotaryBlock", "r [4, 4] for head_dim 8", "r shape", block(D, none, {eye.data(), 4, 4})},
      {"RotaryBlock", "r null", "r data", block(D, none, {nullptr, D, D})},
      {"RotaryBlock::apply", "head_dim = 4", "x.head_dim",
       [&] { good.apply({buf.data(), 2, 2, 4}); }, buf_state},
      {"RotaryBlock::apply", "heads = 2^61", "x shape",
       [&] { good.apply({buf.data(), 1, Index(1) << 61, D}); }, buf_state},
      {"RotaryBlock::apply", "tokens = -1", "x shape", [&] { good.apply({buf.data(), -1, 1, D}); },
       buf_state},
      {"RotaryBlock::apply", "null data", "x data", [&] { good.apply({nullptr, 2, 1, D}); },
       buf_state},
      {"orthogonality_error", "r [8, 9]", "r.cols (= r.rows)",
       [&] { (void)orthogonality_error({wide.data(), D, D + 1}); }},
      {"orthogonality_error", "r [0, 0]", "r.rows",
       [&] { (void)orthogonality_error({eye.data(), 0, 0}); }},
      {"orthogonality_error", "r null", "r data",
       [&] { (void)orthogonality_error({nullptr, D, D}); }},
      {"orthogonality_error", "rows = 2^62 (extent wraps)", "r shape",
       [&] { (void)orthogonality_error({eye.data(), huge, huge}); }},
      {"reorthogonalize", "r with a NaN", "finite entries",
       [&] { reorthogonalize({poisoned.data(), D, D}); }, poisoned_state},
      {"reorthogonalize", "r with +inf", "finite entries",
       [&] { reorthogonalize({inf_entry.data(), D, D}); }},
      {"reorthogonalize", "r [8, 9]", "r.cols (= r.rows)",
       [&] { reorthogonalize({wide.data(), D, D + 1}); }},
      {"reorthogonalize", "r [0, 0]", "r.rows", [&] { reorthogonalize({eye.data(), 0, 0}); }},
      {"reorthogonalize", "row_stride < cols", "row_stride >= cols",
       [&] { reorthogonalize({drifted.data(), D, D, D - 1}); }, poisoned_state},
      {"sinusoidal_init", "base = +inf", "base",
       [&] { sinusoidal_init({table.data(), 16, 4}, kInf); }, x_state},
      {"sinusoidal_init", "base = NaN", "base",
       [&] { sinusoidal_init({table.data(), 16, 4}, kNaN); }, x_state},
      {"sinusoidal_init", "base = 1", "base", [&] { sinusoidal_init({table.data(), 16, 4}, 1.0); },
       x_state},
      {"sinusoidal_init", "2^62 rows (extent wraps)", "table shape",
       [&] { sinusoidal_init({table.data(), opaque(huge), 4}); }, x_state},
      {"sinusoidal_init", "null table", "table data", [&] { sinusoidal_init({nullptr, 16, 4}); }},
      {"add_position_embeddings", "scale = NaN", "scale",
       [&] { add_position_embeddings({x.data(), 2, 4}, {table.data(), 16, 4}, Positions::offset(0), kNaNf); },
       x_state},
      {"add_position_embeddings", "scale = +inf", "scale",
       [&] { add_position_embeddings({x.data(), 2, 4}, {table.data(), 16, 4}, Positions::offset(0), kInff); },
       x_state},
      {"add_position_embeddings", "x.cols 4, table.cols 2", "table cols",
       [&] { add_position_embeddings({x.data(), 2, 4}, {table.data(), 32, 2}, Positions::offset(0)); },
       x_state},
      {"add_position_embeddings", "position 16 of 16", "position",
       [&] { add_position_embeddings({x.data(), 2, 4}, {table.data(), 16, 4}, Positions::ids(far)); },
       x_state},
      {"add_position_embeddings", "offset 15 + 2 rows", "positions",
       [&] { add_position_embeddings({x.data(), 2, 4}, {table.data(), 16, 4}, Positions::offset(15)); },
       x_state},
      {"add_position_embeddings", "x inside the table", "memory disjoint from table",
       [&] { add_position_embeddings({table.data() + 8, 2, 4}, {table.data(), 16, 4}, Positions::offset(0)); },
       x_state},
      {"add_position_embeddings", "x rows = 2^62", "x shape",
       [&] { add_position_embeddings({x.data(), huge, 4}, {table.data(), 16, 4}, Positions::offset(0)); },
       x_state},
      {"add_position_embeddings", "table null", "table data",
       [&] { add_position_embeddings({x.data(), 2, 4}, {nullptr, 16, 4}, Positions::offset(0)); },
       x_state},
  });
}
