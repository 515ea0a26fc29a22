// Fuzz target for Llama2cTokenizer (io/llama2c.hpp): its reader, encode, decode and piece.
// Input: one flags byte (bit 0: add BOS, bit 1: add EOS), int32 vocab_size, int32 prompt length
// (clamped to what follows), the prompt's bytes, then the tokenizer.bin bytes. A rejected file
// must raise tformer::Error and nothing else. On an accepted one, encode must return ids in
// [0, vocab_size) only, and equal run.c's quadratic loop (tests/reference) on prompts of up to
// 1 KB whenever that loop's ids are all in the vocabulary; when they are not, encode must raise
// tformer::Error instead. A failed property aborts, so both libFuzzer and the driver report it.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "reference/llama2c_tokenizer_reference.hpp"
#include "tformer/io/llama2c.hpp"

namespace {

volatile std::size_t sink;

[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "tokenizer fuzz: %s\n", what);
  std::abort();
}

std::int32_t read_i32(const std::uint8_t* p) {
  std::int32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

// encode against the reference, then every returned id through piece and decode.
void check_encode(const tformer::Llama2cTokenizer& tok, std::string_view prompt, bool bos,
                  bool eos) {
  const tformer::index vocab = tok.vocab_size();
  std::vector<std::int32_t> got;
  bool rejected = false;
  try {
    got = tok.encode(prompt, bos, eos);
  } catch (const tformer::Error&) {
    rejected = true;
  }
  if (prompt.size() <= 1024) {
    std::vector<std::string> pieces;
    std::vector<float> scores;
    for (std::int32_t i = 0; i < vocab; ++i) {
      pieces.emplace_back(tok.piece(i));
      scores.push_back(tok.score(i));
    }
    const auto want = ref::llama2c_encode(pieces, scores, prompt, bos, eos);
    const bool outside = std::any_of(want.begin(), want.end(),
                                     [&](std::int32_t id) { return id < 0 || id >= vocab; });
    if (rejected != outside)
      fail(rejected ? "rejected a prompt run.c encodes" : "returned an id outside the vocabulary");
    if (!rejected && got != want) fail("encode differs from run.c's merge loop");
  }
  std::int32_t prev = tformer::Llama2cTokenizer::bos;
  for (const std::int32_t id : got) {
    if (id < 0 || id >= vocab) fail("returned an id outside the vocabulary");
    sink = tok.piece(id).size() + tok.decode(prev, id).size();
    prev = id;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 9) return 0;
  const bool bos = (data[0] & 1) != 0, eos = (data[0] & 2) != 0;
  const tformer::index vocab = read_i32(data + 1);
  const std::size_t prompt_size =
      std::min<std::size_t>(static_cast<std::uint32_t>(read_i32(data + 5)), size - 9);
  const std::string_view prompt(reinterpret_cast<const char*>(data + 9), prompt_size);
  const std::span<const std::byte> file(reinterpret_cast<const std::byte*>(data + 9 + prompt_size),
                                        size - 9 - prompt_size);
  try {
    const tformer::Llama2cTokenizer tok(file, vocab);
    check_encode(tok, prompt, bos, eos);
    for (std::int32_t id : {std::int32_t(-1), std::int32_t(tok.vocab_size())}) {
      try {  // just outside the vocabulary: an error, not a read
        sink = tok.decode(0, id).size();
        fail("decode accepted an id outside the vocabulary");
      } catch (const tformer::Error&) {
      }
    }
  } catch (const tformer::Error&) {
    // rejected file or vocab_size: the expected outcome for most inputs
  }
  return 0;
}
