// Karpathy's llama2.c checkpoints in its three formats, and its tokenizer.bin, read without
// copying the weights. The format is told by the first 4 bytes: the magic "ak42" (uint32
// 0x616b3432) starts a versioned file, anything else is the legacy one.
//
// Version 0 (legacy, run.c): seven int32 (dim, hidden_dim, n_layers, n_heads, n_kv_heads,
// vocab_size, seq_len; vocab_size < 0 means the classifier is stored separately, > 0 that it is
// tied to the embedding), then float32 arrays: token embedding [vocab, dim], attention RMSNorm
// [layers, dim], wq [layers, dim, dim], wk and wv [layers, kv_dim, dim], wo [layers, dim, dim],
// FFN RMSNorm [layers, dim], w1 [layers, hidden, dim], w2 [layers, dim, hidden],
// w3 [layers, hidden, dim], final RMSNorm [dim], RoPE cos and sin [seq_len, head_dim/2] each
// (skipped: the decoder's table computes them), classifier [vocab, dim] when untied. Its floats
// start at byte 28, so they are 4-byte aligned only (Eigen maps them unaligned).
//
// Versions 1 and 2 (export.py's version1_export / version2_export): a 256-byte header of the
// magic, int32 version, the seven int32 above (vocab_size > 0), uint8 shared_classifier, for
// version 2 an int32 group_size, zeros. Version 1 then holds float32 arrays: attention RMSNorms
// [layers, dim], FFN RMSNorms [layers, dim], final RMSNorm [dim], embedding, wq, wk, wv, wo, w1,
// w2, w3 (each [layers, …] as above) and the classifier unless shared. Version 2 (runq.c) keeps
// the three RMSNorm arrays in float32 and stores every matrix (embedding, then wq, wk, wv, wo,
// w1, w2, w3 of each layer in turn, then the classifier unless shared) as int8 values followed by
// its float32 scales, one per group_size values (read as WeightType::q8_group views, in place).
// group_size must divide dim and hidden_dim (runq.c's matmul assumes it).
//
// Little-endian, as the exporter writes it. The file is memory-mapped. Every size is checked,
// with overflow-safe arithmetic, against the file length before a weight is read: a file that is
// shorter or longer than its header implies raises tformer::Error, and so does a non-finite
// version-2 scale (each is read once, at open).
//
#pragma once

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "tformer/core/error.hpp"
#include "tformer/model/config.hpp"
#include "tformer/model/weights.hpp"

namespace tformer {
inline namespace TFORMER_ARCH_NS {

// A read-only memory map of a whole file (move-only).
class MappedFile {
 public:
  MappedFile() = default;
  explicit MappedFile(const std::string& path) {
    const int fd = ::open(path.c_str(), O_RDONLY);
    check(fd >= 0, "MappedFile", "path", "a readable file", path);
    struct stat st {};
    if (::fstat(fd, &st) != 0 || st.st_size <= 0) {
      ::close(fd);
      check(false, "MappedFile", "file size", "> 0", path);
    }
    size_ = static_cast<std::size_t>(st.st_size);
    void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
    ::close(fd);
    check(p != MAP_FAILED, "MappedFile", "mmap", "success", path);
    data_ = static_cast<const std::byte*>(p);
  }
  MappedFile(MappedFile&& o) noexcept
      : data_(std::exchange(o.data_, nullptr)), size_(std::exchange(o.size_, 0)) {}
  MappedFile& operator=(MappedFile&& o) noexcept {
    if (this != &o) {
      unmap();
      data_ = std::exchange(o.data_, nullptr);
      size_ = std::exchange(o.size_, 0);
    }
    return *this;
  }
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  ~MappedFile() { unmap(); }
  std::span<const std::byte> bytes() const noexcept { return {data_, size_}; }

 private:
  void unmap() noexcept {
    if (data_) ::munmap(const_cast<std::byte*>(data_), size_);
  }
  const std::byte* data_ = nullptr;
  std::size_t size_ = 0;
};

struct Llama2cHeader {
  int version = 0;  // 0: legacy (run.c), 1: "ak42" float32, 2: "ak42" int8 groups (runq.c)
  std::int32_t dim = 0, hidden_dim = 0, n_layers = 0, n_heads = 0, n_kv_heads = 0,
               vocab_size = 0, seq_len = 0;
  bool shared_classifier = false;  // versions 1 and 2
  std::int32_t group_size = 0;     // version 2
  bool tied() const noexcept { return version == 0 ? vocab_size > 0 : shared_classifier; }
  index vocab() const noexcept { return vocab_size < 0 ? -index(vocab_size) : vocab_size; }
  index head_dim() const noexcept { return n_heads > 0 ? dim / n_heads : 0; }
};

namespace llama2c_detail {

constexpr std::size_t legacy_header_bytes = 7 * sizeof(std::int32_t);
constexpr std::size_t versioned_header_bytes = 256;
constexpr std::uint32_t magic = 0x616b3432;  // "ak42"

// a · b · c, or throws when the product leaves [0, 2^62).
inline std::uint64_t product(const char* what, std::uint64_t a, std::uint64_t b,
                             std::uint64_t c = 1) {
  std::uint64_t ab = 0, abc = 0;
  if (__builtin_mul_overflow(a, b, &ab) || __builtin_mul_overflow(ab, c, &abc) ||
      abc >= (std::uint64_t(1) << 62)) [[unlikely]]
    detail::fail_check("llama2c", what, "a size below 2^62", "an overflowing product");
  return abc;
}

inline std::int32_t read_i32(const std::byte* p) noexcept {
  std::int32_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

// Checks a header; returns the bytes its file holds (header included).
inline std::uint64_t checked_bytes(const Llama2cHeader& h) {
  constexpr const char* where = "llama2c header";
  check(h.dim > 0, where, "dim", "> 0", h.dim);
  check(h.hidden_dim > 0, where, "hidden_dim", "> 0", h.hidden_dim);
  check(h.n_layers > 0, where, "n_layers", "> 0", h.n_layers);
  check(h.n_heads > 0, where, "n_heads", "> 0", h.n_heads);
  check(h.n_kv_heads > 0 && h.n_heads % h.n_kv_heads == 0 && h.n_heads / h.n_kv_heads <= 16,
        where, "n_kv_heads", "a divisor of n_heads, n_heads / n_kv_heads <= 16", h.n_kv_heads);
  check(h.dim % h.n_heads == 0 && (h.dim / h.n_heads) % 2 == 0, where, "dim",
        "a multiple of n_heads with an even head_dim", h.dim);
  if (h.version == 0)
    check(h.vocab_size != 0 && h.vocab_size != INT32_MIN, where, "vocab_size", "non-zero",
          h.vocab_size);
  else
    check(h.vocab_size > 0, where, "vocab_size", "> 0", h.vocab_size);
  check(h.seq_len > 0, where, "seq_len", "> 0", h.seq_len);
  if (h.version == 2)
    check(h.group_size > 0 && h.dim % h.group_size == 0 && h.hidden_dim % h.group_size == 0, where,
          "group_size", "a divisor of dim and hidden_dim", h.group_size);
  const std::uint64_t D = std::uint64_t(h.dim), F = std::uint64_t(h.hidden_dim),
                      L = std::uint64_t(h.n_layers), V = std::uint64_t(h.vocab()),
                      kvd = std::uint64_t(h.n_kv_heads) * std::uint64_t(h.head_dim());
  std::uint64_t n = h.version == 0 ? legacy_header_bytes : versioned_header_bytes;
  auto add = [&](std::uint64_t x) {
    if (__builtin_add_overflow(n, x, &n) || n >= (std::uint64_t(1) << 62)) [[unlikely]]
      detail::fail_check(where, "total size", "below 2^62 bytes", "an overflowing sum");
  };
  // A matrix of `values` (already checked below 2^62): float32, or int8 and its scales.
  auto matrix = [&](const char* what, std::uint64_t count, std::uint64_t values) {
    if (h.version != 2) return add(product(what, count, values, 4));
    add(product(what, count, values));
    add(product(what, count, values / std::uint64_t(h.group_size), 4));
  };
  add(product("rms_att", L, D, 4));
  add(product("rms_ffn", L, D, 4));
  add(4 * D);  // final RMSNorm
  matrix("embedding", 1, product("embedding", V, D));
  matrix("wq", L, product("wq", D, D));
  matrix("wk", L, product("wk", kvd, D));
  matrix("wv", L, product("wv", kvd, D));
  matrix("wo", L, product("wo", D, D));
  matrix("w1", L, product("w1", F, D));
  matrix("w2", L, product("w2", D, F));
  matrix("w3", L, product("w3", F, D));
  if (h.version == 0)
    add(product("freq_cis", 2 * 4, std::uint64_t(h.seq_len), std::uint64_t(h.head_dim() / 2)));
  if (!h.tied()) matrix("wcls", 1, product("wcls", V, D));
  return n;
}

}  // namespace llama2c_detail

// A llama2.c model: header, Dims and ModelWeights viewing the file's memory (f32 views for
// versions 0 and 1, q8_group views for version 2). Use with
// Decoder<configs::Llama2c>(model.weights(), model.dims()).
class Llama2cModel {
 public:
  // Maps `path`; throws tformer::Error if it cannot be read or is not a consistent checkpoint.
  static Llama2cModel open(const std::string& path) {
    MappedFile file(path);
    const auto bytes = file.bytes();
    Llama2cModel m(bytes);
    m.file_ = std::move(file);
    return m;
  }
  // Over bytes the caller keeps alive; they must be 4-byte aligned.
  static Llama2cModel view(std::span<const std::byte> bytes) { return Llama2cModel(bytes); }

  Llama2cModel(Llama2cModel&&) noexcept = default;
  Llama2cModel& operator=(Llama2cModel&&) noexcept = default;

  const Llama2cHeader& header() const noexcept { return header_; }
  const Dims& dims() const noexcept { return dims_; }
  const ModelWeights& weights() const noexcept { return weights_; }

 private:
  explicit Llama2cModel(std::span<const std::byte> bytes) {
    using namespace llama2c_detail;
    constexpr const char* where = "llama2c";
    check(bytes.size() >= legacy_header_bytes, where, "file size", ">= 28 bytes (the header)",
          bytes.size());
    check(reinterpret_cast<std::uintptr_t>(bytes.data()) % alignof(float) == 0, where, "data",
          "4-byte aligned", "an unaligned buffer");
    Llama2cHeader& h = header_;
    std::uint32_t first;
    std::memcpy(&first, bytes.data(), 4);
    std::size_t at = 0;  // the header's seven int32
    if (first == magic) {
      check(bytes.size() >= versioned_header_bytes, where, "file size",
            ">= 256 bytes (the version 1/2 header)", bytes.size());
      h.version = read_i32(bytes.data() + 4);
      check(h.version == 1 || h.version == 2, where, "version",
            "1 (float32) or 2 (int8 groups, runq.c)", h.version);
      at = 8;
      h.shared_classifier = std::to_integer<int>(bytes[36]) != 0;
      check(std::to_integer<int>(bytes[36]) <= 1, where, "shared_classifier", "0 or 1",
            std::to_integer<int>(bytes[36]));
      if (h.version == 2) h.group_size = read_i32(bytes.data() + 37);
    }
    std::int32_t f[7];
    for (int i = 0; i < 7; ++i) f[i] = read_i32(bytes.data() + at + 4 * std::size_t(i));
    h.dim = f[0], h.hidden_dim = f[1], h.n_layers = f[2], h.n_heads = f[3], h.n_kv_heads = f[4],
    h.vocab_size = f[5], h.seq_len = f[6];
    const std::uint64_t want = checked_bytes(h);
    if (bytes.size() != want) [[unlikely]]
      detail::fail_check(where, "file size",
                         std::to_string(want) + " bytes (as the header implies)", bytes.size());

    dims_ = {.vocab = h.vocab(), .hidden = h.dim, .intermediate = h.hidden_dim,
             .layers = h.n_layers, .heads = h.n_heads, .kv_heads = h.n_kv_heads,
             .head_dim = h.head_dim(), .max_positions = h.seq_len};
    const std::byte* p = bytes.data() + (h.version == 0 ? legacy_header_bytes : versioned_header_bytes);
    const index D = h.dim, F = h.hidden_dim, L = h.n_layers, V = h.vocab(),
                kvd = index(h.n_kv_heads) * h.head_dim();
    ModelWeights& w = weights_;
    w.layers.resize(static_cast<std::size_t>(L));
    using LW = LayerWeights;
    auto floats = [&](index count) {
      const float* q = reinterpret_cast<const float*>(p);
      p += 4 * count;
      return q;
    };
    auto vec = [](const float* d, index n) { return std::span<const float>(d, std::size_t(n)); };
    auto norms = [&](auto member) {  // [layers, dim] float32
      const float* base = floats(L * D);
      for (index l = 0; l < L; ++l) w.layers[std::size_t(l)].*member = vec(base + l * D, D);
    };
    // One matrix in the file's storage (float32, or int8 then its scales), checked in place.
    auto matrix = [&](index rows, index cols, const char* name) {
      if (h.version != 2) return WeightView(floats(rows * cols), rows, cols, name);
      const auto* values = reinterpret_cast<const std::int8_t*>(p);
      p += rows * cols;
      const auto* scales = reinterpret_cast<const float*>(p);
      p += 4 * (rows * cols / h.group_size);
      const WeightView v = WeightView::q8_group(values, scales, h.group_size, rows, cols, name);
      check_weight_within(where, v, bytes.data(), bytes.size());
      check_weight_scales(where, v);
      return v;
    };
    // One matrix per layer: all layers' version 0/1 arrays are consecutive, and so are version
    // 2's (each with its scales).
    auto per_layer = [&](index rows, index cols, const char* name, auto member) {
      for (index l = 0; l < L; ++l) member(w.layers[std::size_t(l)]) = matrix(rows, cols, name);
    };
    auto wq = [](LW& l) -> WeightView& { return l.wq; };
    auto wk = [](LW& l) -> WeightView& { return l.wk; };
    auto wv = [](LW& l) -> WeightView& { return l.wv; };
    auto wo = [](LW& l) -> WeightView& { return l.wo; };
    auto w1 = [](LW& l) -> WeightView& { return l.ffn.gate; };
    auto w2 = [](LW& l) -> WeightView& { return l.ffn.down; };
    auto w3 = [](LW& l) -> WeightView& { return l.ffn.up; };
    auto attention_and_ffn = [&] {
      per_layer(D, D, "wq", wq);
      per_layer(kvd, D, "wk", wk);
      per_layer(kvd, D, "wv", wv);
      per_layer(D, D, "wo", wo);
      if (h.version == 0) norms(&LW::ffn_norm);
      per_layer(F, D, "w1", w1);
      per_layer(D, F, "w2", w2);
      per_layer(F, D, "w3", w3);
    };
    if (h.version == 0) {
      w.embedding = matrix(V, D, "token_embedding");
      norms(&LW::attn_norm);
      attention_and_ffn();
      w.final_norm = vec(floats(D), D);
      floats(2 * index(h.seq_len) * (h.head_dim() / 2));  // RoPE cos/sin: not needed
    } else {
      norms(&LW::attn_norm);
      norms(&LW::ffn_norm);
      w.final_norm = vec(floats(D), D);
      w.embedding = matrix(V, D, "token_embedding");
      attention_and_ffn();
    }
    if (!h.tied()) w.lm_head = matrix(V, D, "wcls");
  }

  MappedFile file_;  // empty for view()
  Llama2cHeader header_;
  Dims dims_;
  ModelWeights weights_;
};

// llama2.c's tokenizer.bin: vocabulary pieces with merge scores.
class Llama2cTokenizer {
 public:
  static constexpr std::int32_t bos = 1, eos = 2;

  static Llama2cTokenizer open(const std::string& path, index vocab_size) {
    MappedFile file(path);
    return Llama2cTokenizer(file.bytes(), vocab_size);
  }
  Llama2cTokenizer(std::span<const std::byte> bytes, index vocab_size) {
    constexpr const char* where = "llama2c tokenizer";
    check(vocab_size > 0, where, "vocab_size", "> 0", vocab_size);
    std::size_t at = 0;
    auto need = [&](std::size_t n, const char* what) {
      if (n > bytes.size() - at) [[unlikely]]
        detail::fail_check(where, what, std::to_string(n) + " more bytes",
                           std::to_string(bytes.size() - at) + " left at byte " + std::to_string(at));
    };
    need(4, "max_token_length");
    max_length_ = llama2c_detail::read_i32(bytes.data());
    at = 4;
    check(max_length_ > 0, where, "max_token_length", "> 0", max_length_);
    // Each token takes at least 8 bytes: a vocab_size the file cannot hold is refused here.
    if (vocab_size > index((bytes.size() - 4) / 8)) [[unlikely]]
      detail::fail_check(where, "vocab_size",
                         "<= " + std::to_string((bytes.size() - 4) / 8) + " (what the file can hold)",
                         vocab_size);
    pieces_.reserve(std::size_t(vocab_size));
    scores_.reserve(std::size_t(vocab_size));
    for (index i = 0; i < vocab_size; ++i) {
      need(8, "token score and length");
      float score;
      std::memcpy(&score, bytes.data() + at, 4);
      const std::int32_t len = llama2c_detail::read_i32(bytes.data() + at + 4);
      at += 8;
      check(len >= 0 && len <= max_length_, where, "token length", "in [0, max_token_length]", len);
      need(std::size_t(len), "token bytes");
      pieces_.emplace_back(reinterpret_cast<const char*>(bytes.data() + at), std::size_t(len));
      scores_.push_back(score);
      at += std::size_t(len);
    }
    for (std::size_t i = 0; i < pieces_.size(); ++i) ids_.try_emplace(pieces_[i], std::int32_t(i));
  }

  index vocab_size() const noexcept { return index(pieces_.size()); }
  std::string_view piece(std::int32_t id) const {
    check_index("Llama2cTokenizer::piece", "id", id, vocab_size());
    return pieces_[std::size_t(id)];
  }

  // run.c's encode: BOS if asked, the dummy prefix " ", code points (or bytes + 3), then
  // greedy merges by score; EOS if asked.
  std::vector<std::int32_t> encode(std::string_view text, bool add_bos = true,
                                   bool add_eos = false) const {
    std::vector<std::int32_t> t;
    if (add_bos) t.push_back(bos);
    if (!text.empty()) {
      if (auto it = ids_.find(" "); it != ids_.end()) t.push_back(it->second);
    }
    for (std::size_t i = 0; i < text.size();) {
      std::size_t n = 1;  // a UTF-8 code point: its lead byte and up to 3 continuation bytes
      while (i + n < text.size() && n < 4 && (static_cast<unsigned char>(text[i + n]) & 0xC0) == 0x80)
        ++n;
      if (auto it = ids_.find(std::string(text.substr(i, n))); it != ids_.end()) {
        t.push_back(it->second);
      } else {
        for (std::size_t j = 0; j < n; ++j)
          t.push_back(std::int32_t(static_cast<unsigned char>(text[i + j])) + 3);
      }
      i += n;
    }
    const std::size_t first = add_bos ? 1 : 0;  // BOS takes no part in merges
    for (;;) {
      float best = -1e10f;
      std::size_t at = t.size();
      std::int32_t merged = -1;
      for (std::size_t i = first; i + 1 < t.size(); ++i) {
        if (t[i] < 0 || t[i] >= vocab_size() || t[i + 1] < 0 || t[i + 1] >= vocab_size()) continue;
        const auto it = ids_.find(pieces_[std::size_t(t[i])] + pieces_[std::size_t(t[i + 1])]);
        if (it != ids_.end() && scores_[std::size_t(it->second)] > best) {
          best = scores_[std::size_t(it->second)];
          at = i;
          merged = it->second;
        }
      }
      if (merged < 0) break;
      t[at] = merged;
      t.erase(t.begin() + std::ptrdiff_t(at) + 1);
    }
    if (add_eos) t.push_back(eos);
    return t;
  }

  // The text of `token` after `prev` (run.c's decode): the space after BOS is dropped and a byte
  // token <0xXX> is that byte.
  std::string decode(std::int32_t prev, std::int32_t token) const {
    std::string_view p = piece(token);
    if (prev == bos && !p.empty() && p[0] == ' ') p.remove_prefix(1);
    if (p.size() == 6 && p.substr(0, 3) == "<0x" && p[5] == '>') {
      const auto hex = [](char c) {
        return c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
      };
      const int hi = hex(p[3]), lo = hex(p[4]);
      if (hi >= 0 && lo >= 0) return std::string(1, char(hi * 16 + lo));
    }
    return std::string(p);
  }

 private:
  std::int32_t max_length_ = 0;
  std::vector<std::string> pieces_;
  std::vector<float> scores_;
  std::unordered_map<std::string, std::int32_t> ids_;
};

}  // namespace TFORMER_ARCH_NS
}  // namespace tformer
