// Fuzz target for io/llama2c.hpp (all three checkpoint versions). Input: one selector byte (even: the model reader, odd: the
// tokenizer reader, whose vocab size is 1 + selector / 2 mod 64), then the file's bytes. Valid inputs are
// walked completely (every weight view read in its first and last rows, scales included, every token
// decoded), so a view that points past the input shows up under AddressSanitizer. Rejected
// inputs must raise tformer::Error and nothing else.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "tformer/core/convert.hpp"
#include "tformer/io/llama2c.hpp"

namespace {

volatile float sink;

void touch(const tformer::WeightView& w) {  // f32 or q8_group: the first and last rows, whole
  if (w.rows() == 0 || w.cols() == 0) return;
  std::vector<float> row(static_cast<std::size_t>(w.cols()));
  tformer::dequantize_row(w, 0, row);
  tformer::dequantize_row(w, w.rows() - 1, row);
  sink = row.front() + row.back();
}
void touch(std::span<const float> v) {
  if (!v.empty()) sink = v.front() + v.back();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  // The reader needs 4-byte aligned memory, as a mapped file is.
  std::vector<std::uint32_t> words((size - 1 + 3) / 4);
  if (size > 1) std::memcpy(words.data(), data + 1, size - 1);
  const std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(words.data()), size - 1);
  try {
    if (data[0] % 2 == 0) {
      const auto model = tformer::Llama2cModel::view(bytes);
      const tformer::ModelWeights& w = model.weights();
      touch(w.embedding);
      touch(w.final_norm);
      touch(w.lm_head);
      for (const auto& l : w.layers) {
        touch(l.attn_norm), touch(l.ffn_norm);
        touch(l.wq), touch(l.wk), touch(l.wv), touch(l.wo);
        touch(l.ffn.gate), touch(l.ffn.up), touch(l.ffn.down);
      }
    } else {
      const tformer::index vocab = 1 + (data[0] / 2) % 64;
      const tformer::Llama2cTokenizer tok(bytes, vocab);
      for (std::int32_t i = 0; i < tok.vocab_size(); ++i) sink = float(tok.decode(1, i).size());
      const auto ids = tok.encode("ab a\xc3\xa9 \xe2\x82\xac!", true, true);
      sink = float(ids.size());
    }
  } catch (const tformer::Error&) {
    // rejected: the expected outcome for most inputs
  }
  return 0;
}
