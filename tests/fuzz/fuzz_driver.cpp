// A bounded, deterministic stand-in for libFuzzer where it is not available (GCC builds): runs
// every file of the seed corpus, then `runs` mutations of them (bit flips, byte overwrites with
// boundary values, truncations, extensions, and the int32 fields at bytes 1 + 4k, k < 7, set to
// extreme values: a model's header fields, or a tokenizer input's vocab_size and prompt length).
// Linked with one target (llama2c_fuzz.cpp or tokenizer_fuzz.cpp):
//   tformer_fuzz_llama2c_driver <corpus dir> <runs>
//   tformer_fuzz_tokenizer_driver <corpus dir> <runs>
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s <corpus dir> <runs>\n", argv[0]);
    return 2;
  }
  // In file-name order, so runs are reproducible. (Not sorted by content: GCC 12 at -O3 reports
  // a false -Wstringop-overread inside std::vector<std::uint8_t>'s comparison.)
  std::vector<std::filesystem::path> files;
  for (const auto& entry : std::filesystem::directory_iterator(argv[1])) files.push_back(entry.path());
  std::sort(files.begin(), files.end());
  std::vector<std::vector<std::uint8_t>> corpus;
  for (const auto& file : files) {
    std::ifstream in(file, std::ios::binary);
    corpus.emplace_back(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  if (corpus.empty()) {
    std::fprintf(stderr, "empty corpus\n");
    return 2;
  }
  for (const auto& c : corpus) LLVMFuzzerTestOneInput(c.data(), c.size());
  const long runs = std::atol(argv[2]);
  std::mt19937_64 rng(20261122);
  const std::int32_t extremes[] = {0, 1, -1, 2, 3, 7, 64, 255, 1 << 16, 1 << 30, INT32_MAX, INT32_MIN};
  for (long r = 0; r < runs; ++r) {
    std::vector<std::uint8_t> x = corpus[rng() % corpus.size()];
    const int edits = 1 + int(rng() % 4);
    for (int e = 0; e < edits; ++e) {
      switch (rng() % 5) {
        case 0:
          if (!x.empty()) x[rng() % x.size()] ^= std::uint8_t(1u << (rng() % 8));
          break;
        case 1:
          if (!x.empty()) x[rng() % x.size()] = std::uint8_t(rng());
          break;
        case 2:
          x.resize(rng() % (x.size() + 1));
          break;
        case 3:
          x.resize(x.size() + rng() % 64, std::uint8_t(rng()));
          break;
        case 4: {  // a header field (bytes 1 + 4k) set to an extreme value
          const std::size_t at = 1 + 4 * (rng() % 7);
          if (x.size() >= at + 4) {
            const std::int32_t v = extremes[rng() % std::size(extremes)];
            std::memcpy(x.data() + at, &v, 4);
          }
          break;
        }
      }
    }
    LLVMFuzzerTestOneInput(x.data(), x.size());
  }
  std::printf("fuzz driver: %zu corpus inputs and %ld mutations, no crash\n", corpus.size(), runs);
  return 0;
}
