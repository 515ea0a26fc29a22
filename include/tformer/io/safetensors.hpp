// Hugging Face safetensors files (https://github.com/huggingface/safetensors), read without
// copying the tensors, and models split into shards by a model.safetensors.index.json.
//
// Format: 8 bytes, a little-endian uint64 N; N bytes of UTF-8 JSON, an object, possibly padded
// with trailing spaces; then the byte buffer, to the end of the file. Each key of the object but
// "__metadata__" names a tensor: {"dtype": "F32", "shape": [rows, cols], "data_offsets": [begin,
// end]}, offsets in bytes from the start of the buffer, values little-endian and row-major (C
// order), as PyTorch stores them. "__metadata__", when present and not null, maps strings to
// strings. Shape [] is a scalar (one value); a 0 in the shape is an empty tensor. Element sizes:
// BOOL, U8, I8, F8_E5M2, F8_E4M3, F8_E8M0 1 byte; I16, U16, F16, BF16 2; I32, U32, F32 4; I64,
// U64, F64 8. Any other dtype (the sub-byte F4 / F6 types among them) is refused.
//
// Checked at open, as the official library does, before any tensor byte is read: the file holds
// the 8 bytes and N (N <= 100,000,000, the official limit, and >= 2); the header is valid UTF-8
// JSON, an object that starts with '{', with no key twice and nesting no deeper than a tensor's
// shape array; every entry has a known dtype, a shape of unsigned integers and two unsigned
// integer offsets begin <= end; end − begin = product(shape) × element size, computed without
// overflow (a shape of [2^40, 2^40] is an error, not a wrap); and the tensors, sorted by begin,
// tile the buffer [0, file size − 8 − N) exactly: no overlap, no hole, nothing after the last.
// Each failure is a tformer::Error naming the entry point, the path, the tensor or JSON key, and
// the expected and the found value. Nothing is allocated in proportion to a count the file
// states before that count is checked against the file's length.
//
// Typed access: weight(name, rows, cols) views an F32 / F16 / BF16 tensor of shape [rows, cols]
// in place as a WeightView (types f32, f16, bf16); its data must be aligned to its element size
// (the official writer pads the header to a multiple of 8 bytes, so its files are), else it is an
// error that says so: nothing is copied behind the caller's back. vector_f32(name, out) decodes a
// 1-D F32 / F16 / BF16 tensor into the caller's floats (a bf16 checkpoint's norm weights), at any
// alignment. The names given to WeightViews point into the reader's own strings: keep the
// SafetensorsFile / SafetensorsModel alive (it may be moved) while the views are used.
//
// Sharding: SafetensorsModel::open takes a directory holding model.safetensors.index.json (its
// "weight_map" maps each tensor name to a shard file; each shard is opened once) or a single
// model.safetensors, or the path of one .safetensors file. A shard path must stay inside the
// directory (no absolute path, no ".." component; symbolic links are followed, not checked). A
// tensor of the weight_map missing from its shard, or a tensor present in two shards, is an
// error naming the index file, the tensor and the shard(s). A shard's tensor that the weight_map
// does not list is served too; the index's "metadata" is not read.
//
// Files: regular files only (a FIFO, directory or device is an error, at once), memory-mapped
// (FileMode::Map, the default: no copy) or read into an owned buffer (FileMode::Read). A mapped
// file truncated on disk after open kills the process with SIGBUS when a tensor past the new end
// is read, as with every mmap-based loader; Read mode is immune. See FileMode.
//
//   auto model = tformer::SafetensorsModel::open("/models/llama");   // directory or file
//   tformer::WeightView wq = model.weight("model.layers.0.self_attn.q_proj.weight", dim, dim);
//   std::vector<float> norm(dim);
//   model.vector_f32("model.norm.weight", norm);                      // bf16 → f32
//
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <span>
#include <sstream>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "tformer/core/error.hpp"
#include "tformer/core/numeric.hpp"
#include "tformer/core/weight_view.hpp"
#include "tformer/io/file_bytes.hpp"

namespace tformer {
inline namespace TFORMER_ARCH_NS {

// One tensor of a safetensors file: its bytes point into the file's memory.
struct SafetensorsTensor {
  std::string name;
  std::string dtype;         // as the file spells it: "F32", "BF16", "I64", …
  std::vector<index> shape;  // [] for a scalar
  std::span<const std::byte> bytes;

  // Values: the product of the shape (1 for a scalar; checked at open to fit the file).
  index elements() const noexcept {
    for (const index d : shape)
      if (d == 0) return 0;  // empty, however large the other sizes (checked only when nonzero)
    index n = 1;
    for (const index d : shape) n *= d;
    return n;
  }
  // Bytes of one value (dtype is one the reader accepts).
  index element_bytes() const noexcept;
  // Whether the tensor is F32, F16 or BF16: what weight() and vector_f32() take.
  bool is_float() const noexcept { return dtype == "F32" || dtype == "F16" || dtype == "BF16"; }
};

namespace safetensors_detail {

// The official reader's limit on the header (safetensors' MAX_HEADER_SIZE).
constexpr std::uint64_t max_header_bytes = 100'000'000;

// Bytes per element of a dtype the reader accepts, 0 for any other.
inline index dtype_bytes(std::string_view dtype) noexcept {
  struct Entry {
    const char* name;
    index bytes;
  };
  static constexpr Entry table[] = {{"BOOL", 1},    {"U8", 1},      {"I8", 1},  {"F8_E5M2", 1},
                                    {"F8_E4M3", 1}, {"F8_E8M0", 1}, {"I16", 2}, {"U16", 2},
                                    {"F16", 2},     {"BF16", 2},    {"I32", 4}, {"U32", 4},
                                    {"F32", 4},     {"I64", 8},     {"U64", 8}, {"F64", 8}};
  for (const Entry& e : table)
    if (dtype == e.name) return e.bytes;
  return 0;
}

// "[a, b, c]".
inline std::string shape_string(std::span<const index> shape) {
  std::ostringstream s;
  s << '[';
  for (std::size_t i = 0; i < shape.size(); ++i) s << (i ? ", " : "") << shape[i];
  s << ']';
  return s.str();
}

// A JSON value for a message: its dump, shortened.
inline std::string json_string(const nlohmann::json& v) {
  std::string s = v.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  if (s.size() > 80) s = s.substr(0, 77) + "...";
  return s;
}

// `key` quoted, shortened, for a message.
inline std::string quote_name(std::string_view key) {
  std::string s = "\"";
  s.append(key.substr(0, 120));
  if (key.size() > 120) s += "...";
  return s + "\"";
}

// JSON text parsed into a DOM, every failure a tformer::Error: `where` and `path` name the
// caller and the file. Keys are unique in every object; containers nest at most `max_depth`
// deep (the top object is depth 1). Never lets a nlohmann exception out.
inline nlohmann::json parse_json(std::string_view text, int max_depth, std::string_view where,
                                 const std::string& path) {
  using nlohmann::json;
  // Keys seen in each open object (a stack: one set per nesting level).
  std::vector<std::set<std::string>> keys;
  std::string failure;  // the first structural problem the callback found
  const json::parser_callback_t callback = [&](int depth, json::parse_event_t event,
                                               json& parsed) -> bool {
    if (!failure.empty()) return false;
    switch (event) {
      case json::parse_event_t::object_start:
      case json::parse_event_t::array_start:
        if (depth >= max_depth) {
          failure = "containers nested at most " + std::to_string(max_depth) + " deep";
          return false;
        }
        if (event == json::parse_event_t::object_start) keys.emplace_back();
        return true;
      case json::parse_event_t::object_end:
        if (!keys.empty()) keys.pop_back();
        return true;
      case json::parse_event_t::key:
        if (!keys.empty() && parsed.is_string() &&
            !keys.back().insert(parsed.get_ref<const std::string&>()).second) {
          failure = "no key twice in an object, got " +
                    quote_name(parsed.get_ref<const std::string&>()) + " twice";
          return false;
        }
        return true;
      default:
        return true;
    }
  };
  json value;
#if defined(__cpp_exceptions)
  try {
    value = json::parse(text.begin(), text.end(), callback, /*allow_exceptions=*/true);
  } catch (const json::exception& e) {
    detail::fail_check(where, path + ": header", "valid UTF-8 JSON",
                       std::string("a parse error (") + e.what() + ")");
  }
#else  // -fno-exceptions: nlohmann reports a failure as a discarded value
  value = json::parse(text.begin(), text.end(), callback, /*allow_exceptions=*/false);
#endif
  if (!failure.empty()) detail::fail_check(where, path + ": header", "JSON with " + failure, "not");
  if (value.is_discarded())
    detail::fail_check(where, path + ": header", "valid UTF-8 JSON", "a parse error");
  return value;
}

// An unsigned JSON integer below 2^62 (so sums and products of two stay in range), or throws.
inline std::uint64_t unsigned_value(const nlohmann::json& v, std::string_view where,
                                    const std::string& what) {
  if (!v.is_number_unsigned() && !(v.is_number_integer() && v.get<std::int64_t>() >= 0))
    detail::fail_check(where, what, "an unsigned integer", json_string(v));
  const std::uint64_t x = v.get<std::uint64_t>();
  if (x >= (std::uint64_t(1) << 62)) detail::fail_check(where, what, "a value below 2^62", x);
  return x;
}

// Whether `shard` (from an index's weight_map) is a relative path that stays in its directory.
inline bool stays_inside(const std::string& shard) {
  if (shard.empty() || shard.find('\0') != std::string::npos) return false;
  const std::filesystem::path p(shard);
  if (p.is_absolute() || p.has_root_path()) return false;
  for (const auto& part : p)
    if (part == "..") return false;
  return true;
}

}  // namespace safetensors_detail

inline index SafetensorsTensor::element_bytes() const noexcept {
  return safetensors_detail::dtype_bytes(dtype);
}

// One safetensors file: its metadata and tensors, viewing the file's memory (move-only).
class SafetensorsFile {
 public:
  using Tensors = std::map<std::string, SafetensorsTensor, std::less<>>;

  // Maps (or reads, see FileMode) `path`; throws tformer::Error if it is not a regular file,
  // cannot be read or is not a consistent safetensors file (see the top of this header).
  static SafetensorsFile open(const std::string& path, FileMode mode = FileMode::Map) {
    auto file = std::make_unique<FileBytes>(path, mode, "SafetensorsFile::open");
    SafetensorsFile f = parse(file->bytes(), path, "SafetensorsFile::open");
    f.file_ = std::move(file);
    return f;
  }
  // Over bytes the caller keeps alive while the result (and every view of it) is used; `path`
  // names them in messages. The checks and errors are open()'s.
  static SafetensorsFile parse(std::span<const std::byte> bytes, std::string path,
                               std::string_view where = "SafetensorsFile::parse") {
    SafetensorsFile f;
    f.path_ = std::move(path);
    f.read(bytes, where);
    return f;
  }

  SafetensorsFile(SafetensorsFile&&) noexcept = default;
  SafetensorsFile& operator=(SafetensorsFile&&) noexcept = default;
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const noexcept { return path_; }
  // "__metadata__", empty when the file has none.
  const std::map<std::string, std::string>& metadata() const noexcept { return metadata_; }
  // Every tensor, ordered by name.
  const Tensors& tensors() const noexcept { return tensors_; }
  // The tensor `name`, or nullptr.
  const SafetensorsTensor* find(std::string_view name) const {
    const auto it = tensors_.find(name);
    return it == tensors_.end() ? nullptr : &it->second;
  }
  // The tensor `name`, or throws naming the file and the tensor.
  const SafetensorsTensor& at(std::string_view name) const {
    if (const SafetensorsTensor* t = find(name)) return *t;
    detail::fail_check("SafetensorsFile::at", path_ + ": tensor",
                       "a tensor of the file (" + std::to_string(tensors_.size()) + " tensors)",
                       safetensors_detail::quote_name(name) + ", not found");
  }

  // The F32 / F16 / BF16 tensor `name` of shape [rows, cols] as a WeightView (f32, f16, bf16)
  // over the file's memory; throws for another dtype or shape, or data not aligned to the
  // element size.
  WeightView weight(std::string_view name, index rows, index cols) const {
    return weight_of(at(name), rows, cols);
  }
  // Decodes the 1-D F32 / F16 / BF16 tensor `name` of out.size() values into `out` (exactly:
  // every bf16 and f16 is a float). Any alignment.
  void vector_f32(std::string_view name, std::span<float> out) const {
    decode_f32(at(name), out, true);
  }
  // Decodes the F32 / F16 / BF16 tensor `name`, any shape of out.size() values, into `out`.
  void to_f32(std::string_view name, std::span<float> out) const {
    decode_f32(at(name), out, false);
  }

  // weight() of a tensor of this file.
  WeightView weight_of(const SafetensorsTensor& t, index rows, index cols) const {
    constexpr const char* where = "SafetensorsFile::weight";
    const auto what = [&] { return path_ + ": tensor " + safetensors_detail::quote_name(t.name); };
    WeightType type;
    if (t.dtype == "F32")
      type = WeightType::f32;
    else if (t.dtype == "F16")
      type = WeightType::f16;
    else if (t.dtype == "BF16")
      type = WeightType::bf16;
    else
      detail::fail_check(where, what() + " dtype", "F32, F16 or BF16", t.dtype);
    if (t.shape.size() != 2 || t.shape[0] != rows || t.shape[1] != cols) {
      const index want[] = {rows, cols};
      detail::fail_check(where, what() + " shape", safetensors_detail::shape_string(want),
                         safetensors_detail::shape_string(t.shape) + " (" + t.dtype + ")");
    }
    const auto address = reinterpret_cast<std::uintptr_t>(t.bytes.data());
    if (!t.bytes.empty() && address % std::uintptr_t(t.element_bytes()) != 0)  // empty: never read
      detail::fail_check(where, what() + " data",
                         "aligned to its element size (" + std::to_string(t.element_bytes()) +
                             " bytes; the reader does not copy)",
                         "byte offset " + std::to_string(offset_of(t)) + " in the file");
    const WeightView w(type, t.bytes.data(), rows, cols, t.name.c_str());
    check_weight_view(where, w);  // passes: every condition it checks was checked above
    return w;
  }
  // vector_f32() (`one_d`) or to_f32() of a tensor of this file.
  void decode_f32(const SafetensorsTensor& t, std::span<float> out, bool one_d = true) const {
    constexpr const char* where = "SafetensorsFile::vector_f32";
    const auto what = [&] { return path_ + ": tensor " + safetensors_detail::quote_name(t.name); };
    if (!t.is_float()) detail::fail_check(where, what() + " dtype", "F32, F16 or BF16", t.dtype);
    const index n = index(out.size());
    if (one_d ? (t.shape.size() != 1 || t.shape[0] != n) : t.elements() != n) {
      const index want[] = {n};
      detail::fail_check(
          where, what() + " shape",
          one_d ? safetensors_detail::shape_string(want) : std::to_string(n) + " values",
          safetensors_detail::shape_string(t.shape) + " (" + t.dtype + ")");
    }
    const std::byte* p = t.bytes.data();
    if (t.dtype == "F32") {
      if (n > 0) std::memcpy(out.data(), p, out.size() * sizeof(float));
      return;
    }
    const bool brain = t.dtype == "BF16";
    for (std::size_t i = 0; i < out.size(); ++i) {
      std::uint16_t bits;
      std::memcpy(&bits, p + 2 * i, 2);
      out[i] = brain ? to_float(bf16{bits}) : to_float(f16{bits});
    }
  }

  // The tensor's byte offset from the start of the file (or the parsed span).
  std::size_t offset_of(const SafetensorsTensor& t) const noexcept {
    return std::size_t(t.bytes.data() - begin_);
  }

 private:
  SafetensorsFile() = default;

  void read(std::span<const std::byte> bytes, std::string_view where) {
    using namespace safetensors_detail;
    using nlohmann::json;
    begin_ = bytes.data();
    const std::string& path = path_;
    check(bytes.size() >= 8, where, path + ": file size", ">= 8 bytes (the header size)",
          bytes.size());
    std::uint64_t n = 0;
    for (int i = 7; i >= 0; --i) n = n << 8 | std::to_integer<std::uint64_t>(bytes[std::size_t(i)]);
    const std::uint64_t rest = bytes.size() - 8;
    check(n >= 2 && n <= max_header_bytes, where, path + ": header size N (bytes 0-7)",
          "2 to 100000000 (the official limit)", n);
    if (n > rest)
      detail::fail_check(where, path + ": header size N (bytes 0-7)",
                         "<= " + std::to_string(rest) + " (the file's size - 8)", n);
    const std::string_view text(reinterpret_cast<const char*>(bytes.data() + 8), std::size_t(n));
    if (text.front() != '{')
      detail::fail_check(where, path + ": header", "a JSON object starting with '{'",
                         "a header starting with byte " +
                             std::to_string(int(static_cast<unsigned char>(text.front()))));
    // Depth 3: the top object, a tensor's entry, its shape / offsets array.
    const json header = parse_json(text, 3, where, path);
    if (!header.is_object())
      detail::fail_check(where, path + ": header", "a JSON object", json_string(header));
    const std::uint64_t buffer = rest - n;
    const std::byte* data = bytes.data() + 8 + n;

    struct Range {
      std::uint64_t begin, end;
      const std::string* name;
    };
    std::vector<Range> ranges;
    ranges.reserve(header.size());  // bounded by the header's length, checked above
    for (auto item = header.begin(); item != header.end(); ++item) {
      const std::string& key = item.key();  // not a structured binding: the lambda below
      const json& entry = item.value();     // captures it (clang 14 cannot)
      if (key == "__metadata__") {
        const std::string what = path + ": key \"__metadata__\"";
        if (entry.is_null()) continue;  // as the official reader, which takes it as none
        if (!entry.is_object())
          detail::fail_check(where, what, "an object of strings", json_string(entry));
        for (const auto& [k, v] : entry.items()) {
          if (!v.is_string())
            detail::fail_check(where, what + " entry " + quote_name(k), "a string", json_string(v));
          metadata_.emplace(k, v.get<std::string>());
        }
        continue;
      }
      const std::string what = path + ": tensor " + quote_name(key);
      if (!entry.is_object())
        detail::fail_check(where, what, "an object {dtype, shape, data_offsets}",
                           json_string(entry));
      const auto field = [&](const char* name) -> const json& {
        const auto it = entry.find(name);
        if (it == entry.end())
          detail::fail_check(where, what, std::string("a key \"") + name + "\"", "none");
        return *it;
      };
      const json& dtype = field("dtype");
      const json& shape = field("shape");
      const json& offsets = field("data_offsets");
      if (!dtype.is_string())
        detail::fail_check(where, what + " dtype", "a string", json_string(dtype));
      const std::string& dtype_name = dtype.get_ref<const std::string&>();
      const index size = dtype_bytes(dtype_name);
      if (size == 0)
        detail::fail_check(where, what + " dtype",
                           "BOOL, U8, I8, F8_E5M2, F8_E4M3, F8_E8M0, I16, U16, F16, BF16, I32, "
                           "U32, F32, I64, U64 or F64",
                           quote_name(dtype_name));
      if (!shape.is_array())
        detail::fail_check(where, what + " shape", "an array of sizes", json_string(shape));
      // The product of the sizes in bytes, overflow-checked; every size is < 2^62 and the
      // product at most 2^62 bytes, so the shape fits `index`.
      std::vector<index> dims;
      dims.reserve(shape.size());
      std::uint64_t nbytes = std::uint64_t(size);
      bool overflow = false;
      for (std::size_t i = 0; i < shape.size(); ++i) {
        const std::uint64_t d =
            unsigned_value(shape[i], where, what + " shape[" + std::to_string(i) + "]");
        dims.push_back(index(d));
        overflow = overflow || __builtin_mul_overflow(nbytes, d, &nbytes) ||
                   nbytes > (std::uint64_t(1) << 62);
      }
      if (overflow) {
        // A zero size makes the tensor empty, whatever the others are.
        if (std::find(dims.begin(), dims.end(), index(0)) == dims.end())
          detail::fail_check(
              where, what + " shape",
              "sizes whose product fits the file (" + std::to_string(buffer) + " bytes of data)",
              shape_string(dims) + ", an overflowing product");
        nbytes = 0;
      }
      if (!offsets.is_array() || offsets.size() != 2)
        detail::fail_check(where, what + " data_offsets", "an array [begin, end]",
                           json_string(offsets));
      const std::uint64_t begin = unsigned_value(offsets[0], where, what + " data_offsets[0]");
      const std::uint64_t end = unsigned_value(offsets[1], where, what + " data_offsets[1]");
      if (end < begin)
        detail::fail_check(where, what + " data_offsets", "begin <= end",
                           "[" + std::to_string(begin) + ", " + std::to_string(end) + "]");
      if (end - begin != nbytes)
        detail::fail_check(where, what + " data_offsets",
                           "end - begin = " + std::to_string(nbytes) + " bytes (shape " +
                               shape_string(dims) + " of " + dtype_name + ")",
                           "[" + std::to_string(begin) + ", " + std::to_string(end) + "], " +
                               std::to_string(end - begin) + " bytes");
      if (end > buffer)
        detail::fail_check(where, what + " data_offsets",
                           "end <= " + std::to_string(buffer) + " (the data buffer's size)",
                           "[" + std::to_string(begin) + ", " + std::to_string(end) + "]");
      SafetensorsTensor t{
          key, dtype_name, std::move(dims), {data + begin, std::size_t(end - begin)}};
      const auto [it, inserted] = tensors_.emplace(key, std::move(t));
      if (!inserted)  // parse_json refuses duplicate keys; kept as a guard
        detail::fail_check(where, what, "a name used once", "a duplicate");
      ranges.push_back({begin, end, &it->first});
    }
    // The tensors must tile [0, buffer): sorted by begin (empty ones first at a tie), each
    // begins where the previous ended.
    std::sort(ranges.begin(), ranges.end(), [](const Range& a, const Range& b) {
      return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
    });
    std::uint64_t at = 0;
    const std::string* previous = nullptr;
    for (const Range& r : ranges) {
      if (r.begin != at) {
        const std::string what = path + ": tensor " + quote_name(*r.name) + " data_offsets";
        const std::string after = previous ? " (where tensor " + quote_name(*previous) + " ends)"
                                           : " (the buffer's start)";
        detail::fail_check(where, what, "begin = " + std::to_string(at) + after,
                           "[" + std::to_string(r.begin) + ", " + std::to_string(r.end) + "], " +
                               (r.begin < at ? "an overlap" : "a hole"));
      }
      at = r.end;
      previous = r.name;
    }
    if (at != buffer)
      detail::fail_check(where, path + ": data buffer",
                         std::to_string(buffer) + " bytes covered by the tensors" +
                             (previous ? " (the last, " + quote_name(*previous) + ", ends at " +
                                             std::to_string(at) + ")"
                                       : std::string(" (there are none)")),
                         std::to_string(buffer - at) + " bytes after the last tensor");
  }

  std::string path_;
  std::unique_ptr<FileBytes> file_;  // open()'s bytes; null for parse()
  const std::byte* begin_ = nullptr;
  std::map<std::string, std::string> metadata_;
  Tensors tensors_;  // node-based: names and tensors keep their addresses when moved
};

// A model in one safetensors file or in shards named by model.safetensors.index.json, with one
// lookup across them (move-only).
class SafetensorsModel {
 public:
  // `path`: a directory holding model.safetensors.index.json (or else model.safetensors), or a
  // .safetensors file. Throws tformer::Error for anything inconsistent (see the top of this
  // header).
  static SafetensorsModel open(const std::string& path, FileMode mode = FileMode::Map) {
    constexpr const char* where = "SafetensorsModel::open";
    namespace fs = std::filesystem;
    std::error_code ec;
    SafetensorsModel m;
    if (!fs::is_directory(path, ec)) {
      m.add(SafetensorsFile::open(path, mode), path);
      return m;
    }
    const fs::path dir(path);
    const std::string index_path = (dir / "model.safetensors.index.json").string();
    if (!fs::exists(index_path, ec)) {
      const std::string single = (dir / "model.safetensors").string();
      if (!fs::exists(single, ec))
        detail::fail_check(where, path,
                           "a directory holding model.safetensors.index.json or "
                           "model.safetensors",
                           "neither");
      m.add(SafetensorsFile::open(single, mode), single);
      return m;
    }
    m.index_path_ = index_path;
    const FileBytes index_file(index_path, FileMode::Read, where);
    const auto bytes = index_file.bytes();
    // Depth 3 at most: the object, "weight_map" / "metadata", a value of "metadata" (a list).
    const nlohmann::json index = safetensors_detail::parse_json(
        std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()), 3, where,
        index_path);
    if (!index.is_object())
      detail::fail_check(where, index_path, "a JSON object",
                         safetensors_detail::json_string(index));
    const auto map = index.find("weight_map");
    if (map == index.end() || !map->is_object())
      detail::fail_check(where, index_path + ": key \"weight_map\"",
                         "an object {tensor: shard file}",
                         map == index.end() ? "none" : safetensors_detail::json_string(*map));
    // Each shard once, in name order; then every listed tensor must be in its shard.
    std::map<std::string, std::size_t> shard_of_file;  // shard file -> index in shards_
    for (const auto& [tensor, shard] : map->items()) {
      const std::string what =
          index_path + ": weight_map tensor " + safetensors_detail::quote_name(tensor) + " shard";
      if (!shard.is_string())
        detail::fail_check(where, what, "a file name", safetensors_detail::json_string(shard));
      const std::string& name = shard.get_ref<const std::string&>();
      if (!safetensors_detail::stays_inside(name))
        detail::fail_check(where, what,
                           "a relative path inside " + path + " (no \"..\", not absolute)",
                           safetensors_detail::quote_name(name));
      if (shard_of_file.emplace(name, 0).second &&
          !fs::is_regular_file(dir / name, ec))  // named here, not only by FileBytes
        detail::fail_check(where, what, "a regular file in " + path,
                           safetensors_detail::quote_name(name) + ", not one");
    }
    for (auto& [name, at] : shard_of_file) {
      at = m.shards_.size();
      m.add(SafetensorsFile::open((dir / name).string(), mode), index_path);
    }
    for (const auto& [tensor, shard] : map->items()) {
      const SafetensorsFile& file = *m.shards_[shard_of_file.at(shard.get<std::string>())];
      if (file.find(tensor) == nullptr)
        detail::fail_check(
            where, index_path + ": weight_map tensor " + safetensors_detail::quote_name(tensor),
            "a tensor of its shard " + file.path(), "none there");
      const Entry& found = m.tensors_.at(tensor);
      if (found.file != &file)  // in another shard too: add() refused a second one already
        detail::fail_check(where, index_path + ": tensor " + safetensors_detail::quote_name(tensor),
                           "in shard " + file.path(), "in " + found.file->path());
    }
    return m;
  }

  SafetensorsModel(SafetensorsModel&&) noexcept = default;
  SafetensorsModel& operator=(SafetensorsModel&&) noexcept = default;

  // The index file's path, empty for a single file.
  const std::string& index_path() const noexcept { return index_path_; }
  // The files, in shard-name order (one for a single file).
  std::size_t shard_count() const noexcept { return shards_.size(); }
  const SafetensorsFile& shard(std::size_t i) const {
    if (i >= shards_.size())
      detail::fail_check("SafetensorsModel::shard", "i",
                         "< shard_count() (" + std::to_string(shards_.size()) + ")", i);
    return *shards_[i];
  }
  // Tensor count across all shards.
  std::size_t size() const noexcept { return tensors_.size(); }

  // The tensor `name` from any shard, or nullptr.
  const SafetensorsTensor* find(std::string_view name) const {
    const auto it = tensors_.find(name);
    return it == tensors_.end() ? nullptr : it->second.tensor;
  }
  // The tensor `name`, or throws naming the model and the tensor.
  const SafetensorsTensor& at(std::string_view name) const { return *entry(name).tensor; }
  // The file holding tensor `name`, or throws.
  const SafetensorsFile& file_of(std::string_view name) const { return *entry(name).file; }
  // Every tensor's name, ordered, with its file and tensor.
  template <class F>
  void for_each(F&& f) const {
    for (const auto& [name, e] : tensors_) f(*e.file, *e.tensor);
  }

  // As SafetensorsFile's, from the shard holding the tensor.
  WeightView weight(std::string_view name, index rows, index cols) const {
    const Entry& e = entry(name);
    return e.file->weight_of(*e.tensor, rows, cols);
  }
  void vector_f32(std::string_view name, std::span<float> out) const {
    const Entry& e = entry(name);
    e.file->decode_f32(*e.tensor, out, true);
  }
  void to_f32(std::string_view name, std::span<float> out) const {
    const Entry& e = entry(name);
    e.file->decode_f32(*e.tensor, out, false);
  }

 private:
  struct Entry {
    const SafetensorsFile* file;
    const SafetensorsTensor* tensor;
  };
  SafetensorsModel() = default;

  // Adds a file's tensors; a name already present (from another shard) is an error naming
  // `source` (the index file or the path), the tensor and both shards.
  void add(SafetensorsFile file, const std::string& source) {
    shards_.push_back(std::make_unique<SafetensorsFile>(std::move(file)));
    const SafetensorsFile& f = *shards_.back();
    for (const auto& [name, t] : f.tensors()) {
      const auto [it, inserted] = tensors_.emplace(name, Entry{&f, &t});
      if (!inserted)
        detail::fail_check("SafetensorsModel::open",
                           source + ": tensor " + safetensors_detail::quote_name(name),
                           "in one shard", "in " + it->second.file->path() + " and " + f.path());
    }
  }
  const Entry& entry(std::string_view name) const {
    const auto it = tensors_.find(name);
    if (it == tensors_.end())
      detail::fail_check("SafetensorsModel::at",
                         (index_path_.empty() ? shards_.front()->path() : index_path_) + ": tensor",
                         "a tensor of the model (" + std::to_string(tensors_.size()) + " tensors)",
                         safetensors_detail::quote_name(name) + ", not found");
    return it->second;
  }

  std::string index_path_;
  std::vector<std::unique_ptr<SafetensorsFile>> shards_;  // stable addresses for tensors_
  std::map<std::string, Entry, std::less<>> tensors_;
};

}  // namespace TFORMER_ARCH_NS
}  // namespace tformer
