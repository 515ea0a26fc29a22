// Fuzz target for io/safetensors.hpp. Input: one selector byte (its low 3 bits: how many bytes
// past an 8-byte boundary the file's copy starts, so misaligned tensors are reached too), then
// the file's bytes, given to SafetensorsFile::parse (the code open() runs). Accepted files are
// walked completely: every tensor's first and last byte, every F32 / F16 / BF16 tensor decoded to
// f32 in full, every 2-D one also viewed as a weight (when aligned) and its first and last rows
// decoded, so a span that points past the input shows up under AddressSanitizer. Rejected inputs
// must raise tformer::Error and nothing else.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "tformer/core/convert.hpp"
#include "tformer/io/safetensors.hpp"

namespace {

volatile float sink;
volatile unsigned char byte_sink;

void touch(const tformer::SafetensorsFile& file, const tformer::SafetensorsTensor& t) {
  if (!t.bytes.empty())
    byte_sink = std::to_integer<unsigned char>(t.bytes.front()) ^
                std::to_integer<unsigned char>(t.bytes.back());
  sink = float(t.elements()) + float(file.offset_of(t));
  if (!t.is_float()) return;
  // elements() · element size = bytes.size() (checked at parse), so this is bounded by the input.
  std::vector<float> values(static_cast<std::size_t>(t.elements()));
  file.to_f32(t.name, values);
  if (!values.empty()) sink = values.front() + values.back();
  if (t.shape.size() == 1) file.vector_f32(t.name, values);
  if (t.shape.size() != 2) return;
  try {
    const tformer::WeightView w = file.weight(t.name, t.shape[0], t.shape[1]);
    if (w.rows() == 0 || w.cols() == 0) return;
    std::vector<float> row(static_cast<std::size_t>(w.cols()));
    tformer::dequantize_row(w, 0, row);
    tformer::dequantize_row(w, w.rows() - 1, row);
    sink = row.front() + row.back();
  } catch (const tformer::Error&) {
    // misaligned: the expected refusal when the selector shifts the file
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  const std::size_t shift = data[0] % 8;
  std::vector<std::uint64_t> words((shift + size - 1 + 7) / 8 + 1);
  auto* start = reinterpret_cast<std::byte*>(words.data()) + shift;
  if (size > 1) std::memcpy(start, data + 1, size - 1);
  const std::span<const std::byte> bytes(start, size - 1);
  try {
    const auto file = tformer::SafetensorsFile::parse(bytes, "fuzz input");
    for (const auto& [key, value] : file.metadata()) sink = float(key.size() + value.size());
    for (const auto& [name, t] : file.tensors()) {
      if (file.find(name) != &t) __builtin_trap();
      touch(file, t);
    }
  } catch (const tformer::Error&) {
    // rejected: the expected outcome for most inputs
  }
  return 0;
}
