// Fuzz target for io/gguf.hpp. Input: one selector byte, then the file's bytes. The selector's
// low 2 bits shift the copy of the file by 0, 1, 2 or 3 bytes from an 8-byte aligned address
// (a parse() caller's buffer need not be aligned: views of misaligned tensors must be refused,
// not read). Accepted files are walked completely: every metadata value (nested arrays
// included), every tensor's bytes (first and last), every tensor of a supported type as a weight
// of its own shape, decoded in its first and last rows, and the f32/f16/bf16 vectors decoded, so
// a view that points past the input shows up under AddressSanitizer. Rejected inputs must raise
// tformer::Error and nothing else.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <variant>
#include <vector>

#include "tformer/core/convert.hpp"
#include "tformer/io/gguf.hpp"

namespace {

volatile float sink;
volatile std::size_t count_sink;

void touch(const tformer::GgufValue& v) {
  std::visit(
      [](const auto& x) {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, std::vector<tformer::GgufValue>>) {
          for (const auto& e : x) touch(e);
        } else if constexpr (std::is_same_v<T, std::string>) {
          count_sink = x.size() + (x.empty() ? 0 : std::size_t(x.back()));
        } else if constexpr (std::is_same_v<T, std::vector<std::string>>) {
          for (const auto& s : x) count_sink = s.size() + (s.empty() ? 0 : std::size_t(s.front()));
        } else if constexpr (std::is_arithmetic_v<T>) {
          sink = float(x);
        } else {  // numeric arrays
          for (const auto& e : x) sink = float(e);
        }
      },
      v.value);
  count_sink = v.size() + std::size_t(v.type()) + std::size_t(v.element_type()) +
               tformer::gguf_type_name(v).size();
}

void touch(const tformer::GgufFile& g, const tformer::GgufTensor& t) {
  if (!t.bytes.empty())
    sink = float(std::to_integer<int>(t.bytes.front()) + std::to_integer<int>(t.bytes.back()));
  tformer::WeightType type;
  if (!tformer::weight_type_of(t.type, type)) {
    try {
      (void)g.weight(t.name, 1, tformer::index(t.dims[0]));
    } catch (const tformer::Error&) {  // refused as a weight, as it should be
      return;
    }
    __builtin_trap();  // an unsupported type became a view
  }
  std::uint64_t rows = 1;
  for (std::size_t d = 1; d < t.dims.size(); ++d)
    if (__builtin_mul_overflow(rows, t.dims[d], &rows)) return;  // only when ne[0] is 0
  if (rows > (std::uint64_t(1) << 40) || t.dims[0] > (std::uint64_t(1) << 40)) return;
  const tformer::WeightView w = g.weight(t.name, tformer::index(rows), tformer::index(t.dims[0]));
  if (w.rows() > 0 && w.cols() > 0) {
    std::vector<float> row(static_cast<std::size_t>(w.cols()));
    tformer::dequantize_row(w, 0, row);
    tformer::dequantize_row(w, w.rows() - 1, row);
    sink = row.front() + row.back();
  }
  if (rows == 1 && (type == tformer::WeightType::f32 || type == tformer::WeightType::f16 ||
                    type == tformer::WeightType::bf16)) {
    std::vector<float> v(static_cast<std::size_t>(t.dims[0]));
    g.vector_f32(t.name, v);
    if (!v.empty()) sink = v.front() + v.back();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  const std::size_t shift = data[0] % 4;
  std::vector<std::uint64_t> words((size - 1 + shift + 7) / 8 + 1);
  auto* base = reinterpret_cast<std::byte*>(words.data()) + shift;
  if (size > 1) std::memcpy(base, data + 1, size - 1);
  const std::span<const std::byte> bytes(base, size - 1);
  try {
    const tformer::GgufFile g = tformer::GgufFile::parse(bytes, "fuzz.gguf");
    count_sink = g.version() + g.alignment() + g.data_offset();
    for (const auto& [key, value] : g.metadata()) {
      count_sink = key.size();
      touch(value);
      if (g.find(key) != &value) __builtin_trap();
    }
    if (g.find("general.alignment") != nullptr)
      if (g.get<std::uint32_t>("general.alignment") != g.alignment()) __builtin_trap();
    for (const auto& t : g.tensors()) {
      if (&g.tensor(t.name) != &t) __builtin_trap();
      try {
        touch(g, t);
      } catch (const tformer::Error&) {
        // a misaligned address (shifted copy or general.alignment < 4) or a non-finite block
        // scale: refused per tensor; the other tensors are still walked
      }
    }
  } catch (const tformer::Error&) {
    // rejected: the expected outcome for most inputs
  }
  return 0;
}
