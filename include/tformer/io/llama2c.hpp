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
// Little-endian, as the exporter writes it. Every size is checked, with overflow-safe arithmetic,
// against the file length before a weight is read: a file that is shorter or longer than its
// header implies raises tformer::Error, and so does a non-finite version-2 scale (each is read
// once, at open).
//
// Files: open() takes regular files only (a FIFO, directory or device is an error, at once) and
// either memory-maps them (FileMode::Map, the model's default: no copy) or reads them into an
// owned buffer (FileMode::Read). A mapped checkpoint truncated on disk after open kills the
// process with SIGBUS when a weight past the new end is read, as with every mmap-based loader;
// Read mode is immune. See FileMode.
//
// The tokenizer (tokenizer.bin: int32 max_token_length, then per token float32 score, int32
// length, its bytes) encodes as run.c does, in O(n log n) instead of run.c's O(n^2) (a 400 KB
// prompt: about 0.2 s instead of half an hour), and never returns an id outside
// [0, vocab_size): see Llama2cTokenizer::encode.
//
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <iomanip>
#include <queue>
#include <span>
#include <sstream>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "tformer/core/error.hpp"
#include "tformer/core/memory.hpp"
#include "tformer/io/file_bytes.hpp"
#include "tformer/model/config.hpp"
#include "tformer/model/weights.hpp"

namespace tformer {
inline namespace TFORMER_ARCH_NS {

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
  // Maps (or reads, see FileMode) `path`; throws tformer::Error if it is not a regular file,
  // cannot be read or is not a consistent checkpoint.
  static Llama2cModel open(const std::string& path, FileMode mode = FileMode::Map) {
    FileBytes file(path, mode, "Llama2cModel::open");
    Llama2cModel m(file.bytes());
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

  FileBytes file_;  // empty for view()
  Llama2cHeader header_;
  Dims dims_;
  ModelWeights weights_;
};

// llama2.c's tokenizer.bin: vocabulary pieces with merge scores. Ids follow llama2.c's layout:
// 0 <unk>, 1 BOS, 2 EOS, 3 + b the byte b (<0x00>..<0xFF>), then merged pieces. A vocabulary
// smaller than that layout is accepted; encode() raises tformer::Error when it would need an id
// the vocabulary lacks.
class Llama2cTokenizer {
 public:
  static constexpr std::int32_t bos = 1, eos = 2;

  // Reads `path` (see FileMode: the tokenizer copies its pieces, so the file is needed only
  // during open, and Read is the default).
  static Llama2cTokenizer open(const std::string& path, index vocab_size,
                               FileMode mode = FileMode::Read) {
    const FileBytes file(path, mode, "Llama2cTokenizer::open");
    return Llama2cTokenizer(file.bytes(), vocab_size);
  }
  // The first `vocab_size` tokens of a tokenizer.bin held in `bytes` (copied; any alignment).
  Llama2cTokenizer(std::span<const std::byte> bytes, index vocab_size) {
    constexpr const char* where = "Llama2cTokenizer";
    check(vocab_size > 0 && vocab_size <= INT32_MAX, where, "vocab_size", "in [1, 2^31)",
          vocab_size);
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
    // Equal pieces: the first id owns the string (encode never returns the later ones).
    for (std::size_t i = 0; i < pieces_.size(); ++i) ids_.try_emplace(pieces_[i], std::int32_t(i));
  }

  index vocab_size() const noexcept { return index(pieces_.size()); }
  std::string_view piece(std::int32_t id) const {
    check_index("Llama2cTokenizer::piece", "id", id, vocab_size());
    return pieces_[std::size_t(id)];
  }
  // The merge score of `id`'s piece.
  float score(std::int32_t id) const {
    check_index("Llama2cTokenizer::score", "id", id, vocab_size());
    return scores_[std::size_t(id)];
  }

  // run.c's encode: BOS if asked, the dummy prefix " " (for non-empty text), each UTF-8 code
  // point's piece or else its bytes' tokens (byte b is id b + 3), then greedy merges by score
  // (merge()); EOS if asked. Never returns an id outside [0, vocab_size): asking for a BOS or EOS
  // the vocabulary lacks, or a byte whose token it lacks, raises tformer::Error naming the
  // argument, or the byte and its offset in `text`.
  std::vector<std::int32_t> encode(std::string_view text, bool add_bos = true,
                                   bool add_eos = false) const {
    check_special("add_bos", add_bos, bos);
    check_special("add_eos", add_eos, eos);
    std::vector<std::int32_t> t;
    t.reserve(text.size() + 3);
    if (add_bos) t.push_back(bos);
    append_symbols(text, t);
    merge(t, add_bos ? 1 : 0);  // BOS takes no part in merges
    if (add_eos) t.push_back(eos);
    return t;
  }

  // The text of `token` after `prev` (run.c's decode): the space after BOS is dropped and a byte
  // token <0xXX> is that byte. `prev` is only compared with BOS, so any value may be passed.
  std::string decode(std::int32_t prev, std::int32_t token) const {
    check_index("Llama2cTokenizer::decode", "token", token, vocab_size());
    std::string_view p = pieces_[std::size_t(token)];
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
  // run.c starts its best score at -1e10: a pair whose piece scores no higher never merges.
  static constexpr float merge_threshold = -1e10f;

  // Throws when `asked` for the special token `id` that the vocabulary lacks.
  void check_special(const char* what, bool asked, std::int32_t id) const {
    if (asked && id >= vocab_size()) [[unlikely]]
      detail::fail_check("Llama2cTokenizer::encode", what,
                         "false, or a vocabulary holding id " + std::to_string(id) +
                             " (vocab_size > " + std::to_string(id) + ")",
                         "true with vocab_size " + std::to_string(vocab_size()));
  }

  // Byte text[at]'s fallback token, text[at] + 3; throws when the vocabulary lacks it.
  std::int32_t byte_token(std::string_view text, std::size_t at) const {
    const int b = static_cast<unsigned char>(text[at]);
    if (b + 3 >= vocab_size()) [[unlikely]] {
      std::ostringstream what, expected;
      what << "text[" << at << "] = 0x" << std::hex << std::uppercase << std::setw(2)
           << std::setfill('0') << b << " (no piece: its byte token)";
      expected << "a token id in [0, " << vocab_size() << ")";
      detail::fail_check("Llama2cTokenizer::encode", what.str(), expected.str(), b + 3);
    }
    return std::int32_t(b + 3);
  }

  // The symbols before merging: the dummy prefix " " (when text is not empty and " " is a
  // piece), then per UTF-8 code point (its lead byte and up to 3 continuation bytes) its piece,
  // or else one token per byte.
  void append_symbols(std::string_view text, std::vector<std::int32_t>& t) const {
    if (text.empty()) return;
    if (auto it = ids_.find(" "); it != ids_.end()) t.push_back(it->second);
    std::string unit;
    for (std::size_t i = 0; i < text.size();) {
      std::size_t n = 1;
      while (i + n < text.size() && n < 4 &&
             (static_cast<unsigned char>(text[i + n]) & 0xC0) == 0x80)
        ++n;
      unit.assign(text.substr(i, n));
      if (auto it = ids_.find(unit); it != ids_.end()) {
        t.push_back(it->second);
      } else {
        for (std::size_t j = i; j < i + n; ++j) t.push_back(byte_token(text, j));
      }
      i += n;
    }
  }

  // A pair of adjacent symbols whose concatenation is the piece `merged`.
  struct Candidate {
    float score;
    std::size_t left, right;  // positions in the symbol list
    std::int32_t left_id, right_id, merged;
  };

  // run.c's merges of t[first..]: each step, of all adjacent pairs whose concatenation is a
  // piece scoring above merge_threshold, the one with the highest score, the leftmost of equal
  // scores, becomes that piece, until no pair is left. run.c rescans every pair per step
  // (O(n^2)); here a max-heap of candidate pairs (score, then position) over a linked list of
  // symbols gives the same steps in O(n log n). A merge pushes the two pairs it creates; a
  // candidate whose symbols changed since it was pushed is dropped when popped.
  void merge(std::vector<std::int32_t>& t, std::size_t first) const {
    if (t.size() < first + 2) return;
    std::int32_t* s = t.data() + first;  // symbol i's id; -1 once merged into its left neighbour
    const std::size_t n = t.size() - first;
    constexpr std::size_t none = std::size_t(-1);
    std::vector<std::size_t> prev(n), next(n);
    for (std::size_t i = 0; i < n; ++i) {
      prev[i] = i - 1;  // none for i = 0
      next[i] = i + 1 < n ? i + 1 : none;
    }
    const auto lower = [](const Candidate& a, const Candidate& b) {  // b goes first
      return a.score < b.score || (a.score == b.score && a.left > b.left);
    };
    std::priority_queue<Candidate, std::vector<Candidate>, decltype(lower)> heap(lower);
    std::string key;
    const auto consider = [&](std::size_t l, std::size_t r) {
      if (l == none || r == none) return;
      key.assign(pieces_[std::size_t(s[l])]).append(pieces_[std::size_t(s[r])]);
      const auto it = ids_.find(key);
      if (it == ids_.end()) return;
      const float score = scores_[std::size_t(it->second)];
      if (score > merge_threshold) heap.push({score, l, r, s[l], s[r], it->second});  // not NaN
    };
    for (std::size_t i = 0; i + 1 < n; ++i) consider(i, i + 1);
    while (!heap.empty()) {
      const Candidate c = heap.top();
      heap.pop();
      if (next[c.left] != c.right || s[c.left] != c.left_id || s[c.right] != c.right_id)
        continue;  // a symbol was merged away or changed since
      s[c.left] = c.merged;
      s[c.right] = -1;
      next[c.left] = next[c.right];
      if (next[c.left] != none) prev[next[c.left]] = c.left;
      consider(prev[c.left], c.left);
      consider(c.left, next[c.left]);
    }
    std::size_t out = first;  // the surviving symbols, in order (symbol 0 always survives)
    for (std::size_t i = 0; i != none; i = next[i]) t[out++] = s[i];
    t.resize(out);
  }

  std::int32_t max_length_ = 0;
  std::vector<std::string> pieces_;
  std::vector<float> scores_;
  std::unordered_map<std::string, std::int32_t> ids_;
};

}  // namespace TFORMER_ARCH_NS
}  // namespace tformer
