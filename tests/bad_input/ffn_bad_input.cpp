// Bad inputs of the linear, matmul, feed-forward and mixture-of-experts entry points in
// include/tformer/nn/ (see bad_input.hpp).
#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <sstream>
#include <vector>

#include "bad_input/bad_input.hpp"
#include "tformer/nn/linear.hpp"
#include "tformer/nn/matmul.hpp"
#include "tformer/nn/moe.hpp"
#include "tformer/nn/swiglu.hpp"

using namespace tformer;
using Index = tformer::index;
using namespace bad_input;

namespace {


struct Buffer {  // a matrix of its own
  Index rows, cols;
  std::vector<float> data;
  Buffer(Index r, Index c, float fill = 0.5f)
      : rows(r), cols(c), data(static_cast<std::size_t>(r * c), fill) {}
  MatrixView<float> view() { return {data.data(), rows, cols}; }
  MatrixView<const float> cview() const { return {data.data(), rows, cols}; }
};

std::string contents(const Buffer& b) {
  std::ostringstream s;
  for (const float v : b.data) s << v << ",";
  return s.str();
}

}  // namespace

TEST_CASE("bad_input: linear and matmul", "[bad_input][nn]") {
  Buffer x(3, 8), w(4, 8), y(3, 4), w_wide(4, 9), y_short(2, 4);
  std::vector<float> bias(4, 0.0f), bias3(3, 0.0f);
  alignas(64) std::byte q8[4 * 34] = {};  // 4 rows of one q8_0 block (32 values)
  Buffer x32(3, 32), y4(3, 4);
  auto y_state = [&] { return contents(y); };
  auto y4_state = [&] { return contents(y4); };
  bad_input::run({
      {"linear", "x.cols != w.cols", "x.cols", [&] { linear(x.cview(), w_wide.cview(), y.view()); },
       y_state},
      {"linear", "y of 2 rows for 3 tokens", "y shape",
       [&] { linear(x.cview(), w.cview(), y_short.view()); }},
      {"linear", "bias of 3 for 4 outputs", "bias size",
       [&] { linear(x.cview(), w.cview(), bias3, y.view()); }, y_state},
      {"linear", "y overlapping x", "y: expected memory disjoint from x",
       [&] { linear(x.cview(), w.cview(), MatrixView<float>(x.data.data(), 3, 4)); }},
      {"linear", "y overlapping w", "y: expected memory disjoint from w",
       [&] { linear(x.cview(), w.cview(), MatrixView<float>(w.data.data(), 3, 4, 8)); }},
      {"linear", "x with 2^62 rows", "x shape",
       [&] { linear(MatrixView<const float>(x.data.data(), huge, 8), w.cview(), y.view()); },
       y_state},
      {"linear", "null w", "w data",
       [&] { linear(x.cview(), MatrixView<const float>(nullptr, 4, 8), y.view()); }, y_state},
      {"matmul", "q8_0 with cols 33", "cols",
       [&] { matmul(x32.cview(), WeightView(WeightType::q8_0, q8, 4, 33), y4.view()); },
       y4_state},
      {"matmul", "x.cols != w.cols", "x.cols",
       [&] { matmul(x.cview(), WeightView(WeightType::q8_0, q8, 4, 32), y4.view()); }, y4_state},
      {"matmul", "bias of 3 for 4 outputs", "bias size",
       [&] { matmul(x32.cview(), WeightView(WeightType::q8_0, q8, 4, 32), bias3, y4.view()); },
       y4_state},
      {"matmul", "y overlapping w", "y: expected memory disjoint from w",
       [&] {
         matmul(x32.cview(), WeightView(WeightType::q8_0, q8, 4, 32),
                MatrixView<float>(reinterpret_cast<float*>(q8), 3, 4));
       }},
      {"matmul", "int8 activations with f32 weights", "activations",
       [&] {
         matmul(x.cview(), WeightView(w.cview()).with_activations(Activations::int8), y.view());
       },
       y_state},
  });
}

TEST_CASE("bad_input: SwiGLU, top-k and their workspaces", "[bad_input][nn]") {
  Buffer x(2, 8), gate(6, 8), up(6, 8), down(8, 6), down_t(6, 8), y(2, 8), up_short(5, 8);
  const SwiGluWeights w{gate.cview(), up.cview(), down.cview()};
  const SwiGluWeights bad_up{gate.cview(), up_short.cview(), down.cview()};
  FfnWorkspace ws(2, 6), ws_small(1, 6), ws_wide(2, 7);
  Buffer h(2, 6);
  auto y_state = [&] { return contents(y); };
  bad_input::run({
      {"FfnWorkspace", "max_tokens = -1", "max_tokens", [] { FfnWorkspace s(-1, 8); }},
      {"FfnWorkspace", "intermediate = -1", "intermediate", [] { FfnWorkspace s(8, -1); }},
      {"FfnWorkspace", "2^62 * 4 (wraps)", "max_tokens * intermediate",
       [] { FfnWorkspace s(huge, 4); }},
      {"FfnWorkspace", "2^16 * 2^16 (past int32 columns)", "max_tokens * intermediate",
       [] { FfnWorkspace s(Index(1) << 16, Index(1) << 16); }},
      {"swiglu", "x.cols != hidden", "x.cols",
       [&] { swiglu(Buffer(2, 7).cview(), w, y.view(), ws); }, y_state},
      {"swiglu", "more tokens than max_tokens", "max_tokens",
       [&] { swiglu(Buffer(2, 8).cview(), w, y.view(), ws_small); }, y_state},
      {"swiglu", "workspace of another intermediate", "workspace intermediate",
       [&] { swiglu(x.cview(), w, y.view(), ws_wide); }, y_state},
      {"swiglu", "up of 5 rows", "w.up", [&] { swiglu(x.cview(), bad_up, y.view(), ws); },
       y_state},
      {"swiglu", "y of 3 rows", "y shape", [&] { swiglu(x.cview(), w, Buffer(3, 8).view(), ws); }},
      {"swiglu", "down [8, 5]", "w.down",
       [&] {
         swiglu(x.cview(), {gate.cview(), up.cview(), Buffer(8, 5).cview()}, y.view(), ws);
       },
       y_state},
      {"swiglu", "SiluSigmoid with beta NaN", "beta",
       [&] {
         swiglu(x.cview(), w, y.view(), ws,
                {ActivationKind::SiluSigmoid, std::numeric_limits<float>::quiet_NaN()});
       },
       y_state},
      {"swiglu", "an activation kind outside the enum", "kind",
       [&] { swiglu(x.cview(), w, y.view(), ws, {static_cast<ActivationKind>(7)}); }, y_state},
      {"swiglu_topk", "k = 0", "k:",
       [&] { swiglu_topk(x.cview(), w, down_t.cview(), TopK::count(0), y.view(), ws); }, y_state},
      {"swiglu_topk", "k = 7 of 6", "k:",
       [&] { swiglu_topk(x.cview(), w, down_t.cview(), TopK::count(7), y.view(), ws); }, y_state},
      {"swiglu_topk", "fraction NaN", "k fraction",
       [&] {
         swiglu_topk(x.cview(), w, down_t.cview(),
                     TopK::fraction(std::numeric_limits<double>::quiet_NaN()), y.view(), ws);
       },
       y_state},
      {"swiglu_topk", "fraction 1.5", "k fraction",
       [&] { swiglu_topk(x.cview(), w, down_t.cview(), TopK::fraction(1.5), y.view(), ws); },
       y_state},
      {"swiglu_topk", "down_t [8, 6] (not transposed)", "down_t",
       [&] { swiglu_topk(x.cview(), w, down.cview(), TopK::count(2), y.view(), ws); }, y_state},
      {"swiglu_topk_intermediate", "h of 5 columns", "h shape",
       [&] { swiglu_topk_intermediate(x.cview(), w, TopK::count(2), Buffer(2, 5).view(), ws); }},
      {"TransposedWeights", "cols not whole q8_0 blocks", "cols",
       [&] {
         alignas(64) static std::byte q8[34] = {};
         TransposedWeights t(WeightView(WeightType::q8_0, q8, 1, 33));
       }},
  });
}

TEST_CASE("bad_input: mixture of experts", "[bad_input][nn]") {
  Buffer x(2, 8), router(4, 8), y(2, 8), gate(6, 8), up(6, 8), down(8, 6);
  const std::vector<SwiGluWeights> experts(4, {gate.cview(), up.cview(), down.cview()});
  const MoeConfig config{4, 2};
  MoeWorkspace ws(2, 8, 6, config);
  const MoeWeights w{router.cview(), experts, std::nullopt, {}};
  auto y_state = [&] { return contents(y); };
  bad_input::run({
      {"MoeWorkspace", "experts = 0", "config.experts",
       [] { MoeWorkspace s(2, 8, 6, MoeConfig{0, 1}); }},
      {"MoeWorkspace", "top_k = 0", "config.top_k",
       [] { MoeWorkspace s(2, 8, 6, MoeConfig{4, 0}); }},
      {"MoeWorkspace", "top_k > experts", "config.top_k",
       [] { MoeWorkspace s(2, 8, 6, MoeConfig{4, 5}); }},
      {"MoeWorkspace", "max_tokens = -1", "max_tokens",
       [] { MoeWorkspace s(-1, 8, 6, MoeConfig{4, 2}); }},
      {"MoeWorkspace", "hidden 2^62 (max_tokens * hidden wraps)", "max_tokens * hidden",
       [] { MoeWorkspace s(8, huge, 6, MoeConfig{4, 2}); }},
      {"MoeWorkspace", "experts 2^40", "config.experts",
       [] { MoeWorkspace s(2, 8, 6, MoeConfig{Index(1) << 40, 2}); }},
      {"moe", "top_k = 3 against a workspace of 2", "workspace top_k",
       [&] { moe(x.cview(), w, MoeConfig{4, 3}, y.view(), ws); }, y_state},
      {"moe", "SiluSigmoid with beta +inf", "beta",
       [&] {
         MoeConfig c = config;
         c.activation = {ActivationKind::SiluSigmoid, std::numeric_limits<float>::infinity()};
         moe(x.cview(), w, c, y.view(), ws);
       },
       y_state},
      {"moe", "a router kind outside the enum", "config.router",
       [&] {
         MoeConfig c = config;
         c.router = static_cast<RouterKind>(5);
         moe(x.cview(), w, c, y.view(), ws);
       },
       y_state},
      {"moe", "router of 3 rows", "router shape",
       [&] {
         moe(x.cview(), {Buffer(3, 8).cview(), experts, std::nullopt, {}}, config, y.view(), ws);
       },
       y_state},
      {"moe", "3 experts given for 4", "experts count",
       [&] {
         moe(x.cview(), {router.cview(), std::span(experts).first(3), std::nullopt, {}}, config,
             y.view(), ws);
       },
       y_state},
      {"moe", "more tokens than max_tokens", "tokens",
       [&] { moe(Buffer(3, 8).cview(), w, config, Buffer(3, 8).view(), ws); }},
      {"moe", "y the same memory as x", "memory disjoint from x",
       [&] { moe(x.cview(), w, config, x.view(), ws); }},
      {"moe", "a shared gate with no shared expert", "shared_gate",
       [&] { moe(x.cview(), {router.cview(), experts, std::nullopt, Buffer(1, 8).cview()}, config,
                 y.view(), ws); },
       y_state},
  });
}
