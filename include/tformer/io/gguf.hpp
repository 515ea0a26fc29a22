// GGUF files (llama.cpp's format, versions 2 and 3; ggml's docs/gguf.md), read without copying
// the tensors: GgufFile gives the metadata as values, the tensors as byte spans, and typed
// WeightViews (f32, f16, bf16, q8_0, q4_0) over the file's memory.
//
// Little-endian: uint32 magic 0x46554747 ("GGUF"), uint32 version, uint64 tensor_count, uint64
// metadata_kv_count; the key-value pairs (key: uint64 length + bytes, no NUL; uint32 value type;
// the value); the tensor infos (name; uint32 n_dims; uint64 ne[n_dims], ne[0] innermost; uint32
// ggml_type; uint64 offset relative to the data section); zero padding up to the alignment; the
// tensor data. The alignment is `general.alignment` (a uint32) when present, else 32; the data
// section starts at the first multiple of it at or after the end of the tensor infos, and every
// tensor's offset is a multiple of it. Version 3 differs from 2 only in allowing big-endian files,
// which carry no mark: a version whose low 16 bits are zero (a big-endian 3 read little-endian) is
// refused as such. Version 1 (32-bit counts) is refused.
//
// Every count and length is checked, with overflow-safe arithmetic, against the bytes left before
// anything is reserved or read (a count of 2^60 is a tformer::Error, never bad_alloc), and every
// tensor (its byte size from its ggml type and shape) against the file, before any tensor data is
// touched: offsets multiples of the alignment, extents inside the file, no two tensors
// overlapping. Duplicate keys and tensor names, unknown value or ggml types, n_dims outside
// [1, 4], ne[0] not a multiple of its type's block, bools other than 0/1, arrays nested more than
// 4 deep and a `general.alignment` that is not a uint32 power of two in [1, 2^20] are refused.
// Memory: the metadata is copied (numbers into vectors, strings into std::string): at most about
// 5 bytes of memory per byte of metadata in the file (an empty string takes 8 file bytes and a
// 32-byte std::string). Every message names the entry point, the path (or the name given to
// parse), the key or tensor, what was expected and what was found.
//
// Tensors of other ggml types (q4_1, q5_x, k-quants, i-quants, …) are listed with their size and
// name, and refused by weight() and vector_f32() with an Error naming the tensor and its type.
//
// Files: open() takes regular files only and maps them (FileMode::Map, the default: no copy; the
// file must keep its length while the GgufFile lives, see FileMode) or reads them (FileMode::Read).
// parse() reads bytes the caller keeps alive. The data section's addresses are those of the
// buffer: f32 views need the tensor's address 4-byte aligned, the 16-bit and block types 2-byte
// (true of every file whose alignment is at least 4, mapped or read).
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <deque>
#include <map>
#include <span>
#include <sstream>
#include <string>
#include <string_view>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <variant>
#include <vector>

#include "tformer/core/convert.hpp"
#include "tformer/core/error.hpp"
#include "tformer/core/numeric.hpp"
#include "tformer/core/weight_view.hpp"
#include "tformer/io/file_bytes.hpp"

namespace tformer {

// The value types of GGUF metadata (gguf_metadata_value_type). Plain data.
enum class GgufType : std::uint32_t {
  uint8 = 0, int8 = 1, uint16 = 2, int16 = 3, uint32 = 4, int32 = 5, float32 = 6, boolean = 7,
  string = 8, array = 9, uint64 = 10, int64 = 11, float64 = 12,
};

// ggml's tensor types (enum ggml_type in ggml.h; the numbers are the file's). Only f32, f16,
// q4_0, q8_0 and bf16 become WeightViews; the others are listed and refused as weights.
enum class GgmlType : std::uint32_t {
  f32 = 0, f16 = 1, q4_0 = 2, q4_1 = 3, q5_0 = 6, q5_1 = 7, q8_0 = 8, q8_1 = 9, q2_k = 10,
  q3_k = 11, q4_k = 12, q5_k = 13, q6_k = 14, q8_k = 15, iq2_xxs = 16, iq2_xs = 17, iq3_xxs = 18,
  iq1_s = 19, iq4_nl = 20, iq3_s = 21, iq2_s = 22, iq4_xs = 23, i8 = 24, i16 = 25, i32 = 26,
  i64 = 27, f64 = 28, iq1_m = 29, bf16 = 30, tq1_0 = 34, tq2_0 = 35, mxfp4 = 39,
};

inline namespace TFORMER_ARCH_NS {

// ggml's name, values per block and bytes per block of a type (ggml.c's type_traits; the block
// sizes are ggml-common.h's static_asserts). block_bytes 0: not a type a GGUF file may hold (the
// removed 4, 5, 31–33, 36–38, and everything from 40 on).
struct GgmlTypeInfo {
  const char* name;
  std::uint64_t block_values;
  std::uint64_t block_bytes;
};

constexpr GgmlTypeInfo ggml_type_info(std::uint32_t type) noexcept {
  switch (type) {
    case 0: return {"f32", 1, 4};
    case 1: return {"f16", 1, 2};
    case 2: return {"q4_0", 32, 18};  // f16 d, 16 bytes of nibbles
    case 3: return {"q4_1", 32, 20};  // f16 d, f16 m, 16 bytes
    case 6: return {"q5_0", 32, 22};  // f16 d, 4 bytes of high bits, 16 bytes
    case 7: return {"q5_1", 32, 24};
    case 8: return {"q8_0", 32, 34};  // f16 d, 32 int8
    case 9: return {"q8_1", 32, 36};  // f16 d, f16 s, 32 int8
    case 10: return {"q2_K", 256, 84};
    case 11: return {"q3_K", 256, 110};
    case 12: return {"q4_K", 256, 144};
    case 13: return {"q5_K", 256, 176};
    case 14: return {"q6_K", 256, 210};
    case 15: return {"q8_K", 256, 292};
    case 16: return {"iq2_xxs", 256, 66};
    case 17: return {"iq2_xs", 256, 74};
    case 18: return {"iq3_xxs", 256, 98};
    case 19: return {"iq1_s", 256, 50};
    case 20: return {"iq4_nl", 32, 18};
    case 21: return {"iq3_s", 256, 110};
    case 22: return {"iq2_s", 256, 82};
    case 23: return {"iq4_xs", 256, 136};
    case 24: return {"i8", 1, 1};
    case 25: return {"i16", 1, 2};
    case 26: return {"i32", 1, 4};
    case 27: return {"i64", 1, 8};
    case 28: return {"f64", 1, 8};
    case 29: return {"iq1_m", 256, 56};
    case 30: return {"bf16", 1, 2};
    case 34: return {"tq1_0", 256, 54};
    case 35: return {"tq2_0", 256, 66};
    case 39: return {"mxfp4", 32, 17};  // uint8 exponent, 16 bytes
    default: return {"unknown", 1, 0};
  }
}

inline const char* ggml_type_name(GgmlType type) noexcept {
  return ggml_type_info(static_cast<std::uint32_t>(type)).name;
}

// The WeightType a ggml type is read as, if any (f32, f16, bf16, q8_0, q4_0: tformer's q8_0 and
// q4_0 blocks are ggml's block_q8_0 and block_q4_0 byte for byte, core/numeric.hpp).
constexpr bool weight_type_of(GgmlType type, WeightType& out) noexcept {
  switch (type) {
    case GgmlType::f32: out = WeightType::f32; return true;
    case GgmlType::f16: out = WeightType::f16; return true;
    case GgmlType::bf16: out = WeightType::bf16; return true;
    case GgmlType::q8_0: out = WeightType::q8_0; return true;
    case GgmlType::q4_0: out = WeightType::q4_0; return true;
    default: return false;
  }
}

struct GgufValue;

// A metadata value: one of the 12 scalar types (bool for BOOL, std::string for STRING), or an
// array: a vector of one scalar type (std::vector<std::string> for strings, std::vector<bool>
// for bools), or std::vector<GgufValue> for an array of arrays (each element itself an array).
// An empty array keeps its element type.
using GgufVariant =
    std::variant<std::uint8_t, std::int8_t, std::uint16_t, std::int16_t, std::uint32_t,
                 std::int32_t, float, bool, std::string, std::uint64_t, std::int64_t, double,
                 std::vector<std::uint8_t>, std::vector<std::int8_t>, std::vector<std::uint16_t>,
                 std::vector<std::int16_t>, std::vector<std::uint32_t>, std::vector<std::int32_t>,
                 std::vector<float>, std::vector<bool>, std::vector<std::string>,
                 std::vector<std::uint64_t>, std::vector<std::int64_t>, std::vector<double>,
                 std::vector<GgufValue>>;

struct GgufValue {
  GgufVariant value;

  // The value's type: a scalar's, or GgufType::array.
  GgufType type() const noexcept {
    const std::size_t i = value.index();
    if (i < 12) return static_cast<GgufType>(i < 9 ? i : i + 1);
    return GgufType::array;
  }
  // An array's element type (GgufType::array for an array of arrays); a scalar's own type.
  GgufType element_type() const noexcept {
    const std::size_t i = value.index();
    if (i < 12) return type();
    if (i == 24) return GgufType::array;
    const std::size_t e = i - 12;
    return static_cast<GgufType>(e < 9 ? e : e + 1);
  }
  // Elements of an array; 1 for a scalar.
  std::size_t size() const noexcept {
    return std::visit(
        [](const auto& v) -> std::size_t {
          if constexpr (requires { v.size(); } &&
                        !std::is_same_v<std::decay_t<decltype(v)>, std::string>)
            return v.size();
          else
            return 1;
        },
        value);
  }
};

inline const char* gguf_type_name(GgufType type) noexcept {
  switch (type) {
    case GgufType::uint8: return "uint8";
    case GgufType::int8: return "int8";
    case GgufType::uint16: return "uint16";
    case GgufType::int16: return "int16";
    case GgufType::uint32: return "uint32";
    case GgufType::int32: return "int32";
    case GgufType::float32: return "float32";
    case GgufType::boolean: return "bool";
    case GgufType::string: return "string";
    case GgufType::array: return "array";
    case GgufType::uint64: return "uint64";
    case GgufType::int64: return "int64";
    case GgufType::float64: return "float64";
  }
  return "unknown";
}

// "uint32", "array of string", "array of array".
inline std::string gguf_type_name(const GgufValue& v) {
  if (v.type() != GgufType::array) return gguf_type_name(v.type());
  return std::string("array of ") + gguf_type_name(v.element_type());
}

namespace gguf_detail {

// The GgufType name of a variant alternative, for get<T>'s message.
template <class T>
std::string name_of() {
  GgufValue v{T{}};
  return gguf_type_name(v);
}

constexpr std::uint32_t magic = 0x46554747;  // "GGUF" read little-endian
constexpr std::uint64_t default_alignment = 32;
constexpr std::uint64_t max_alignment = std::uint64_t(1) << 20;  // ggml's own bound
constexpr int max_array_depth = 4;  // an array of arrays is depth 2
constexpr std::uint64_t min_kv_bytes = 8 + 4;                 // key length, value type
constexpr std::uint64_t min_tensor_info_bytes = 8 + 4 + 4 + 8;  // name length, n_dims, type, offset

// Bytes a scalar of `type` takes in the file; for string and array, the least an element takes
// (a uint64 length; a uint32 type and a uint64 count). 0 for an unknown type.
constexpr std::uint64_t min_value_bytes(std::uint32_t type) noexcept {
  switch (type) {
    case 0: case 1: case 7: return 1;
    case 2: case 3: return 2;
    case 4: case 5: case 6: return 4;
    case 10: case 11: case 12: return 8;
    case 8: return 8;
    case 9: return 12;
    default: return 0;
  }
}

inline std::string quote_name(std::string_view s) {
  std::string out = "'";
  for (const char c : s.substr(0, 200)) out += (c >= 0x20 && c < 0x7f) ? c : '?';
  if (s.size() > 200) out += "...";
  return out + "'";
}

// Reads little-endian fields from a byte span, each checked against the bytes left.
class Cursor {
 public:
  Cursor(std::span<const std::byte> bytes, const std::string& where)
      : bytes_(bytes), where_(where) {}

  std::uint64_t at() const noexcept { return at_; }
  std::uint64_t left() const noexcept { return bytes_.size() - at_; }
  const std::string& where() const noexcept { return where_; }

  // Throws unless n more bytes are there; `what` names the field.
  void need(std::uint64_t n, const std::string& what) const {
    if (n > left()) [[unlikely]] {
      std::ostringstream expected, given;
      expected << n << " bytes at offset " << at_;
      given << left() << " bytes left in a file of " << bytes_.size();
      detail::fail_check(where_, what, expected.str(), given.str());
    }
  }
  template <class T>
  T read(const std::string& what) {
    need(sizeof(T), what);
    T v;
    std::memcpy(&v, bytes_.data() + at_, sizeof v);
    at_ += sizeof v;
    return v;
  }
  // A gguf_string: uint64 length, then the bytes.
  std::string string(const std::string& what) {
    const auto n = read<std::uint64_t>(what + " length");
    need(n, what);
    std::string s(reinterpret_cast<const char*>(bytes_.data() + at_), static_cast<std::size_t>(n));
    at_ += n;
    return s;
  }
  // n elements of T, copied.
  template <class T>
  std::vector<T> array(std::uint64_t n) {
    std::vector<T> v(static_cast<std::size_t>(n));  // n·sizeof(T) <= left(), checked by the caller
    if (n > 0) std::memcpy(v.data(), bytes_.data() + at_, static_cast<std::size_t>(n) * sizeof(T));
    at_ += n * sizeof(T);
    return v;
  }
  void skip_to(std::uint64_t offset) noexcept { at_ = offset; }

 private:
  std::span<const std::byte> bytes_;
  std::uint64_t at_ = 0;
  const std::string& where_;
};

inline bool read_bool(Cursor& c, const std::string& what) {
  const auto b = c.read<std::uint8_t>(what);
  if (b > 1) [[unlikely]]
    detail::fail_check(c.where(), what, "a bool: 0 or 1", int(b));
  return b == 1;
}

inline GgufValue read_value(Cursor& c, std::uint32_t type, int depth, const std::string& what);

template <class T>
GgufValue read_scalar_array(Cursor& c, std::uint64_t n) {
  return GgufValue{c.array<T>(n)};
}

inline GgufValue read_array(Cursor& c, int depth, const std::string& what) {
  const auto type = c.read<std::uint32_t>(what + " element type");
  const std::uint64_t min = min_value_bytes(type);
  if (min == 0 || (type == 9 && depth >= max_array_depth)) [[unlikely]] {
    std::ostringstream expected;
    expected << "a GGUF value type in [0, 12]"
             << (type == 9 ? " (arrays nested at most " + std::to_string(max_array_depth) + " deep)"
                           : "");
    detail::fail_check(c.where(), what + " element type", expected.str(), type);
  }
  const auto n = c.read<std::uint64_t>(what + " count");
  if (n > c.left() / min) [[unlikely]] {
    std::ostringstream expected, given;
    expected << "at most " << c.left() / min << " elements of " << gguf_type_name(GgufType(type))
             << " (" << min << "+ bytes each, " << c.left() << " bytes left)";
    detail::fail_check(c.where(), what + " count", expected.str(), n);
  }
  switch (type) {
    case 0: return read_scalar_array<std::uint8_t>(c, n);
    case 1: return read_scalar_array<std::int8_t>(c, n);
    case 2: return read_scalar_array<std::uint16_t>(c, n);
    case 3: return read_scalar_array<std::int16_t>(c, n);
    case 4: return read_scalar_array<std::uint32_t>(c, n);
    case 5: return read_scalar_array<std::int32_t>(c, n);
    case 6: return read_scalar_array<float>(c, n);
    case 10: return read_scalar_array<std::uint64_t>(c, n);
    case 11: return read_scalar_array<std::int64_t>(c, n);
    case 12: return read_scalar_array<double>(c, n);
    case 7: {
      std::vector<bool> v(static_cast<std::size_t>(n));
      for (std::uint64_t i = 0; i < n; ++i)
        v[std::size_t(i)] = read_bool(c, what + "[" + std::to_string(i) + "]");
      return GgufValue{std::move(v)};
    }
    case 8: {
      std::vector<std::string> v;
      v.reserve(static_cast<std::size_t>(n));
      for (std::uint64_t i = 0; i < n; ++i)
        v.push_back(c.string(what + "[" + std::to_string(i) + "]"));
      return GgufValue{std::move(v)};
    }
    default: {  // 9: arrays of arrays
      std::vector<GgufValue> v;
      v.reserve(static_cast<std::size_t>(n));
      for (std::uint64_t i = 0; i < n; ++i)
        v.push_back(read_array(c, depth + 1, what + "[" + std::to_string(i) + "]"));
      return GgufValue{std::move(v)};
    }
  }
}

inline GgufValue read_value(Cursor& c, std::uint32_t type, int depth, const std::string& what) {
  switch (type) {
    case 0: return {c.read<std::uint8_t>(what)};
    case 1: return {c.read<std::int8_t>(what)};
    case 2: return {c.read<std::uint16_t>(what)};
    case 3: return {c.read<std::int16_t>(what)};
    case 4: return {c.read<std::uint32_t>(what)};
    case 5: return {c.read<std::int32_t>(what)};
    case 6: return {c.read<float>(what)};
    case 7: return {read_bool(c, what)};
    case 8: return {c.string(what)};
    case 9: return read_array(c, depth + 1, what);
    case 10: return {c.read<std::uint64_t>(what)};
    case 11: return {c.read<std::int64_t>(what)};
    case 12: return {c.read<double>(what)};
    default:
      detail::fail_check(c.where(), what + " type", "a GGUF value type in [0, 12]", type);
  }
}

inline std::string dims_string(const std::vector<std::uint64_t>& ne) {
  std::string s = "ne = [";
  for (std::size_t i = 0; i < ne.size(); ++i) s += (i ? ", " : "") + std::to_string(ne[i]);
  return s + "]";
}

}  // namespace gguf_detail

// One tensor: its name, ggml type, shape (ne, innermost first: ne[0] values per row), offset
// from the data section's start, and its bytes inside the file.
struct GgufTensor {
  std::string name;
  GgmlType type = GgmlType::f32;
  std::vector<std::uint64_t> dims;
  std::uint64_t offset = 0;
  std::span<const std::byte> bytes;

  std::uint64_t elements() const noexcept {
    std::uint64_t n = 1;
    for (const std::uint64_t d : dims) n *= d;  // below 2^63, checked at parse
    return n;
  }
  const char* type_name() const noexcept { return ggml_type_name(type); }
};

// A parsed GGUF file (move-only: views handed out point at its tensor names and bytes).
class GgufFile {
 public:
  // Maps (or reads, see FileMode) `path` and parses it; throws tformer::Error if it is not a
  // regular file or not a consistent GGUF file, naming the path.
  static GgufFile open(const std::string& path, FileMode mode = FileMode::Map) {
    FileBytes file(path, mode, "GgufFile::open");
    GgufFile g(file.bytes(), "GgufFile::open: " + path);
    g.file_ = std::move(file);
    return g;
  }
  // Parses bytes the caller keeps alive (and unchanged) while the GgufFile and its views live;
  // `name` stands for the path in messages.
  static GgufFile parse(std::span<const std::byte> bytes, std::string name) {
    return GgufFile(bytes, "GgufFile::parse: " + name);
  }

  GgufFile(GgufFile&&) noexcept = default;
  GgufFile& operator=(GgufFile&&) noexcept = default;
  GgufFile(const GgufFile&) = delete;
  GgufFile& operator=(const GgufFile&) = delete;

  std::uint32_t version() const noexcept { return version_; }
  std::uint64_t alignment() const noexcept { return alignment_; }
  // The data section's offset in the file.
  std::uint64_t data_offset() const noexcept { return data_offset_; }
  // "GgufFile::open: <path>" (or parse's name): the start of every message.
  const std::string& where() const noexcept { return where_; }

  const std::map<std::string, GgufValue, std::less<>>& metadata() const noexcept { return kv_; }
  // The value of `key`, or nullptr.
  const GgufValue* find(std::string_view key) const {
    const auto it = kv_.find(key);
    return it == kv_.end() ? nullptr : &it->second;
  }
  // The value of `key` as T (one of GgufVariant's types: std::uint32_t, std::string,
  // std::vector<float>, …); throws naming the key, the expected and the found type.
  template <class T>
  const T& get(std::string_view key) const {
    const GgufValue* v = find(key);
    if (v == nullptr) [[unlikely]]
      missing(key, "a value of type " + gguf_detail::name_of<T>());
    if (const T* p = std::get_if<T>(&v->value)) [[likely]]
      return *p;
    detail::fail_check(where_, "metadata key " + gguf_detail::quote_name(key),
                       "a value of type " + gguf_detail::name_of<T>(), gguf_type_name(*v));
  }
  // An integer of any of the 8 integer types that is >= 0, as uint64 (the spec: counts are
  // uint64 by convention, "some models may use uint32"); throws naming the key otherwise.
  std::uint64_t get_uint(std::string_view key) const {
    const GgufValue* found = find(key);
    if (found == nullptr) [[unlikely]]
      missing(key, "a non-negative integer");
    const GgufValue& v = *found;
    std::uint64_t out = 0;
    const bool ok = std::visit(
        [&](const auto& x) {
          using T = std::decay_t<decltype(x)>;
          if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>) {
            if (x < 0) return false;
            out = static_cast<std::uint64_t>(x);
            return true;
          }
          return false;
        },
        v.value);
    if (!ok) [[unlikely]] {
      std::ostringstream given;
      given << gguf_type_name(v);
      if (const auto* i = std::get_if<std::int64_t>(&v.value)) given << " " << *i;
      if (const auto* i = std::get_if<std::int32_t>(&v.value)) given << " " << *i;
      if (const auto* i = std::get_if<std::int16_t>(&v.value)) given << " " << *i;
      if (const auto* i = std::get_if<std::int8_t>(&v.value)) given << " " << int(*i);
      detail::fail_check(where_, "metadata key " + gguf_detail::quote_name(key),
                         "a non-negative integer", given.str());
    }
    return out;
  }

  // The tensors in file order (a deque: the names stay where they are, WeightViews point at them).
  const std::deque<GgufTensor>& tensors() const noexcept { return tensors_; }
  // The tensor named `name`, or nullptr.
  const GgufTensor* find_tensor(std::string_view name) const {
    const auto it = by_name_.find(std::string(name));
    return it == by_name_.end() ? nullptr : &tensors_[it->second];
  }
  // The tensor named `name`; throws naming it if there is none.
  const GgufTensor& tensor(std::string_view name) const {
    if (const GgufTensor* t = find_tensor(name)) [[likely]]
      return *t;
    detail::fail_check(where_, "tensor " + gguf_detail::quote_name(name), "a tensor of that name",
                       "none among " + std::to_string(tensors_.size()) + " tensors");
  }

  // The tensor as a [rows, cols] WeightView over the file's bytes: cols = ne[0], rows = the
  // product of the other dims (1 for a 1-D tensor; an [n_expert, out, in] tensor is n_expert·out
  // rows, for row_slice). Throws naming the tensor unless its type is f32, f16, bf16, q8_0 or
  // q4_0, its shape is [rows, cols], its address is aligned for the type, and (q8_0, q4_0) every
  // block scale is finite: reads one f16 per block, so call it once per tensor.
  WeightView weight(std::string_view name, index rows, index cols) const {
    const GgufTensor& t = tensor(name);
    const WeightType type = weight_type(t);
    const std::uint64_t found_cols = t.dims[0];  // below 2^63 when the tensor holds any value
    std::uint64_t found_rows = 1;                   // may reach 2^64 only when ne[0] is 0
    bool huge = false;
    for (std::size_t d = 1; d < t.dims.size(); ++d)
      huge |= __builtin_mul_overflow(found_rows, t.dims[d], &found_rows);
    if (huge || found_rows > std::uint64_t(INT64_MAX) || found_cols > std::uint64_t(INT64_MAX) ||
        index(found_rows) != rows || index(found_cols) != cols) [[unlikely]] {
      std::ostringstream expected, given;
      expected << "shape [rows " << rows << ", cols " << cols << "]";
      given << "[" << (huge ? std::string("2^64 or more") : std::to_string(found_rows)) << ", "
            << found_cols << "] (" << gguf_detail::dims_string(t.dims) << ", "
            << t.type_name() << ")";
      detail::fail_check(where_, "tensor " + gguf_detail::quote_name(t.name), expected.str(),
                         given.str());
    }
    const WeightView w(type, t.bytes.data(), rows, cols, t.name.c_str());
    check_weight_view(where_, w);
    check_weight_within(where_, w, base_, size_);
    check_weight_scales(where_, w);
    return w;
  }
  // Decodes a tensor of out.size() values (1-D, or every dim but ne[0] equal to 1) of type f32,
  // f16 or bf16 into out (any alignment); throws naming the tensor otherwise. Writes nothing
  // when it throws.
  void vector_f32(std::string_view name, std::span<float> out) const {
    const index n = index(out.size());
    const GgufTensor& t = tensor(name);
    const std::string what = "tensor " + gguf_detail::quote_name(t.name);
    if (t.type != GgmlType::f32 && t.type != GgmlType::f16 && t.type != GgmlType::bf16)
      detail::fail_check(where_, what + " type", "f32, f16 or bf16 (a vector)", t.type_name());
    if (n < 0 || t.dims[0] != std::uint64_t(n) || t.elements() != std::uint64_t(n))
      detail::fail_check(where_, what, "a vector of " + std::to_string(n) + " values",
                         gguf_detail::dims_string(t.dims));
    if (n == 0) return;  // out.data() may be null: no memcpy from or to it
    WeightType type = WeightType::f32;
    weight_type_of(t.type, type);
    const WeightView w(type, t.bytes.data(), 1, n, t.name.c_str());
    convert_kernels::decode_range(w, 0, 0, n, out.data());  // memcpy-based: any alignment
  }

 private:
  GgufFile(std::span<const std::byte> bytes, std::string where)
      : where_(std::move(where)), base_(bytes.data()), size_(bytes.size()) {
    using namespace gguf_detail;
    Cursor c(bytes, where_);
    const auto m = c.read<std::uint32_t>("magic");
    if (m != magic) [[unlikely]] {
      std::ostringstream given;
      const std::string_view first(reinterpret_cast<const char*>(bytes.data()), 4);
      given << "0x" << std::hex << m << " (" << quote_name(first) << ")";
      detail::fail_check(where_, "magic", "0x46554747 ('GGUF')", given.str());
    }
    version_ = c.read<std::uint32_t>("version");
    if (version_ != 2 && version_ != 3) [[unlikely]]
      detail::fail_check(where_, "version",
                         "2 or 3 (1 has 32-bit counts and is not read)",
                         std::to_string(version_) +
                             ((version_ & 0xFFFF) == 0 ? " (a big-endian file? only little-endian "
                                                         "files are read)"
                                                       : ""));
    const auto n_tensors = c.read<std::uint64_t>("tensor_count");
    const auto n_kv = c.read<std::uint64_t>("metadata_kv_count");
    // Each count alone, and both together, against the bytes left: before anything is reserved.
    if (n_kv > c.left() / min_kv_bytes) [[unlikely]]
      detail::fail_check(where_, "metadata_kv_count",
                         "at most " + std::to_string(c.left() / min_kv_bytes) + " (" +
                             std::to_string(c.left()) + " bytes left, 12+ bytes each)",
                         n_kv);
    const std::uint64_t max_tensors = (c.left() - n_kv * min_kv_bytes) / min_tensor_info_bytes;
    if (n_tensors > max_tensors) [[unlikely]]
      detail::fail_check(where_, "tensor_count",
                         "at most " + std::to_string(max_tensors) + " (" +
                             std::to_string(c.left()) +
                             " bytes left, 24+ bytes per tensor info after 12+ per metadata pair)",
                         n_tensors);

    for (std::uint64_t i = 0; i < n_kv; ++i) {
      std::string key = c.string("metadata pair #" + std::to_string(i) + " key");
      const std::string what = "metadata key " + quote_name(key);
      if (kv_.count(key)) [[unlikely]]
        detail::fail_check(where_, what, "a key used once", "a second pair with it (#" +
                                                                std::to_string(i) + ")");
      const auto type = c.read<std::uint32_t>(what + " type");
      kv_.emplace(std::move(key), read_value(c, type, 0, what));
    }
    if (const GgufValue* a = find("general.alignment")) {
      const auto* v = std::get_if<std::uint32_t>(&a->value);
      if (v == nullptr) [[unlikely]]
        detail::fail_check(where_, "metadata key 'general.alignment'", "a value of type uint32",
                           gguf_type_name(*a));
      if (*v == 0 || (*v & (*v - 1)) != 0 || *v > max_alignment) [[unlikely]]
        detail::fail_check(where_, "metadata key 'general.alignment'",
                           "a power of two in [1, 2^20]", *v);
      alignment_ = *v;
    }

    std::vector<std::uint64_t> sizes;  // each tensor's bytes
    for (std::uint64_t i = 0; i < n_tensors; ++i) {
      GgufTensor t;
      t.name = c.string("tensor info #" + std::to_string(i) + " name");
      const std::string what = "tensor " + quote_name(t.name);
      if (by_name_.count(t.name)) [[unlikely]]
        detail::fail_check(where_, what, "a name used once",
                           "a second tensor with it (#" + std::to_string(i) + ")");
      const auto n_dims = c.read<std::uint32_t>(what + " n_dims");
      if (n_dims < 1 || n_dims > 4) [[unlikely]]
        detail::fail_check(where_, what + " n_dims", "1 to 4", n_dims);
      std::uint64_t elements = 1;
      for (std::uint32_t d = 0; d < n_dims; ++d) {
        const auto ne = c.read<std::uint64_t>(what + " ne[" + std::to_string(d) + "]");
        t.dims.push_back(ne);
        if (__builtin_mul_overflow(elements, ne, &elements) ||
            elements > std::uint64_t(INT64_MAX)) [[unlikely]]
          detail::fail_check(where_, what + " shape", "fewer than 2^63 elements",
                             dims_string(t.dims) + "...");
      }
      const auto type = c.read<std::uint32_t>(what + " ggml type");
      const GgmlTypeInfo info = ggml_type_info(type);
      if (info.block_bytes == 0) [[unlikely]]
        detail::fail_check(where_, what + " ggml type", "a ggml type GGUF files hold", type);
      t.type = static_cast<GgmlType>(type);
      if (t.dims[0] % info.block_values != 0) [[unlikely]]
        detail::fail_check(where_, what + " ne[0]",
                           "a multiple of " + std::to_string(info.block_values) + " (whole " +
                               info.name + " blocks)",
                           t.dims[0]);
      std::uint64_t bytes_needed = 0;
      if (__builtin_mul_overflow(elements / info.block_values, info.block_bytes, &bytes_needed) ||
          bytes_needed > std::uint64_t(INT64_MAX)) [[unlikely]]
        detail::fail_check(where_, what + " size", "fewer than 2^63 bytes",
                           dims_string(t.dims) + " of " + info.name);
      t.offset = c.read<std::uint64_t>(what + " offset");
      if (t.offset % alignment_ != 0) [[unlikely]]
        detail::fail_check(where_, what + " offset",
                           "a multiple of the alignment (" + std::to_string(alignment_) + ")",
                           t.offset);
      // The extent is checked below, once the data section's start is known.
      sizes.push_back(bytes_needed);
      by_name_.emplace(t.name, tensors_.size());
      tensors_.push_back(std::move(t));
    }

    // The data section: the first multiple of the alignment at or after the tensor infos' end.
    const std::uint64_t end = c.at();
    data_offset_ = end + (alignment_ - end % alignment_) % alignment_;
    if (n_tensors > 0 && data_offset_ > size_) [[unlikely]]
      detail::fail_check(where_, "data section start",
                         "at most the file size (" + std::to_string(size_) + ")",
                         std::to_string(data_offset_) + " (the tensor infos end at " +
                             std::to_string(end) + ", alignment " +
                             std::to_string(alignment_) + ")");
    const std::uint64_t data_bytes = n_tensors > 0 ? size_ - data_offset_ : 0;
    std::vector<std::size_t> order(tensors_.size());
    for (std::size_t i = 0; i < order.size(); ++i) {
      GgufTensor& t = tensors_[i];
      const std::uint64_t n = sizes[i];
      if (t.offset > data_bytes || n > data_bytes - t.offset) [[unlikely]] {
        std::ostringstream expected, given;
        expected << "[offset, offset + " << n << " bytes) inside the data section of "
                 << data_bytes << " bytes (file offset " << data_offset_ << ")";
        given << "offset " << t.offset << " (" << dims_string(t.dims) << " of " << t.type_name()
              << ")";
        detail::fail_check(where_, "tensor " + quote_name(t.name), expected.str(), given.str());
      }
      t.bytes = bytes.subspan(static_cast<std::size_t>(data_offset_ + t.offset),
                              static_cast<std::size_t>(n));
      order[i] = i;
    }
    std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
      return tensors_[a].offset < tensors_[b].offset;
    });
    const GgufTensor* last = nullptr;  // the non-empty tensor reaching furthest so far
    for (const std::size_t i : order) {
      const GgufTensor& t = tensors_[i];
      if (t.bytes.empty()) continue;
      if (last != nullptr && last->offset + last->bytes.size() > t.offset) [[unlikely]] {
        std::ostringstream expected, given;
        expected << "an offset >= " << last->offset + last->bytes.size() << " (the end of tensor "
                 << quote_name(last->name) << ", no overlap)";
        given << t.offset;
        detail::fail_check(where_, "tensor " + quote_name(t.name) + " offset", expected.str(),
                           given.str());
      }
      if (last == nullptr || t.offset + t.bytes.size() > last->offset + last->bytes.size())
        last = &t;
    }
  }

  [[noreturn]] void missing(std::string_view key, const std::string& expected) const {
    detail::fail_check(where_, "metadata key " + gguf_detail::quote_name(key), expected,
                       "no such key");
  }

  WeightType weight_type(const GgufTensor& t) const {
    WeightType type = WeightType::f32;
    if (!weight_type_of(t.type, type)) [[unlikely]]
      detail::fail_check(where_, "tensor " + gguf_detail::quote_name(t.name) + " type",
                         "f32, f16, bf16, q8_0 or q4_0 (a type tformer multiplies)",
                         std::string(t.type_name()) + " (ggml type " +
                             std::to_string(std::uint32_t(t.type)) + ")");
    return type;
  }

  FileBytes file_;  // open()'s bytes; empty after parse()
  std::string where_;
  const std::byte* base_ = nullptr;
  std::size_t size_ = 0;
  std::uint32_t version_ = 0;
  std::uint64_t alignment_ = gguf_detail::default_alignment;
  std::uint64_t data_offset_ = 0;
  std::map<std::string, GgufValue, std::less<>> kv_;
  std::deque<GgufTensor> tensors_;
  std::unordered_map<std::string, std::size_t> by_name_;
};

}  // namespace TFORMER_ARCH_NS
}  // namespace tformer
