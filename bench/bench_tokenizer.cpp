// Llama2cTokenizer::encode (io/llama2c.hpp) against prompt length, 1 KiB .. 512 KiB: the time
// should grow as n log n. run.c's merge loop, which encode used before issue 15, grows as n^2: 12 s
// for 32 KiB of this text on the machine that measured it, and so about half an hour for 400 KiB.
//
// Synthetic vocabulary: llama2.c's layout (<unk>, <s>, </s>, 256 byte tokens), the letters and the
// space, then every prefix of " word" for 2000 random words of 1..10 letters, scored by falling
// length (jittered), so each word of the text is merged letter by letter into one token: about
// one merge per byte. Bytes counted: the prompt's.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <cstdio>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "tformer/io/llama2c.hpp"

namespace {

// The vocabulary as a tokenizer.bin, and its words.
struct Synthetic {
  Synthetic() {
    std::mt19937 rng(42);
    auto add = [&](const std::string& piece, float score) {
      const std::int32_t len = std::int32_t(piece.size());
      put(&score, 4), put(&len, 4), put(piece.data(), piece.size());
      ++vocab;
    };
    const std::int32_t max_len = 16;
    put(&max_len, 4);
    add("<unk>", 0), add("\n<s>\n", 0), add("\n</s>\n", 0);
    for (int b = 0; b < 256; ++b) {
      char hex[8];
      std::snprintf(hex, sizeof hex, "<0x%02X>", b);
      add(hex, 0);
    }
    add(" ", -1);
    for (char c = 'a'; c <= 'z'; ++c) add(std::string(1, c), -1);
    std::set<std::string> prefixes;
    std::uniform_int_distribution<int> letter(0, 25), length(1, 10);
    for (int i = 0; i < 2000; ++i) {
      std::string w;
      for (int n = length(rng); n > 0; --n) w += char('a' + letter(rng));
      words.push_back(w);
      for (std::size_t n = 1; n <= w.size(); ++n) prefixes.insert(std::string(" ").append(w, 0, n));
    }
    std::uniform_real_distribution<float> jitter(0, 0.5f);
    for (const auto& p : prefixes) add(p, -float(p.size()) - jitter(rng));
  }
  void put(const void* p, std::size_t n) {
    const auto* b = static_cast<const std::byte*>(p);
    file.insert(file.end(), b, b + n);
  }
  // Random words joined by spaces, `bytes` long.
  std::string text(std::size_t bytes) const {
    std::mt19937 rng(7);
    std::uniform_int_distribution<std::size_t> pick(0, words.size() - 1);
    std::string t;
    while (t.size() < bytes) t += words[pick(rng)] + ' ';
    t.resize(bytes);
    return t;
  }
  std::vector<std::byte> file;
  tformer::index vocab = 0;
  std::vector<std::string> words;
};

void encode(benchmark::State& state, const tformer::Llama2cTokenizer& tok,
            const std::string& text) {
  std::size_t tokens = 0;
  for (auto _ : state) {
    const auto ids = tok.encode(text);
    tokens = ids.size();
    benchmark::DoNotOptimize(ids.data());
  }
  state.SetBytesProcessed(std::int64_t(text.size()) * std::int64_t(state.iterations()));
  state.counters["tokens"] = double(tokens);
}

}  // namespace

int main(int argc, char** argv) {
  static const Synthetic synthetic;
  static const tformer::Llama2cTokenizer tok(synthetic.file, synthetic.vocab);
  static std::vector<std::string> texts;
  for (std::size_t kib = 1; kib <= 512; kib *= 2) texts.push_back(synthetic.text(kib * 1024));
  for (const auto& text : texts)
    benchmark::RegisterBenchmark(
        ("llama2c_encode/" + std::to_string(text.size() / 1024) + "KiB").c_str(), encode,
        std::cref(tok), std::cref(text))
        ->Unit(benchmark::kMillisecond);
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
