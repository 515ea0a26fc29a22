// Fuzz target for the Decoder's public calls. The input is a program: each operation is one
// selector byte and its operands read from the following bytes (token ids, sequences, lengths,
// sampler settings, encoder shapes and values, all of any value, NaN included). Two tiny
// decoders are built once: a Llama-shaped one whose local layers keep a ring with attention
// sinks next to global layers (so truncate, streaming and both caches are driven), and a
// TrafficVLM-shaped one with cross-attention. Every input starts from empty sequences.
//
// A call may raise tformer::Error (bad input) and nothing else; after a call that succeeds the
// logits must be finite (the weights are small, so a NaN is a defect) and lengths must match
// what was fed. Anything else aborts, which libFuzzer and the driver report.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <span>
#include <vector>

#include "tformer/model/decoder.hpp"

namespace {

using tformer::index;

struct Hybrid : tformer::configs::Qwen3 {  // local ring layers with a sink, every second global
  static tformer::ModelParams params() {
    tformer::ModelParams p = tformer::presets::qwen3();
    p.attention = {.window = 4, .global_every = 2, .sinks = 1, .ring = true};
    return p;
  }
};
struct SmallVLM : tformer::configs::Base, tformer::configs::Dynamic {
  static constexpr index encoder_width = tformer::dynamic;
  static constexpr bool cross_attention = true;
  static constexpr tformer::HeadKind head = tformer::HeadKind::Tied;
  static tformer::ModelParams params() { return {.pad_id = 0}; }
};

constexpr tformer::Dims dims = {.vocab = 37, .hidden = 32, .intermediate = 48, .layers = 2,
                                .heads = 4, .kv_heads = 2, .head_dim = 8, .max_positions = 24};
constexpr tformer::Dims vlm_dims = {.vocab = 37, .hidden = 32, .intermediate = 48, .layers = 2,
                                    .heads = 4, .kv_heads = 2, .head_dim = 8,
                                    .max_positions = 24, .encoder_width = 16};
constexpr tformer::DecoderOptions options = {.sequences = 2, .capacity = 16, .max_tokens = 6,
                                             .encoder_tokens = 5};

// Calls that succeeded and that raised tformer::Error, printed at exit when TFORMER_FUZZ_STATS
// is set (to see that the programs reach past the first check).
long accepted = 0, rejected = 0;
void print_stats() { std::printf("decoder_fuzz: %ld calls accepted, %ld rejected\n", accepted, rejected); }

[[noreturn]] void defect(const char* what) {
  std::fprintf(stderr, "decoder_fuzz: %s\n", what);
  std::abort();
}

// Operands from the input; zeros once it runs out.
class Reader {
 public:
  Reader(const std::uint8_t* data, std::size_t size) : data_(data), size_(size) {}
  bool done() const { return at_ >= size_; }
  std::uint8_t u8() { return at_ < size_ ? data_[at_++] : 0; }
  // Mostly small values near the valid range, sometimes extremes.
  std::int64_t number() {
    const std::uint8_t kind = u8();
    switch (kind % 8) {
      case 0: return -1;
      case 1: return std::numeric_limits<std::int32_t>::max();
      case 2: return std::numeric_limits<std::int64_t>::min();
      case 3: return std::int64_t(1) << (u8() % 63);
      default: return static_cast<std::int8_t>(u8());  // [-128, 127]
    }
  }
  float value() {
    switch (u8() % 8) {
      case 0: return std::numeric_limits<float>::quiet_NaN();
      case 1: return std::numeric_limits<float>::infinity();
      case 2: return 0.0f;
      default: return static_cast<std::int8_t>(u8()) / 32.0f;
    }
  }
  std::vector<std::int32_t> tokens() {
    std::vector<std::int32_t> t(u8() % 10);
    for (auto& id : t) id = u8() % 16 == 0 ? static_cast<std::int32_t>(number()) : u8() % 37;
    return t;
  }

 private:
  const std::uint8_t* data_;
  std::size_t size_, at_ = 0;
};

template <class D>
void require_finite(const std::vector<float>& logits, index rows, const D& dec) {
  for (index i = 0; i < rows * dec.dims().vocab; ++i)
    if (!std::isfinite(logits[std::size_t(i)])) defect("non-finite logits from valid input");
}

template <class D>
void step(D& dec, Reader& in, std::vector<float>& logits, std::vector<std::int32_t>& out) {
  const index V = dec.dims().vocab;
  const index seq = in.u8() % 4 == 0 ? in.number() : in.u8() % 3;  // 2: one past the last
  switch (in.u8() % 6) {
    case 0: {  // forward, one sequence
      const auto tokens = in.tokens();
      const index before = seq >= 0 && seq < 2 ? dec.length(seq) : 0;
      dec.forward(seq, tokens, {logits.data(), 1, V});
      require_finite(logits, 1, dec);
      if (dec.length(seq) != before + index(tokens.size())) defect("length after forward");
      break;
    }
    case 1: {  // a batch, logits of the last or of every token, of any row count
      const auto a = in.tokens(), b = in.tokens();
      const index other = in.u8() % 3;
      const tformer::SequenceTokens batch[] = {{seq, a}, {other, b}};
      const std::size_t n = 1 + in.u8() % 2;
      const auto which = in.u8() % 2 ? tformer::LogitsFor::All : tformer::LogitsFor::Last;
      const index rows = in.u8() % 14;
      dec.forward(std::span(batch, n), {logits.data(), rows, V}, which);
      require_finite(logits, rows, dec);
      break;
    }
    case 2: dec.truncate(seq, in.number()); break;
    case 3: dec.reset(seq); break;
    case 4: {  // generate with any sampler settings
      const auto prompt = in.tokens();
      const index n = in.u8() % 6;
      tformer::Sampler s;
      s.kind = static_cast<tformer::SamplerKind>(in.u8() % 5);
      s.temperature = in.value();
      s.top_k = in.number();
      s.top_p = in.value();
      tformer::Rng rng(in.u8());
      const index written = dec.generate(seq, prompt, n, s, rng, std::span(out).first(in.u8() % 8));
      for (index i = 0; i < written; ++i)
        if (out[std::size_t(i)] < 0 || out[std::size_t(i)] >= V) defect("token out of range");
      break;
    }
    case 5: {  // classify
      const auto tokens = in.tokens();
      std::vector<std::int32_t> ids(in.u8() % 3);
      for (auto& id : ids) id = static_cast<std::int32_t>(in.u8() % 8 ? in.u8() % 37 : in.number());
      std::vector<float> l(ids.size() + in.u8() % 2), p(ids.size());
      dec.classify(seq, tokens, ids, l, p);
      for (const float x : p)
        if (!(x >= 0.0f && x <= 1.0f)) defect("classify probability outside [0, 1]");
      break;
    }
  }
}

void encoder_step(tformer::Decoder<SmallVLM>& dec, Reader& in) {
  const index seq = in.u8() % 3;
  const index rows = in.u8() % 7, cols = in.u8() % 4 ? 16 : in.u8() % 20;
  std::vector<float> states(std::size_t(rows * cols));
  for (auto& x : states) x = in.u8() % 16 ? static_cast<std::int8_t>(in.u8()) / 64.0f : in.value();
  std::vector<std::uint8_t> valid(in.u8() % 3 == 0 ? std::size_t(in.u8() % 7) : 0);
  for (auto& v : valid) v = in.u8() % 2;
  dec.set_encoder(seq, {states.data(), rows, cols}, valid);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const tformer::OwnedWeights<Hybrid> weights(dims, 1);
  static const tformer::OwnedWeights<SmallVLM> vlm_weights(vlm_dims, 2);
  static tformer::Decoder<Hybrid> dec(weights.view(), dims, options);
  static tformer::Decoder<SmallVLM> vlm(vlm_weights.view(), vlm_dims, options);
  static std::vector<float> logits(std::size_t(14 * dims.vocab));
  static std::vector<std::int32_t> out(8);
  static const bool stats = std::getenv("TFORMER_FUZZ_STATS") && std::atexit(print_stats) == 0;
  (void)stats;
  for (tformer::index s = 0; s < options.sequences; ++s) dec.reset(s), vlm.reset(s);
  Reader in(data, size);
  for (int op = 0; op < 32 && !in.done(); ++op) {
    try {
      switch (in.u8() % 3) {
        case 0: step(dec, in, logits, out); break;
        case 1: step(vlm, in, logits, out); break;
        case 2: encoder_step(vlm, in); break;
      }
      ++accepted;
    } catch (const tformer::Error&) {
      ++rejected;
      // rejected bad input: the expected outcome for many programs
    }
  }
  return 0;
}
