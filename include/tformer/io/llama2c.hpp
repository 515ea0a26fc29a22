// Karpathy's llama2.c checkpoints (the legacy "version 0" .bin that run.c reads) and its
// tokenizer.bin, read without copying the weights.
//
// Model file: seven int32 (dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size,
// seq_len; vocab_size < 0 means the classifier is stored separately, > 0 that it is tied to
// the embedding), then float32 arrays: token embedding [vocab, dim], attention RMSNorm
// [layers, dim], wq [layers, dim, dim], wk and wv [layers, kv_dim, dim], wo [layers, dim, dim],
// FFN RMSNorm [layers, dim], w1 [layers, hidden, dim], w2 [layers, dim, hidden],
// w3 [layers, hidden, dim], final RMSNorm [dim], RoPE cos and sin [seq_len, head_dim/2] each
// (skipped: the decoder's table computes them), classifier [vocab, dim] when untied.
// Little-endian, as the exporter writes it. The file is memory-mapped; its floats start at
// byte 28, so they are 4-byte aligned only (Eigen maps them unaligned).
//
// Every size is checked, with overflow-safe arithmetic, against the file length before a float
// is read: a file that is shorter or longer than its header implies raises tformer::Error.
//
// Tokenizer file: int32 max_token_length, then per token (vocab_size of them, from the model)
// float32 score, int32 length, the bytes. Encoding is run.c's: optional BOS (1), a dummy-prefix
// space, UTF-8 code points looked up (unknown ones as byte tokens <0xXX> = byte + 3), then
// repeated merging of the adjacent pair whose concatenation has the highest score.
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
  std::int32_t dim = 0, hidden_dim = 0, n_layers = 0, n_heads = 0, n_kv_heads = 0,
               vocab_size = 0, seq_len = 0;
  bool tied() const noexcept { return vocab_size > 0; }
  index vocab() const noexcept { return vocab_size < 0 ? -index(vocab_size) : vocab_size; }
  index head_dim() const noexcept { return n_heads > 0 ? dim / n_heads : 0; }
};

namespace llama2c_detail {

constexpr std::size_t header_bytes = 7 * sizeof(std::int32_t);

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

// Checks a header; returns the floats its file holds after the header.
inline std::uint64_t checked_floats(const Llama2cHeader& h) {
  constexpr const char* where = "llama2c header";
  check(h.dim > 0, where, "dim", "> 0", h.dim);
  check(h.hidden_dim > 0, where, "hidden_dim", "> 0", h.hidden_dim);
  check(h.n_layers > 0, where, "n_layers", "> 0", h.n_layers);
  check(h.n_heads > 0, where, "n_heads", "> 0", h.n_heads);
  check(h.n_kv_heads > 0 && h.n_heads % h.n_kv_heads == 0 && h.n_heads / h.n_kv_heads <= 16,
        where, "n_kv_heads", "a divisor of n_heads, n_heads / n_kv_heads <= 16", h.n_kv_heads);
  check(h.dim % h.n_heads == 0 && (h.dim / h.n_heads) % 2 == 0, where, "dim",
        "a multiple of n_heads with an even head_dim", h.dim);
  check(h.vocab_size != 0 && h.vocab_size != INT32_MIN, where, "vocab_size", "non-zero",
        h.vocab_size);
  check(h.seq_len > 0, where, "seq_len", "> 0", h.seq_len);
  const std::uint64_t D = std::uint64_t(h.dim), F = std::uint64_t(h.hidden_dim),
                      L = std::uint64_t(h.n_layers), V = std::uint64_t(h.vocab()),
                      kvd = std::uint64_t(h.n_kv_heads) * std::uint64_t(h.head_dim());
  std::uint64_t n = 0;
  auto add = [&](std::uint64_t x) {
    if (__builtin_add_overflow(n, x, &n) || n >= (std::uint64_t(1) << 62)) [[unlikely]]
      detail::fail_check(where, "total size", "below 2^62 floats", "an overflowing sum");
  };
  add(product("embedding", V, D));
  add(product("rms_att", L, D));
  add(product("wq", L, D, D));
  add(product("wk", L, kvd, D));
  add(product("wv", L, kvd, D));
  add(product("wo", L, D, D));
  add(product("rms_ffn", L, D));
  add(product("w1", L, F, D));
  add(product("w2", L, D, F));
  add(product("w3", L, F, D));
  add(D);
  add(product("freq_cis", 2, std::uint64_t(h.seq_len), std::uint64_t(h.head_dim() / 2)));
  if (!h.tied()) add(product("wcls", V, D));
  return n;
}

}  // namespace llama2c_detail

// A llama2.c model: header, Dims and ModelWeights viewing the file's memory. Use with
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
    check(bytes.size() >= header_bytes, where, "file size", ">= 28 bytes (the header)",
          bytes.size());
    check(reinterpret_cast<std::uintptr_t>(bytes.data()) % alignof(float) == 0, where, "data",
          "4-byte aligned", "an unaligned buffer");
    std::int32_t f[7];
    for (int i = 0; i < 7; ++i) f[i] = read_i32(bytes.data() + 4 * i);
    header_ = {f[0], f[1], f[2], f[3], f[4], f[5], f[6]};
    const std::uint64_t floats = checked_floats(header_);
    const std::uint64_t want = header_bytes + 4 * floats;
    if (bytes.size() != want) [[unlikely]]
      detail::fail_check(where, "file size",
                         std::to_string(want) + " bytes (as the header implies)", bytes.size());

    const Llama2cHeader& h = header_;
    dims_ = {.vocab = h.vocab(), .hidden = h.dim, .intermediate = h.hidden_dim,
             .layers = h.n_layers, .heads = h.n_heads, .kv_heads = h.n_kv_heads,
             .head_dim = h.head_dim(), .max_positions = h.seq_len};
    const float* p = reinterpret_cast<const float*>(bytes.data() + header_bytes);
    auto take = [&](index count) {
      const float* q = p;
      p += count;
      return q;
    };
    const index D = h.dim, F = h.hidden_dim, L = h.n_layers, V = h.vocab(),
                kvd = index(h.n_kv_heads) * h.head_dim();
    ModelWeights& w = weights_;
    w.embedding = MatrixView<const float>(take(V * D), V, D);
    w.layers.resize(static_cast<std::size_t>(L));
    auto per_layer = [&](index rows, index cols, auto assign) {
      const float* base = take(L * rows * cols);
      for (index l = 0; l < L; ++l) assign(w.layers[std::size_t(l)], base + l * rows * cols);
    };
    using LW = LayerWeights;
    auto vec = [](const float* d, index n) { return std::span<const float>(d, std::size_t(n)); };
    per_layer(1, D, [&](LW& l, const float* d) { l.attn_norm = vec(d, D); });
    per_layer(D, D, [&](LW& l, const float* d) { l.wq = MatrixView<const float>(d, D, D); });
    per_layer(kvd, D, [&](LW& l, const float* d) { l.wk = MatrixView<const float>(d, kvd, D); });
    per_layer(kvd, D, [&](LW& l, const float* d) { l.wv = MatrixView<const float>(d, kvd, D); });
    per_layer(D, D, [&](LW& l, const float* d) { l.wo = MatrixView<const float>(d, D, D); });
    per_layer(1, D, [&](LW& l, const float* d) { l.ffn_norm = vec(d, D); });
    per_layer(F, D, [&](LW& l, const float* d) { l.ffn.gate = MatrixView<const float>(d, F, D); });  // w1
    per_layer(D, F, [&](LW& l, const float* d) { l.ffn.down = MatrixView<const float>(d, D, F); });  // w2
    per_layer(F, D, [&](LW& l, const float* d) { l.ffn.up = MatrixView<const float>(d, F, D); });    // w3
    w.final_norm = vec(take(D), D);
    take(2 * index(h.seq_len) * (h.head_dim() / 2));  // RoPE cos/sin: not needed
    if (!h.tied()) w.lm_head = MatrixView<const float>(take(V * D), V, D);
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
