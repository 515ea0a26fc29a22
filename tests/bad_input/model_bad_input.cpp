// Bad inputs of the public entry points in include/tformer/model/ (see bad_input.hpp).
#include <cmath>
#include <cstdint>
#include <limits>
#include <sstream>
#include <vector>

#include "bad_input/bad_input.hpp"
#include "tformer/model/decoder.hpp"
#include "tformer/model/sampling.hpp"
#include "tformer/model/weights.hpp"

using namespace tformer;
using Index = tformer::index;
using namespace bad_input;

namespace {


const Dims small = {.vocab = 64, .hidden = 32, .intermediate = 48, .layers = 2, .heads = 4,
                    .kv_heads = 2, .head_dim = 8, .max_positions = 16};

Dims with(Dims d, Index Dims::*member, Index value) {
  d.*member = value;
  return d;
}

template <class D>
std::string lengths(const D& dec) {
  std::ostringstream s;
  for (Index q = 0; q < dec.options().sequences; ++q) s << dec.length(q) << ",";
  return s.str();
}

}  // namespace

TEST_CASE("bad_input: Dims, OwnedWeights and the Decoder's construction", "[bad_input][model]") {
  using C = configs::Llama;
  const OwnedWeights<C> weights(small, 3);
  auto dims = [](Dims d) { return [d] { (void)resolve_dims<C>(d); }; };
  auto owned = [](Dims d) { return [d] { OwnedWeights<C> w(d, 1); }; };
  auto decoder = [&](DecoderOptions o) { return [&, o] { Decoder<C> dec(weights.view(), small, o); }; };
  ModelWeights missing_layer = weights.view();
  missing_layer.layers.pop_back();
  bad_input::run({
      {"resolve_dims", "vocab = 0", "vocab", dims(with(small, &Dims::vocab, 0))},
      {"resolve_dims", "hidden = -1", "hidden", dims(with(small, &Dims::hidden, -1))},
      {"resolve_dims", "heads = 3 (not a multiple of kv_heads)", "heads",
       dims(with(small, &Dims::heads, 3))},
      {"resolve_dims", "head_dim = 7", "head_dim", dims(with(small, &Dims::head_dim, 7))},
      {"resolve_dims", "max_positions = 2^32 + 16", "max_positions",
       dims(with(small, &Dims::max_positions, (Index(1) << 32) + 16))},
      {"resolve_dims", "vocab 2^62 (vocab * hidden wraps)", "vocab * hidden",
       dims(with(small, &Dims::vocab, huge))},
      {"resolve_dims", "intermediate 2^40", "intermediate * hidden",
       dims(with(small, &Dims::intermediate, Index(1) << 40))},
      {"resolve_dims", "heads 2^40", "heads * head_dim * hidden",
       dims(with(with(small, &Dims::heads, Index(1) << 40), &Dims::kv_heads, 1))},
      {"resolve_dims<TrafficVLM>", "hidden 256 against the static 512", "hidden",
       [] { (void)resolve_dims<configs::TrafficVLM>({.hidden = 256}); }},
      {"OwnedWeights", "vocab 2^62, hidden 4 (wraps to 0)", "vocab * hidden",
       owned(with(with(small, &Dims::vocab, huge), &Dims::hidden, 4))},
      {"OwnedWeights", "layers 2^40", "layers * weights per layer",
       owned(with(small, &Dims::layers, Index(1) << 40))},
      {"Decoder", "options.sequences = 0", "options.sequences", decoder({.sequences = 0})},
      {"Decoder", "options.kv_type 5 (not a KVType)", "options.kv_type",
       decoder({.kv_type = static_cast<tformer::KVType>(5)})},
      {"Decoder", "options.capacity above max_positions", "options.capacity",
       decoder({.capacity = 17})},
      {"Decoder", "options.capacity = -1", "options.capacity", decoder({.capacity = -1})},
      {"Decoder", "options.max_tokens = -1", "options.max_tokens", decoder({.max_tokens = -1})},
      {"Decoder", "options.max_tokens 2^62", "options.max_tokens",
       decoder({.max_tokens = huge})},
      {"Decoder", "options.sequences 2^62 (default max_tokens would overflow)",
       "options.sequences", decoder({.sequences = huge})},
      {"Decoder", "options.sequences 2^36 (cache of 2^50 bytes)", "options.sequences",
       decoder({.sequences = Index(1) << 36})},
      {"Decoder", "weights with a layer missing", "layers",
       [&] { Decoder<C> dec(missing_layer, small); }},
      {"Decoder", "dims wider than the weights", "embedding",
       [&] { Decoder<C> dec(weights.view(), with(small, &Dims::hidden, 64)); }},
  });
}

TEST_CASE("bad_input: the model's runtime parameters", "[bad_input][model]") {
  using C = configs::Llama;
  const OwnedWeights<C> weights(small, 3);
  const auto params = [](auto change) {
    ModelParams p = presets::llama3();
    change(p);
    return p;
  };
  auto decoder = [&](ModelParams p) {
    return [&, p] { Decoder<C> dec(weights.view(), small, p, {.capacity = 8}); };
  };
  auto owned = [](ModelParams p) { return [p] { OwnedWeights<C> w(small, 1, p); }; };
  bad_input::run({
      {"Decoder", "rope_base 0", "params.rope_base",
       decoder(params([](ModelParams& p) { p.rope_base = 0; }))},
      {"Decoder", "rope_base NaN", "params.rope_base",
       decoder(params([](ModelParams& p) { p.rope_base = kNaN; }))},
      {"Decoder", "local_rope_base 1", "params.local_rope_base",
       decoder(params([](ModelParams& p) { p.local_rope_base = 1.0; }))},
      {"Decoder", "local_rope_base NaN", "params.local_rope_base",
       decoder(params([](ModelParams& p) { p.local_rope_base = kNaN; }))},
      {"Decoder", "sinks with dynamic NTK", "params.attention.sinks",
       decoder(params([](ModelParams& p) {
         p.rope_scaling = tformer::rope_scaling::DynamicNtk{.factor = 2, .original_max_positions = 4};
         p.attention = {.window = 2, .sinks = 1};
       }))},
      {"Decoder", "eps -1e-6", "params.eps", decoder(params([](ModelParams& p) { p.eps = -1e-6f; }))},
      {"Decoder", "eps +inf", "params.eps", decoder(params([](ModelParams& p) { p.eps = kInf; }))},
      {"Decoder", "attention.window -1", "params.attention.window",
       decoder(params([](ModelParams& p) { p.attention.window = -1; }))},
      {"Decoder", "attention.local_layers of 3 flags for 2 layers",
       "params.attention.local_layers size",
       decoder(params([](ModelParams& p) { p.attention = {.window = 2, .local_layers = {true, false, true}}; }))},
      {"Decoder", "attention.local_layers naming a local layer without a window",
       "params.attention.window",
       decoder(params([](ModelParams& p) { p.attention = {.local_layers = {true, false}}; }))},
      {"Decoder", "attention.global_every 2 beside a local_layers list", "params.attention.global_every",
       decoder(params([](ModelParams& p) {
         p.attention = {.window = 2, .global_every = 2, .local_layers = {true, false}};
       }))},
      {"Decoder", "attention.global_every -2", "params.attention.global_every",
       decoder(params([](ModelParams& p) { p.attention = {.window = 2, .global_every = -2}; }))},
      {"Decoder", "attention.sinks without a window", "params.attention.sinks",
       decoder(params([](ModelParams& p) { p.attention.sinks = 1; }))},
      {"Decoder", "attention.ring without a window", "params.attention.ring",
       decoder(params([](ModelParams& p) { p.attention.ring = true; }))},
      {"Decoder", "sinks + window above the capacity", "options.capacity",
       decoder(params([](ModelParams& p) { p.attention = {.window = 6, .sinks = 4}; }))},
      {"Decoder", "activation SiluSigmoid with beta NaN", "params.activation: beta",
       decoder(params([](ModelParams& p) {
         p.activation = {.kind = ActivationKind::SiluSigmoid, .beta = kNaN};
       }))},
      {"Decoder", "router kind 7", "params.router",
       decoder(params([](ModelParams& p) { p.router = static_cast<RouterKind>(7); }))},
      {"Decoder", "pad_id = vocab", "params.pad_id",
       decoder(params([](ModelParams& p) { p.pad_id = small.vocab; }))},
      {"Decoder", "pad_id -2", "params.pad_id", decoder(params([](ModelParams& p) { p.pad_id = -2; }))},
      {"Decoder", "position_scale NaN", "params.position_scale",
       decoder(params([](ModelParams& p) { p.position_scale = kNaN; }))},
      {"Decoder", "qk_norm without q_norm weights", "q_norm",
       decoder(params([](ModelParams& p) { p.qk_norm = true; }))},
      {"Decoder", "Llama 3 scaling factor 0", "factor",
       decoder(params([](ModelParams& p) { p.rope_scaling = rope_scaling::Llama3{.factor = 0}; }))},
      {"Decoder", "embed_scale 0", "params.embed_scale",
       decoder(params([](ModelParams& p) { p.embed_scale = 0; }))},
      {"Decoder", "attention_scale -1", "params.attention_scale",
       decoder(params([](ModelParams& p) { p.attention_scale = -1; }))},
      {"Decoder", "attention_softcap +inf", "params.attention_softcap",
       decoder(params([](ModelParams& p) { p.attention_softcap = kInf; }))},
      {"Decoder", "final_softcap NaN", "params.final_softcap",
       decoder(params([](ModelParams& p) { p.final_softcap = kNaN; }))},
      {"OwnedWeights", "pad_id = vocab", "params.pad_id",
       owned(params([](ModelParams& p) { p.pad_id = small.vocab; }))},
      {"OwnedWeights", "eps 0", "params.eps", owned(params([](ModelParams& p) { p.eps = 0; }))},
  });
}

TEST_CASE("bad_input: Decoder calls", "[bad_input][model]") {
  using C = configs::Llama;
  const OwnedWeights<C> weights(small, 5);
  Decoder<C> dec(weights.view(), small, {.sequences = 2, .capacity = 8, .max_tokens = 6});
  const Index V = small.vocab;
  std::vector<float> logits(2 * static_cast<std::size_t>(V));
  const MatrixView<float> one(logits.data(), 1, V);
  const std::vector<std::int32_t> ok = {1, 2, 3}, too_big = {1, std::int32_t(V)}, neg = {-1},
                                  seven(7, 1), nine(9, 1), empty;
  dec.forward(0, ok, one);  // sequence 0 at length 3
  auto state = [&] { return lengths(dec); };
  const SequenceTokens twice[] = {{0, ok}, {0, ok}};
  const SequenceTokens three[] = {{0, ok}, {1, ok}, {1, ok}};
  std::vector<std::int32_t> out(4);
  std::vector<float> small_logprobs(1);
  Rng rng(1);
  float lg[2], pr[2];
  const std::int32_t yes_no[2] = {4, 5}, bad_ids[2] = {4, std::int32_t(V)};
  StepTrace past_rows{.attention_rows = {0, 3}}, negative_row{.attention_rows = {-1}};
  bad_input::run({
      {"Decoder::forward", "token id = vocab", "token id", [&] { dec.forward(0, too_big, one); },
       state},
      {"Decoder::forward", "token id = -1", "token id", [&] { dec.forward(0, neg, one); }, state},
      {"Decoder::forward", "seq = 2", "seq", [&] { dec.forward(2, ok, one); }, state},
      {"Decoder::forward", "no tokens", "tokens", [&] { dec.forward(0, empty, one); }, state},
      {"Decoder::forward", "logits [1, V - 1]", "logits",
       [&] { dec.forward(0, ok, {logits.data(), 1, V - 1}); }, state},
      {"Decoder::forward", "more tokens than max_tokens", "max_tokens",
       [&] { dec.forward(1, seven, one); }, state},
      {"Decoder::forward", "past capacity", "capacity", [&] { dec.forward(0, seven, one); }, state},
      {"Decoder::forward", "a sequence twice in one batch", "batch[i].seq",
       [&] { dec.forward(twice, {logits.data(), 2, V}); }, state},
      {"Decoder::forward", "batch larger than sequences", "batch size",
       [&] { dec.forward(three, {logits.data(), 2, V}); }, state},
      {"Decoder::forward", "trace.attention_rows past the step's 3 rows", "trace.attention_rows",
       [&] { dec.forward(1, ok, one, LogitsFor::Last, past_rows); }, state},
      {"Decoder::forward", "trace.attention_rows -1", "trace.attention_rows",
       [&] { dec.forward(1, ok, one, LogitsFor::Last, negative_row); }, state},
      {"Decoder::generate", "max_new_tokens = -1", "max_new_tokens",
       [&] { dec.generate(1, ok, -1, Sampler::greedy(), rng, out); }, state},
      {"Decoder::generate", "out smaller than max_new_tokens", "out size",
       [&] { dec.generate(1, ok, 8, Sampler::greedy(), rng, out); }, state},
      {"Decoder::generate", "past capacity with the new tokens", "capacity",
       [&] { dec.generate(0, ok, 4, Sampler::greedy(), rng, out); }, state},
      {"Decoder::generate", "temperature 0", "temperature",
       [&] { dec.generate(1, ok, 1, Sampler::with_temperature(0), rng, out); }, state},
      {"Decoder::generate", "temperature NaN", "temperature",
       [&] { dec.generate(1, ok, 1, Sampler::with_temperature(kNaN), rng, out); }, state},
      {"Decoder::generate", "temperature +inf", "temperature",
       [&] { dec.generate(1, ok, 1, Sampler::with_temperature(kInf), rng, out); }, state},
      {"Decoder::generate", "top_k above vocab", "top_k",
       [&] { dec.generate(1, ok, 1, Sampler::with_top_k(V + 1), rng, out); }, state},
      {"Decoder::generate", "top_p NaN", "top_p",
       [&] { dec.generate(1, ok, 1, Sampler::with_top_p(kNaN), rng, out); }, state},
      {"Decoder::generate", "min_p 2", "min_p",
       [&] { dec.generate(1, ok, 1, Sampler::with_min_p(2.0f), rng, out); }, state},
      {"Decoder::generate", "logprobs smaller than max_new_tokens", "logprobs size",
       [&] { dec.generate(1, ok, 2, Sampler::greedy(), rng, out, -1, std::span(small_logprobs)); },
       state},
      {"Decoder::generate", "a token id = vocab in the second step", "token id",
       [&] {
         std::vector<std::int32_t> long_bad(8, 1);
         long_bad[7] = std::int32_t(V);
         dec.generate(1, long_bad, 1, Sampler::greedy(), rng, out);
       },
       state},
      {"Decoder::classify", "no ids", "ids",
       [&] { dec.classify(1, ok, {}, std::span<float>{}, std::span<float>{}); }, state},
      {"Decoder::classify", "id = vocab", "ids[i]", [&] { dec.classify(1, ok, bad_ids, lg, pr); },
       state},
      {"Decoder::classify", "probs of the wrong size", "probs size",
       [&] { dec.classify(1, ok, yes_no, lg, std::span<float>(pr, 1)); }, state},
      {"Decoder::classify", "past capacity", "capacity",
       [&] { dec.classify(1, nine, yes_no, lg, pr); }, state},
      {"Decoder::truncate", "length above the current", "length", [&] { dec.truncate(0, 4); },
       state},
      {"Decoder::truncate", "length = -1", "length", [&] { dec.truncate(0, -1); }, state},
      {"Decoder::truncate", "seq = 2", "seq", [&] { dec.truncate(2, 0); }, state},
      {"Decoder::reset", "seq = -1", "seq", [&] { dec.reset(-1); }, state},
      {"Decoder::length", "seq = 2", "seq", [&] { (void)dec.length(2); }, state},
  });
}

TEST_CASE("bad_input: Decoder::set_encoder", "[bad_input][model]") {
  using C = configs::TrafficVLM;
  const OwnedWeights<C> weights({}, 7);
  Decoder<C> dec(weights.view(), {}, {.encoder_tokens = 4});
  const Index W = C::encoder_width;
  std::vector<float> states(5 * static_cast<std::size_t>(W), 0.25f), with_nan = states,
                                                                   with_inf = states;
  with_nan[7] = kNaN;
  with_inf[W + 3] = -kInf;
  const std::vector<std::uint8_t> valid(3, 1);
  std::vector<float> logits(static_cast<std::size_t>(C::vocab));
  const std::vector<std::int32_t> ok = {1, 2};
  auto state = [&] {
    // The encoder input of sequence 0: a forward works only once it is set.
    return lengths(dec) + std::to_string(dec.full_cache() != nullptr);
  };
  bad_input::run({
      {"Decoder::set_encoder", "a NaN state", "states[0][7]",
       [&] { dec.set_encoder(0, {with_nan.data(), 2, W}); }, state},
      {"Decoder::set_encoder", "a -inf state", "states[1][3]",
       [&] { dec.set_encoder(0, {with_inf.data(), 2, W}); }, state},
      {"Decoder::set_encoder", "cols = encoder_width - 1", "states.cols",
       [&] { dec.set_encoder(0, {states.data(), 2, W - 1}); }, state},
      {"Decoder::set_encoder", "0 rows", "states.rows",
       [&] { dec.set_encoder(0, {states.data(), 0, W}); }, state},
      {"Decoder::set_encoder", "more rows than encoder_tokens", "states.rows",
       [&] { dec.set_encoder(0, {states.data(), 5, W}); }, state},
      {"Decoder::set_encoder", "valid of the wrong size", "valid size",
       [&] { dec.set_encoder(0, {states.data(), 2, W}, valid); }, state},
      {"Decoder::set_encoder", "seq = 1", "seq", [&] { dec.set_encoder(1, {states.data(), 2, W}); },
       state},
      {"Decoder::forward", "before set_encoder", "encoder input",
       [&] { dec.forward(0, ok, {logits.data(), 1, C::vocab}); }, state},
  });
}

TEST_CASE("bad_input: sample, choose and SamplerWorkspace", "[bad_input][model]") {
  SamplerWorkspace ws(4);
  Rng rng(2);
  const std::vector<float> logits = {0.0f, 1.0f, 2.0f, 0.5f}, with_nan = {0.0f, kNaN, 2.0f, 0.5f},
                           with_inf = {0.0f, 1.0f, kInf, 0.5f}, three = {0.0f, 1.0f, 2.0f};
  const std::vector<std::int32_t> ids = {0, 2}, bad_ids = {0, 4}, none;
  std::vector<float> out(2), probs(2), one(1);
  const std::vector<LogitBias> bias_past = {{4, 1.0f}}, bias_negative = {{-1, 1.0f}},
                               bias_inf = {{1, kInf}}, bias_nan = {{1, kNaN}};
  bad_input::run({
      {"SamplerWorkspace", "vocab = -1", "vocab", [] { SamplerWorkspace w(-1); }},
      {"SamplerWorkspace", "vocab 2^62", "vocab", [] { SamplerWorkspace w(huge); }},
      {"sample", "logits size != vocab", "logits size",
       [&] { (void)sample(three, Sampler::greedy(), rng, ws); }},
      {"sample", "a NaN logit (greedy)", "logits[1]",
       [&] { (void)sample(with_nan, Sampler::greedy(), rng, ws); }},
      {"sample", "a NaN logit (temperature)", "logits[1]",
       [&] { (void)sample(with_nan, Sampler::with_temperature(1), rng, ws); }},
      {"sample", "a +inf logit (top-p)", "logits[2]",
       [&] { (void)sample(with_inf, Sampler::with_top_p(0.9f), rng, ws); }},
      {"sample", "temperature -1", "temperature",
       [&] { (void)sample(logits, Sampler::with_temperature(-1), rng, ws); }},
      {"sample", "top_k = 0", "top_k", [&] { (void)sample(logits, Sampler::with_top_k(0), rng, ws); }},
      {"sample", "top_p = 0", "top_p",
       [&] { (void)sample(logits, Sampler::with_top_p(0.0f), rng, ws); }},
      {"sample", "top_p = 1.5", "top_p",
       [&] { (void)sample(logits, Sampler::with_top_p(1.5f), rng, ws); }},
      {"sample", "an unknown kind", "sampler kind",
       [&] { (void)sample(logits, Sampler{.kind = static_cast<SamplerKind>(9)}, rng, ws); }},
      {"sample", "min_p = -0.5", "min_p", [&] { (void)sample(logits, Sampler::with_min_p(-0.5f), rng, ws); }},
      {"sample", "min_p NaN", "min_p", [&] { (void)sample(logits, Sampler::with_min_p(kNaN), rng, ws); }},
      {"sample", "top_k = -1 (temperature)", "top_k",
       [&] { (void)sample(logits, Sampler{.kind = SamplerKind::Temperature, .top_k = -1}, rng, ws); }},
      {"sample", "repetition_penalty 0", "repetition_penalty",
       [&] { (void)sample(logits, Sampler{.repetition_penalty = 0.0f}, rng, ws); }},
      {"sample", "repetition_penalty +inf", "repetition_penalty",
       [&] { (void)sample(logits, Sampler{.repetition_penalty = kInf}, rng, ws); }},
      {"sample", "frequency_penalty NaN", "frequency_penalty",
       [&] { (void)sample(logits, Sampler{.frequency_penalty = kNaN}, rng, ws); }},
      {"sample", "presence_penalty -inf", "presence_penalty",
       [&] { (void)sample(logits, Sampler{.presence_penalty = -kInf}, rng, ws); }},
      {"sample", "penalty_window -1", "penalty_window",
       [&] { (void)sample(logits, Sampler{.penalty_window = -1}, rng, ws); }},
      {"sample", "logit_bias token 4 of 4", "logit_bias token",
       [&] { (void)sample(logits, Sampler{.logit_bias = bias_past}, rng, ws); }},
      {"sample", "logit_bias token -1", "logit_bias token",
       [&] { (void)sample(logits, Sampler{.logit_bias = bias_negative}, rng, ws); }},
      {"sample", "logit_bias +inf", "logit_bias bias",
       [&] { (void)sample(logits, Sampler{.logit_bias = bias_inf}, rng, ws); }},
      {"sample", "logit_bias NaN", "logit_bias bias",
       [&] { (void)sample(logits, Sampler{.logit_bias = bias_nan}, rng, ws); }},
      {"sample", "history token 4 of 4", "history token",
       [&] { (void)sample(logits, Sampler::greedy(), rng, ws, bad_ids); }},
      {"sample_with_logprob", "a NaN logit", "logits[1]",
       [&] { (void)sample_with_logprob(with_nan, Sampler::greedy(), rng, ws); }},
      {"choose", "no ids", "ids", [&] { choose(logits, none, {}, {}); }},
      {"choose", "id = 4 of 4", "ids[i]", [&] { choose(logits, bad_ids, out, probs); }},
      {"choose", "out_logits of the wrong size", "out_logits size",
       [&] { choose(logits, ids, one, probs); }},
      {"choose", "probs of the wrong size", "probs size", [&] { choose(logits, ids, out, one); }},
  });
}
