// io/llama2c.hpp: a checkpoint written here (by this file's own writers, from the formats'
// description in llama2.c's export.py, not the library's) reads back to identical tensors and
// identical logits (versions 0 and 1), or to int8 groups whose values and logits match a double
// reference (version 2); truncated, over-long and inconsistent files raise tformer::Error; only
// regular files are opened (a FIFO without a writer is refused at once); Read mode gives what Map
// mode gives and survives the file's truncation. The tokenizer follows run.c's encode and decode:
// its merges equal run.c's quadratic loop (tests/reference) on random vocabularies and prompts,
// and a 400 KB prompt encodes within a generous limit (about 0.2 s; the old loop: half an hour).
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "support/error_of.hpp"
#include "reference/decoder_reference.hpp"
#include "reference/llama2c_tokenizer_reference.hpp"
#include "support/random.hpp"
#include "support/temp_dir.hpp"
#include "tformer/io/llama2c.hpp"
#include "tformer/model/decoder.hpp"

using tformer::Dims;
using tformer::ModelWeights;

namespace {

using C = tformer::configs::Llama2c;

// The .bin bytes of `w` (llama2.c's legacy export): header, then the arrays in file order.
std::vector<std::byte> write_llama2c(const Dims& d, const ModelWeights& w, bool tied) {
  std::vector<std::byte> out;
  auto put = [&](const void* p, std::size_t n) {
    const auto* b = static_cast<const std::byte*>(p);
    out.insert(out.end(), b, b + n);
  };
  const std::int32_t header[7] = {std::int32_t(d.hidden), std::int32_t(d.intermediate),
                                  std::int32_t(d.layers), std::int32_t(d.heads),
                                  std::int32_t(d.kv_heads),
                                  std::int32_t(tied ? d.vocab : -d.vocab),
                                  std::int32_t(d.max_positions)};
  put(header, sizeof header);
  auto matrix = [&](const tformer::WeightView& w) {  // f32 (OwnedWeights)
    const tformer::MatrixView<const float> m = w.f32();
    for (tformer::index r = 0; r < m.rows(); ++r) put(m.row(r), sizeof(float) * std::size_t(m.cols()));
  };
  auto vec = [&](std::span<const float> v) { put(v.data(), v.size_bytes()); };
  matrix(w.embedding);
  for (const auto& l : w.layers) vec(l.attn_norm);
  for (const auto& l : w.layers) matrix(l.wq);
  for (const auto& l : w.layers) matrix(l.wk);
  for (const auto& l : w.layers) matrix(l.wv);
  for (const auto& l : w.layers) matrix(l.wo);
  for (const auto& l : w.layers) vec(l.ffn_norm);
  for (const auto& l : w.layers) matrix(l.ffn.gate);  // w1
  for (const auto& l : w.layers) matrix(l.ffn.down);  // w2
  for (const auto& l : w.layers) matrix(l.ffn.up);    // w3
  vec(w.final_norm);
  const std::vector<float> freq(std::size_t(d.max_positions * d.head_dim / 2), 0.5f);
  vec(freq);  // cos
  vec(freq);  // sin
  if (!tied) matrix(w.lm_head);
  return out;
}

// export.py's quantize_q80: per group of `gs` values, scale = max|w| / 127 and
// q = round(w / scale) (round half to even, as torch.round).
void quantize_groups(const float* w, std::size_t n, int gs, std::vector<std::int8_t>& q,
                     std::vector<float>& scales) {
  for (std::size_t g = 0; g < n / std::size_t(gs); ++g) {
    float m = 0;
    for (int i = 0; i < gs; ++i) m = std::max(m, std::abs(w[g * std::size_t(gs) + std::size_t(i)]));
    const float scale = m / 127.0f;
    scales.push_back(scale);
    for (int i = 0; i < gs; ++i)
      q.push_back(std::int8_t(std::nearbyint(w[g * std::size_t(gs) + std::size_t(i)] / scale)));
  }
}

// The .bin bytes of `w` in export.py's version 1 (float32) or 2 (int8 groups of `gs`).
std::vector<std::byte> write_versioned(int version, const Dims& d, const ModelWeights& w, bool tied,
                                       int gs = 0) {
  std::vector<std::byte> out(256);
  auto at = [&](std::size_t offset, const void* p, std::size_t n) { std::memcpy(out.data() + offset, p, n); };
  const std::uint32_t magic = 0x616b3432;
  const std::int32_t header[9] = {version, std::int32_t(d.hidden), std::int32_t(d.intermediate),
                                  std::int32_t(d.layers), std::int32_t(d.heads), std::int32_t(d.kv_heads),
                                  std::int32_t(d.vocab), std::int32_t(d.max_positions)};
  at(0, &magic, 4);
  at(4, header, 4 * 8);
  out[36] = std::byte(tied ? 1 : 0);
  if (version == 2) at(37, &gs, 4);
  auto put = [&](const void* p, std::size_t n) {
    const auto* b = static_cast<const std::byte*>(p);
    out.insert(out.end(), b, b + n);
  };
  auto vec = [&](std::span<const float> v) { put(v.data(), v.size_bytes()); };
  auto matrix = [&](const tformer::WeightView& wv) {
    const tformer::MatrixView<const float> m = wv.f32();
    std::vector<float> flat;
    for (tformer::index r = 0; r < m.rows(); ++r) flat.insert(flat.end(), m.row(r), m.row(r) + m.cols());
    if (version == 1) return vec(flat);
    std::vector<std::int8_t> q;
    std::vector<float> scales;
    quantize_groups(flat.data(), flat.size(), gs, q, scales);
    put(q.data(), q.size());
    vec(scales);
  };
  for (const auto& l : w.layers) vec(l.attn_norm);
  for (const auto& l : w.layers) vec(l.ffn_norm);
  vec(w.final_norm);
  matrix(w.embedding);
  for (const auto& l : w.layers) matrix(l.wq);
  for (const auto& l : w.layers) matrix(l.wk);
  for (const auto& l : w.layers) matrix(l.wv);
  for (const auto& l : w.layers) matrix(l.wo);
  for (const auto& l : w.layers) matrix(l.ffn.gate);  // w1
  for (const auto& l : w.layers) matrix(l.ffn.down);  // w2
  for (const auto& l : w.layers) matrix(l.ffn.up);    // w3
  if (!tied) matrix(w.lm_head);
  return out;
}

// 4-byte aligned copy of bytes (the reader's requirement for in-memory views).
struct Aligned {
  explicit Aligned(const std::vector<std::byte>& b) : words((b.size() + 3) / 4) {
    if (!b.empty()) std::memcpy(words.data(), b.data(), b.size());
    size = b.size();
  }
  std::span<const std::byte> bytes() const {
    return {reinterpret_cast<const std::byte*>(words.data()), size};
  }
  std::vector<std::uint32_t> words;
  std::size_t size;
};

bool same(tformer::MatrixView<const float> a, tformer::MatrixView<const float> b) {
  if (a.rows() != b.rows() || a.cols() != b.cols()) return false;
  for (tformer::index r = 0; r < a.rows(); ++r)
    if (std::memcmp(a.row(r), b.row(r), sizeof(float) * std::size_t(a.cols())) != 0) return false;
  return true;
}
bool same(const tformer::WeightView& a, const tformer::WeightView& b) {
  return a.type() == tformer::WeightType::f32 && b.type() == tformer::WeightType::f32 &&
         same(a.f32(), b.f32());
}
bool same(std::span<const float> a, std::span<const float> b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size_bytes()) == 0;
}

constexpr Dims dims = {.vocab = 37, .hidden = 32, .intermediate = 40, .layers = 2, .heads = 4,
                       .kv_heads = 2, .head_dim = 8, .max_positions = 16};

// Every tensor of `a` equals (bit for bit) the same tensor of `b` (f32 weights).
bool same(const ModelWeights& a, const ModelWeights& b) {
  bool ok = same(a.embedding, b.embedding) && same(a.final_norm, b.final_norm) &&
            a.lm_head.rows() == b.lm_head.rows() && a.layers.size() == b.layers.size();
  if (ok && a.lm_head.rows() > 0) ok = same(a.lm_head, b.lm_head);
  for (std::size_t l = 0; ok && l < a.layers.size(); ++l) {
    const auto &x = a.layers[l], &y = b.layers[l];
    ok = same(x.attn_norm, y.attn_norm) && same(x.ffn_norm, y.ffn_norm) && same(x.wq, y.wq) &&
         same(x.wk, y.wk) && same(x.wv, y.wv) && same(x.wo, y.wo) && same(x.ffn.gate, y.ffn.gate) &&
         same(x.ffn.up, y.ffn.up) && same(x.ffn.down, y.ffn.down);
  }
  return ok;
}

// The logits of `tokens` through a decoder over `w`.
std::vector<float> logits(const ModelWeights& w, const Dims& d,
                          const std::vector<std::int32_t>& tokens) {
  std::vector<float> out(tokens.size() * std::size_t(d.vocab));
  tformer::Decoder<C> dec(w, d);
  dec.forward(0, tokens, {out.data(), tformer::index(tokens.size()), d.vocab},
              tformer::LogitsFor::All);
  return out;
}

// Calls `open` (on a FIFO without a writer, say). If it has not returned after 5 s, opens
// `fifo` for writing, which lets a reader blocked in open(2) go on; returns whether it had to.
template <class Open>
bool blocked_until_rescued(const std::string& fifo, Open open) {
  std::atomic<bool> done = false, rescued = false;
  std::thread watchdog([&] {
    const auto start = std::chrono::steady_clock::now();
    while (!done && std::chrono::steady_clock::now() - start < std::chrono::seconds(5))
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    if (done) return;
    rescued = true;
    const int fd = ::open(fifo.c_str(), O_WRONLY | O_NONBLOCK);
    if (fd >= 0) ::close(fd);
  });
  open();
  done = true;
  watchdog.join();
  return rescued;
}

using test::error_of;

// A tokenizer's vocabulary: token i is pieces[i] with scores[i].
struct Vocabulary {
  std::vector<std::string> pieces;
  std::vector<float> scores;
  void add(std::string piece, float score) {
    pieces.push_back(std::move(piece));
    scores.push_back(score);
  }
  tformer::index size() const { return tformer::index(pieces.size()); }
  std::int32_t id(const std::string& piece) const {
    return std::int32_t(std::find(pieces.begin(), pieces.end(), piece) - pieces.begin());
  }
};

// llama2.c's layout: <unk>, <s>, </s>, then the 256 byte tokens <0x00>..<0xFF> (ids 3..258).
Vocabulary llama2c_vocabulary() {
  Vocabulary v;
  v.add("<unk>", 0), v.add("\n<s>\n", 0), v.add("\n</s>\n", 0);
  for (int b = 0; b < 256; ++b) {
    char hex[8];
    std::snprintf(hex, sizeof hex, "<0x%02X>", b);
    v.add(hex, 0);
  }
  return v;
}

// tokenizer.bin's bytes: int32 max_token_length, then per token float32 score, int32 length and
// the piece's bytes.
std::vector<std::byte> tokenizer_file(const Vocabulary& v) {
  std::vector<std::byte> file;
  auto put = [&](const void* p, std::size_t n) {
    const auto* b = static_cast<const std::byte*>(p);
    file.insert(file.end(), b, b + n);
  };
  std::int32_t max_len = 1;
  for (const auto& p : v.pieces) max_len = std::max(max_len, std::int32_t(p.size()));
  put(&max_len, 4);
  for (std::size_t i = 0; i < v.pieces.size(); ++i) {
    const std::int32_t len = std::int32_t(v.pieces[i].size());
    put(&v.scores[i], 4);
    put(&len, 4);
    put(v.pieces[i].data(), v.pieces[i].size());
  }
  return file;
}

// Words of 1..8 letters; the vocabulary holds the letters, the space and every prefix of each
// " word" (scores falling with length, jittered), so encoding a text of these words merges each
// word, letter by letter, into one token " word".
struct Words {
  explicit Words(std::uint64_t seed, int count = 300) {
    test::Random r(seed);
    vocab = llama2c_vocabulary();
    vocab.add(" ", -1);
    for (char c = 'a'; c <= 'z'; ++c) vocab.add(std::string(1, c), -1);
    std::set<std::string> prefixes;
    for (int i = 0; i < count; ++i) {
      std::string w;
      for (int n = r.integer(1, 8); n > 0; --n) w += char('a' + r.integer(0, 25));
      list.push_back(w);
      for (std::size_t n = 2; n <= w.size() + 1; ++n)
        prefixes.insert(std::string(" ").append(w, 0, n - 1));
    }
    for (const auto& p : prefixes) vocab.add(p, -float(p.size()) - float(r.uniform(0, 0.5)));
  }
  // Words drawn at random, joined by spaces, until the text holds `bytes` bytes or more.
  std::string text(std::size_t bytes, std::uint64_t seed,
                   std::vector<std::string>* drawn = nullptr) const {
    test::Random r(seed);
    std::string t;
    while (t.size() < bytes) {
      const std::string& w = list[std::size_t(r.integer(0, int(list.size()) - 1))];
      if (!t.empty()) t += ' ';
      t += w;
      if (drawn) drawn->push_back(w);
    }
    return t;
  }
  Vocabulary vocab;
  std::vector<std::string> list;
};

// A random vocabulary over `units` (letters, a space, two- and three-byte code points, stray
// bytes): llama2.c's layout or only the three special tokens, then pieces of 0..3 units or the
// concatenation of two earlier pieces (a merge target), with scores that tie, sit at run.c's
// -1e10 threshold or are not finite.
Vocabulary random_vocabulary(test::Random& r, const std::vector<std::string>& units) {
  Vocabulary v = llama2c_vocabulary();
  if (r.integer(0, 3) == 0) v.pieces.resize(3), v.scores.resize(3);
  const std::size_t first = v.pieces.size();
  const float odd[] = {0.0f, -0.0f, 0.5f, -1e10f, -1.0001e10f, -2e10f, -INFINITY, INFINITY, NAN};
  for (int n = r.integer(0, 80); n > 0; --n) {
    std::string p;
    if (v.pieces.size() > first + 1 && r.integer(0, 1) == 0) {
      const auto pick = [&] {
        return v.pieces[std::size_t(r.integer(int(first), int(v.pieces.size()) - 1))];
      };
      p = pick() + pick();
    } else {
      for (int k = r.integer(0, 3); k > 0; --k)
        p += units[std::size_t(r.integer(0, int(units.size()) - 1))];
    }
    const float score = r.integer(0, 4) == 0 ? odd[r.integer(0, int(std::size(odd)) - 1)]
                                             : float(r.integer(-12, 0)) / 2;  // many ties
    v.add(p, score);
  }
  return v;
}

}  // namespace

TEST_CASE("llama2c: a written checkpoint reads back to identical tensors and logits",
          "[io][llama2c]") {
  const bool tied = GENERATE(true, false);
  tformer::OwnedWeights<C> owned(dims, 3);
  ModelWeights w = owned.view();
  if (tied) w.lm_head = {};
  const auto bytes = write_llama2c(dims, w, tied);
  const auto path = std::filesystem::temp_directory_path() /
                    ("tformer_llama2c_" + std::to_string(::getpid()) + (tied ? "_t" : "_u") + ".bin");
  std::ofstream(path, std::ios::binary)
      .write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));

  {
    const auto model = tformer::Llama2cModel::open(path.string());
    CHECK(model.dims() == dims);
    CHECK(model.header().tied() == tied);
    const ModelWeights& r = model.weights();
    CHECK(same(r.embedding, w.embedding));
    CHECK(same(r.final_norm, w.final_norm));
    CHECK(r.lm_head.rows() == (tied ? 0 : dims.vocab));
    if (!tied) CHECK(same(r.lm_head, w.lm_head));
    for (std::size_t l = 0; l < w.layers.size(); ++l) {
      const auto &a = r.layers[l], &b = w.layers[l];
      CHECK((same(a.attn_norm, b.attn_norm) && same(a.ffn_norm, b.ffn_norm)));
      CHECK((same(a.wq, b.wq) && same(a.wk, b.wk) && same(a.wv, b.wv) && same(a.wo, b.wo)));
      CHECK((same(a.ffn.gate, b.ffn.gate) && same(a.ffn.up, b.ffn.up) &&
             same(a.ffn.down, b.ffn.down)));
    }
    // The same logits, bit for bit: the same floats through the same code.
    const std::vector<std::int32_t> tokens = {1, 7, 30, 2, 11};
    std::vector<float> a(tokens.size() * 37), b(a.size());
    tformer::Decoder<C> from_file(model.weights(), model.dims());
    tformer::Decoder<C> from_memory(w, dims);
    from_file.forward(0, tokens, {a.data(), 5, 37}, tformer::LogitsFor::All);
    from_memory.forward(0, tokens, {b.data(), 5, 37}, tformer::LogitsFor::All);
    CHECK(a == b);
  }
  std::filesystem::remove(path);
}

TEST_CASE("llama2c: arrays sit at the byte offsets run.c's memory_map_weights gives",
          "[io][llama2c]") {
  // Offsets written out from run.c (floats after the 28-byte header), for the test's dims:
  // V 37, D 32, F 40, L 2, kv_dim 16, seq 16, head_size 8; untied.
  const std::size_t V = 37, D = 32, F = 40, L = 2, KV = 16, S = 16, hs = 8;
  const std::size_t emb = 0, rms_att = emb + V * D, wq = rms_att + L * D, wk = wq + L * D * D,
                    wv = wk + L * KV * D, wo = wv + L * KV * D, rms_ffn = wo + L * D * D,
                    w1 = rms_ffn + L * D, w2 = w1 + L * F * D, w3 = w2 + L * D * F,
                    rms_final = w3 + L * F * D, freq = rms_final + D, wcls = freq + 2 * S * hs / 2,
                    end = wcls + V * D;
  std::vector<float> floats(end);
  for (std::size_t i = 0; i < end; ++i) floats[i] = float(i);  // each float names its offset
  std::vector<std::byte> file(28 + 4 * end);
  const std::int32_t header[7] = {32, 40, 2, 4, 2, -37, 16};
  std::memcpy(file.data(), header, 28);
  std::memcpy(file.data() + 28, floats.data(), 4 * end);
  const Aligned a(file);
  const auto m = tformer::Llama2cModel::view(a.bytes());
  const ModelWeights& w = m.weights();
  CHECK(w.embedding.f32().row(1)[0] == float(emb + D));
  CHECK(w.layers[1].attn_norm[3] == float(rms_att + D + 3));
  CHECK(w.layers[1].wq.f32().row(2)[5] == float(wq + D * D + 2 * D + 5));
  CHECK(w.layers[1].wk.f32().row(15)[31] == float(wk + KV * D + 15 * D + 31));
  CHECK(w.layers[0].wv.f32().row(0)[0] == float(wv));
  CHECK(w.layers[1].wo.f32().row(31)[31] == float(wo + 2 * D * D - 1));
  CHECK(w.layers[1].ffn_norm[0] == float(rms_ffn + D));
  CHECK(w.layers[1].ffn.gate.f32().row(39)[31] == float(w1 + 2 * F * D - 1));  // w1
  CHECK(w.layers[0].ffn.down.f32().row(1)[0] == float(w2 + F));                // w2 [D, F]
  CHECK(w.layers[1].ffn.up.f32().row(0)[1] == float(w3 + F * D + 1));          // w3
  CHECK(w.final_norm[31] == float(rms_final + 31));
  CHECK(w.lm_head.f32().row(0)[0] == float(wcls));
  CHECK(w.lm_head.f32().row(36)[31] == float(end - 1));
}

TEST_CASE("llama2c: truncated, over-long and inconsistent files raise errors", "[io][llama2c]") {
  tformer::OwnedWeights<C> owned(dims, 4);
  ModelWeights w = owned.view();
  w.lm_head = {};
  const auto good = write_llama2c(dims, w, true);
  REQUIRE_NOTHROW(tformer::Llama2cModel::view(Aligned(good).bytes()));

  // Every length short of the whole file, in coarse steps plus the last few bytes.
  for (std::size_t n = 0; n < good.size(); n += (n + 4 < good.size() ? 97 : 1)) {
    INFO("truncated to " << n << " bytes");
    const std::vector<std::byte> cut(good.begin(), good.begin() + std::ptrdiff_t(n));
    CHECK_THROWS_AS(tformer::Llama2cModel::view(Aligned(cut).bytes()), tformer::Error);
  }
  auto longer = good;
  longer.resize(good.size() + 4);
  CHECK_THROWS_WITH(tformer::Llama2cModel::view(Aligned(longer).bytes()),
                    Catch::Contains("file size"));

  auto with_header = [&](int field, std::int32_t value) {
    auto b = good;
    std::memcpy(b.data() + 4 * field, &value, 4);
    return b;
  };
  const struct {
    int field;
    std::int32_t value;
    const char* message;
  } bad[] = {
      {0, 0, "dim"},          {0, 30, "dim"},         {1, -5, "hidden_dim"},
      {2, 0, "n_layers"},     {3, 3, "n_kv_heads"},   {4, 3, "n_kv_heads"},
      {5, 0, "vocab_size"},   {5, INT32_MIN, "vocab_size"},
      {5, -37, "file size"},  // untied, but no classifier stored
      {6, -1, "seq_len"},     {0, 1 << 30, "size"},
      {1, 0x7fffffff, "file size"},  // 2^31 · dim · layers floats: far beyond the file
  };
  for (const auto& b : bad) {
    INFO("header field " << b.field << " = " << b.value);
    CHECK_THROWS_WITH(tformer::Llama2cModel::view(Aligned(with_header(b.field, b.value)).bytes()),
                      Catch::Contains(b.message));
  }
  // Sizes whose products overflow 64 bits.
  auto huge = with_header(0, 0x7ffffffe);
  std::int32_t big = 0x7fffffff;
  std::memcpy(huge.data() + 4, &big, 4);
  std::memcpy(huge.data() + 8, &big, 4);
  CHECK_THROWS_AS(tformer::Llama2cModel::view(Aligned(huge).bytes()), tformer::Error);
  CHECK_THROWS_WITH(tformer::Llama2cModel::open("/nonexistent/model.bin"),
                    Catch::Contains("readable file"));
}

TEST_CASE("llama2c tokenizer: run.c's encode (dummy prefix, byte fallback, merges) and decode",
          "[io][llama2c][tokenizer]") {
  // A vocabulary in llama2.c's layout: <unk>, <s>, </s>, then 256 byte tokens, then pieces.
  std::vector<std::string> pieces = {"<unk>", "\n<s>\n", "\n</s>\n"};
  for (int b = 0; b < 256; ++b) {
    char hex[8];
    std::snprintf(hex, sizeof hex, "<0x%02X>", b);
    pieces.emplace_back(hex);
  }
  const std::vector<std::pair<std::string, float>> extra = {
      {" ", -1}, {"h", -2}, {"e", -2}, {"l", -2}, {"o", -2}, {"he", -3}, {"ll", -1.5f},
      {"hell", -4}, {"hello", -5}, {" hello", -0.5f}, {"é", -2}};
  std::vector<float> scores(pieces.size(), 0.0f);
  for (const auto& [p, s] : extra) {
    pieces.push_back(p);
    scores.push_back(s);
  }
  std::vector<std::byte> file;
  auto put = [&](const void* p, std::size_t n) {
    const auto* b = static_cast<const std::byte*>(p);
    file.insert(file.end(), b, b + n);
  };
  const std::int32_t max_len = 8;
  put(&max_len, 4);
  for (std::size_t i = 0; i < pieces.size(); ++i) {
    const std::int32_t len = std::int32_t(pieces[i].size());
    put(&scores[i], 4);
    put(&len, 4);
    put(pieces[i].data(), pieces[i].size());
  }
  const tformer::index V = tformer::index(pieces.size());
  const tformer::Llama2cTokenizer tok(file, V);
  auto id = [&](const std::string& p) {
    return std::int32_t(std::find(pieces.begin(), pieces.end(), p) - pieces.begin());
  };

  // " " + h e l l o: merges by best score: "ll" (−1.5), then "he" (−3), "hell" (−4),
  // "hello" (−5), then " hello" (−0.5) — and "é" is one code point, "€" falls back to bytes.
  CHECK(tok.encode("hello") == std::vector<std::int32_t>{1, id(" hello")});
  CHECK(tok.encode("hello", false, true) == std::vector<std::int32_t>{id(" hello"), 2});
  CHECK(tok.encode("é", false) == std::vector<std::int32_t>{id(" "), id("é")});
  CHECK(tok.encode("€", false) == std::vector<std::int32_t>{id(" "), 0xE2 + 3, 0x82 + 3, 0xAC + 3});
  CHECK(tok.encode("", true) == std::vector<std::int32_t>{1});
  CHECK(tok.decode(1, id(" hello")) == "hello");  // the space after BOS is dropped
  CHECK(tok.decode(id("he"), id(" hello")) == " hello");
  CHECK(tok.decode(5, 0x41 + 3) == "A");  // <0x41>

  // Truncated or inconsistent tokenizer files.
  for (std::size_t n : {std::size_t(0), std::size_t(3), std::size_t(10), file.size() - 1}) {
    const std::vector<std::byte> cut(file.begin(), file.begin() + std::ptrdiff_t(n));
    CHECK_THROWS_AS(tformer::Llama2cTokenizer(cut, V), tformer::Error);
  }
  CHECK_THROWS_AS(tformer::Llama2cTokenizer(file, V + 1), tformer::Error);
  CHECK_THROWS_WITH(tformer::Llama2cTokenizer(file, tformer::index(1) << 40),
                    Catch::Contains("vocab_size"));
  auto bad_len = file;
  const std::int32_t negative = -3;
  std::memcpy(bad_len.data() + 8, &negative, 4);
  CHECK_THROWS_WITH(tformer::Llama2cTokenizer(bad_len, V), Catch::Contains("token length"));
  CHECK_THROWS_AS(tok.piece(std::int32_t(V)), tformer::Error);
}

TEST_CASE("llama2c version 1: the same tensors and logits as the legacy file", "[io][llama2c]") {
  const bool tied = GENERATE(true, false);
  tformer::OwnedWeights<C> owned(dims, 5);
  ModelWeights w = owned.view();
  if (tied) w.lm_head = {};
  const Aligned v0(write_llama2c(dims, w, tied)), v1(write_versioned(1, dims, w, tied));
  const auto a = tformer::Llama2cModel::view(v0.bytes()), b = tformer::Llama2cModel::view(v1.bytes());
  CHECK(b.header().version == 1);
  CHECK(b.header().tied() == tied);
  CHECK(b.dims() == dims);
  const ModelWeights &x = a.weights(), &y = b.weights();
  CHECK((same(x.embedding, y.embedding) && same(x.final_norm, y.final_norm)));
  CHECK(y.lm_head.rows() == (tied ? 0 : dims.vocab));
  if (!tied) CHECK(same(x.lm_head, y.lm_head));
  for (std::size_t l = 0; l < x.layers.size(); ++l) {
    const auto &p = x.layers[l], &q = y.layers[l];
    CHECK((same(p.attn_norm, q.attn_norm) && same(p.ffn_norm, q.ffn_norm)));
    CHECK((same(p.wq, q.wq) && same(p.wk, q.wk) && same(p.wv, q.wv) && same(p.wo, q.wo)));
    CHECK((same(p.ffn.gate, q.ffn.gate) && same(p.ffn.up, q.ffn.up) && same(p.ffn.down, q.ffn.down)));
  }
}

TEST_CASE("llama2c version 2: int8 groups read in place, values and logits as runq.c's",
          "[io][llama2c]") {
  const bool tied = GENERATE(true, false);
  const int gs = GENERATE(8, 32);  // divides dim 32 and hidden_dim 40 only when 8
  tformer::OwnedWeights<C> owned(dims, 6);
  ModelWeights w = owned.view();
  if (tied) w.lm_head = {};
  const Aligned file(write_versioned(2, dims, w, tied, gs));
  if (dims.intermediate % gs != 0) {
    CHECK_THROWS_WITH(tformer::Llama2cModel::view(file.bytes()),
                      Catch::Contains("group_size: expected a divisor of dim and hidden_dim, got 32"));
    return;
  }
  const auto m = tformer::Llama2cModel::view(file.bytes());
  CHECK(m.header().version == 2);
  CHECK(m.header().group_size == gs);
  const ModelWeights& r = m.weights();
  // Each matrix: q8_group over the file, its values within half a step of the float weights.
  auto near = [&](const tformer::WeightView& q, const tformer::WeightView& f) {
    if (q.type() != tformer::WeightType::q8_group || q.group() != gs || q.rows() != f.rows() ||
        q.cols() != f.cols())
      return false;
    std::vector<float> row(std::size_t(q.cols()));
    for (tformer::index i = 0; i < q.rows(); ++i) {
      tformer::dequantize_row(q, i, row);
      for (tformer::index c = 0; c < q.cols(); c += gs) {
        float m = 0;
        for (int j = 0; j < gs; ++j) m = std::max(m, std::abs(f.f32().row(i)[c + j]));
        for (int j = 0; j < gs; ++j)  // |w − q·s| <= s/2 (+ the float rounding of w/s and q·s)
          if (std::abs(row[std::size_t(c + j)] - f.f32().row(i)[c + j]) > m / 127 * (0.5 + 1e-5))
            return false;
      }
    }
    return true;
  };
  CHECK(near(r.embedding, w.embedding));
  CHECK(same(r.final_norm, w.final_norm));
  if (!tied) CHECK(near(r.lm_head, w.lm_head));
  for (std::size_t l = 0; l < w.layers.size(); ++l) {
    const auto &a = r.layers[l], &b = w.layers[l];
    CHECK((same(a.attn_norm, b.attn_norm) && same(a.ffn_norm, b.ffn_norm)));
    CHECK((near(a.wq, b.wq) && near(a.wk, b.wk) && near(a.wv, b.wv) && near(a.wo, b.wo)));
    CHECK((near(a.ffn.gate, b.ffn.gate) && near(a.ffn.up, b.ffn.up) && near(a.ffn.down, b.ffn.down)));
  }
  // The last layer's w3 sits at the end of the int8 section runq.c's init_quantized_tensors maps:
  // its scales are the file's last bytes when the classifier is shared.
  if (tied) {
    const auto& w3 = r.layers.back().ffn.up;
    CHECK(w3.scale_row(w3.rows() - 1) + w3.scale_row_bytes() == file.bytes().data() + file.bytes().size());
  }
  // Logits against the double reference reading the same int8 values and scales.
  const std::vector<std::int32_t> tokens = {1, 7, 30, 2, 11};
  const auto want = ref::decoder_logits<C>(r, dims, tokens);
  std::vector<float> got(tokens.size() * 37);
  tformer::Decoder<C> dec(r, m.dims());
  dec.forward(0, tokens, {got.data(), 5, 37}, tformer::LogitsFor::All);
  double worst = 0, scale = 1;
  for (std::size_t t = 0; t < tokens.size(); ++t)
    for (std::size_t j = 0; j < 37; ++j) {
      worst = std::max(worst, std::abs(got[t * 37 + j] - want[t][j]));
      scale = std::max(scale, std::abs(want[t][j]));
    }
  INFO("worst logit error " << worst);
  CHECK(worst <= 1e-5 * scale);  // the decoder tests' tolerance: float kernels, exact weights
}

TEST_CASE("llama2c versions 1 and 2: bad headers, truncation and NaN scales are errors",
          "[io][llama2c]") {
  tformer::OwnedWeights<C> owned(dims, 7);
  ModelWeights w = owned.view();
  w.lm_head = {};
  for (int version : {1, 2}) {
    INFO("version " << version);
    const auto good = write_versioned(version, dims, w, true, 8);
    REQUIRE_NOTHROW(tformer::Llama2cModel::view(Aligned(good).bytes()));
    for (std::size_t n = 0; n < good.size(); n += (n + 4 < good.size() ? 89 : 1)) {
      INFO("truncated to " << n << " bytes");
      const std::vector<std::byte> cut(good.begin(), good.begin() + std::ptrdiff_t(n));
      CHECK_THROWS_AS(tformer::Llama2cModel::view(Aligned(cut).bytes()), tformer::Error);
    }
    auto patched = [&](std::size_t offset, std::int32_t value) {
      auto b = good;
      std::memcpy(b.data() + offset, &value, offset == 36 ? 1 : 4);  // 36: the one-byte flag
      return b;
    };
    const struct {
      std::size_t offset;
      std::int32_t value;
      const char* message;
    } bad[] = {
        {4, 3, "version: expected 1 (float32) or 2 (int8 groups, runq.c), got 3"},
        {8, 0, "dim"}, {28, -37, "vocab_size: expected > 0"}, {32, 0, "seq_len"},
        {36, 2, "shared_classifier: expected 0 or 1"},
        {36, 0, "file size"},  // not shared, but no classifier stored
    };
    for (const auto& b : bad) {
      INFO("offset " << b.offset << " = " << b.value);
      CHECK_THROWS_WITH(tformer::Llama2cModel::view(Aligned(patched(b.offset, b.value)).bytes()),
                        Catch::Contains(b.message));
    }
    if (version == 2) {
      CHECK_THROWS_WITH(tformer::Llama2cModel::view(Aligned(patched(37, 0)).bytes()),
                        Catch::Contains("group_size"));
      CHECK_THROWS_WITH(tformer::Llama2cModel::view(Aligned(patched(37, 7)).bytes()),
                        Catch::Contains("group_size"));
      // A NaN scale: the embedding's first scale follows its V·D int8 values.
      const std::size_t first_scale = 256 + 4 * (2 * 2 * 32 + 32) + 37 * 32;
      const float nan = NAN;
      auto b = good;
      std::memcpy(b.data() + first_scale + 4 * 5, &nan, 4);
      CHECK_THROWS_WITH(tformer::Llama2cModel::view(Aligned(b).bytes()),
                        Catch::Contains("token_embedding (q8_group) scale of row 1 group 1: expected a finite f32"));
    }
  }
}

TEST_CASE("llama2c: open takes regular files only, and refuses a FIFO without blocking",
          "[io][llama2c]") {
  const test::TempDir dir;
  const std::string fifo = (dir.path / "model.fifo").string();
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  // No writer ever opens the FIFO: open(2) for reading would wait for one forever.
  const std::vector<std::pair<const char*, std::function<void()>>> opens = {
      {"Llama2cModel::open", [&] { tformer::Llama2cModel::open(fifo); }},
      {"Llama2cTokenizer::open", [&] { tformer::Llama2cTokenizer::open(fifo, 10); }},
  };
  for (const auto& [name, call] : opens) {
    INFO(name);
    std::string message;
    const auto& open = call;  // (clang 14 does not capture structured bindings)
    CHECK_FALSE(blocked_until_rescued(fifo, [&] { message = error_of(open); }));
    CHECK_THAT(message,
               Catch::Contains(std::string(name) + ": path: expected a regular file, got a FIFO") &&
                   Catch::Contains(fifo));
  }
  const std::string directory = dir.path.string();
  CHECK_THAT(error_of([&] { tformer::Llama2cModel::open(directory); }),
             Catch::Contains("got a directory") && Catch::Contains(directory));
  if (std::filesystem::exists("/dev/null"))
    CHECK_THAT(error_of([&] { tformer::Llama2cModel::open("/dev/null"); }),
               Catch::Contains("got a character device: /dev/null"));
  CHECK_THAT(error_of([&] { tformer::Llama2cModel::open((dir.path / "missing.bin").string()); }),
             Catch::Contains("path: expected a readable file") &&
                 Catch::Contains("missing.bin (No such file or directory)"));
}

TEST_CASE("llama2c: Read mode gives Map mode's model and survives the file's truncation",
          "[io][llama2c]") {
  const int version = GENERATE(0, 1, 2);
  tformer::OwnedWeights<C> owned(dims, 8);
  ModelWeights w = owned.view();
  w.lm_head = {};
  const test::TempDir dir;
  const std::string path =
      dir.write("model.bin", version == 0 ? write_llama2c(dims, w, true)
                                          : write_versioned(version, dims, w, true, 8));
  const auto read = tformer::Llama2cModel::open(path, tformer::FileMode::Read);
  {
    const auto mapped = tformer::Llama2cModel::open(path, tformer::FileMode::Map);
    CHECK(read.header().version == version);
    CHECK(read.dims() == mapped.dims());
    if (version < 2) CHECK(same(read.weights(), mapped.weights()));
    CHECK(logits(read.weights(), read.dims(), {1, 7, 30}) ==
          logits(mapped.weights(), mapped.dims(), {1, 7, 30}));
  }
  const auto before = logits(read.weights(), read.dims(), {1, 7, 30, 2});
  std::filesystem::resize_file(path, 0);  // the copy is the model's own: nothing changes
  CHECK(logits(read.weights(), read.dims(), {1, 7, 30, 2}) == before);
  CHECK_THAT(error_of([&] { tformer::Llama2cModel::open(path, tformer::FileMode::Read); }),
             Catch::Contains("file size"));
}

TEST_CASE("llama2c: Map mode, the documented hazard: a file truncated after open raises SIGBUS",
          "[io][llama2c]") {
  tformer::OwnedWeights<C> owned(dims, 9);
  ModelWeights w = owned.view();
  w.lm_head = {};
  const test::TempDir dir;
  const std::string path = dir.write("model.bin", write_llama2c(dims, w, true));
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {  // maps, truncates, reads: the kernel has no page to give
    const int null = ::open("/dev/null", O_WRONLY);
    if (null >= 0) ::dup2(null, 2);  // a sanitizer's report of the signal is expected
    try {
      const auto m = tformer::Llama2cModel::open(path, tformer::FileMode::Map);
      std::filesystem::resize_file(path, 0);
      volatile float x = m.weights().final_norm[0];
      (void)x;
    } catch (...) {
      ::_exit(3);
    }
    ::_exit(0);
  }
  int status = 0;
  REQUIRE(::waitpid(child, &status, 0) == child);
  INFO("child status " << status);
  // Killed by SIGBUS, or (under AddressSanitizer, which catches it) exited with an error.
  CHECK(((WIFSIGNALED(status) && WTERMSIG(status) == SIGBUS) ||
         (WIFEXITED(status) && WEXITSTATUS(status) != 0 && WEXITSTATUS(status) != 3)));
}

TEST_CASE("llama2c tokenizer: Map mode, Read mode and bytes give the same tokenizer",
          "[io][llama2c][tokenizer]") {
  const Words words(11, 50);
  const auto bytes = tokenizer_file(words.vocab);
  const test::TempDir dir;
  const std::string path = dir.write("tokenizer.bin", bytes);
  const tformer::index V = words.vocab.size();
  const tformer::Llama2cTokenizer from_bytes(bytes, V),
      mapped = tformer::Llama2cTokenizer::open(path, V, tformer::FileMode::Map),
      read = tformer::Llama2cTokenizer::open(path, V, tformer::FileMode::Read);
  for (const auto* t : {&mapped, &read}) {
    REQUIRE(t->vocab_size() == V);
    for (std::int32_t i = 0; i < V; ++i) {
      CHECK(t->piece(i) == words.vocab.pieces[std::size_t(i)]);
      CHECK(t->score(i) == words.vocab.scores[std::size_t(i)]);
    }
    const std::string text = words.text(2000, 3) + " é€\x01";
    CHECK(t->encode(text, true, true) == from_bytes.encode(text, true, true));
  }
}

TEST_CASE("llama2c tokenizer: encode equals run.c's quadratic merge loop (random vocabularies)",
          "[io][llama2c][tokenizer]") {
  const std::vector<std::string> units = {
      "a", "b", "c", "d", " ", "\n", "\xc3\xa9", "\xe2\x82\xac", "\x80", "\xff", "\xc3"};
  int compared = 0, rejected = 0;
  for (std::uint64_t seed = 1; seed <= 600; ++seed) {
    CAPTURE(seed);
    test::Random r(seed);
    const Vocabulary v = random_vocabulary(r, units);
    const tformer::Llama2cTokenizer tok(tokenizer_file(v), v.size());
    for (int prompt = 0; prompt < 4; ++prompt) {
      std::string text;
      for (int n = r.integer(0, prompt == 3 ? 400 : 40); n > 0; --n)
        text += units[std::size_t(r.integer(0, int(units.size()) - 1))];
      const bool bos = r.integer(0, 1) == 1, eos = r.integer(0, 1) == 1;
      CAPTURE(text, bos, eos);
      const auto want = ref::llama2c_encode(v.pieces, v.scores, text, bos, eos);
      const bool outside = std::any_of(want.begin(), want.end(),
                                       [&](std::int32_t id) { return id < 0 || id >= v.size(); });
      if (outside) {  // the old loop returned an id the vocabulary lacks: now an error
        CHECK_THROWS_AS(tok.encode(text, bos, eos), tformer::Error);
        ++rejected;
      } else {
        CHECK(tok.encode(text, bos, eos) == want);
        ++compared;
      }
    }
  }
  INFO(compared << " prompts compared, " << rejected << " rejected");
  CHECK(compared > 1500);
  CHECK(rejected > 100);
}

TEST_CASE("llama2c tokenizer: a 400 KB prompt encodes in well under the time limit",
          "[io][llama2c][tokenizer]") {
  const Words words(5);
  const tformer::Llama2cTokenizer tok(tokenizer_file(words.vocab), words.vocab.size());
  std::vector<std::string> drawn;
  const std::string text = words.text(400 * 1024, 6, &drawn);
  const auto start = std::chrono::steady_clock::now();
  const auto ids = tok.encode(text);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  INFO(text.size() << " bytes in " << seconds << " s");
  // About 0.2 s at -O1, under a second with sanitizers; run.c's loop, about half an hour.
  CHECK(seconds < 30);
  // Every word merged letter by letter into its own token " word", after BOS.
  REQUIRE(ids.size() == drawn.size() + 1);
  CHECK(ids[0] == tformer::Llama2cTokenizer::bos);
  bool all = true;
  for (std::size_t i = 0; i < drawn.size(); ++i)
    all = all && tok.piece(ids[i + 1]) == " " + drawn[i];
  CHECK(all);
  // And the reference agrees on a prefix it can afford.
  const std::string part = words.text(3000, 7);
  CHECK(tok.encode(part, false) ==
        ref::llama2c_encode(words.vocab.pieces, words.vocab.scores, part, false, false));
}

TEST_CASE("llama2c tokenizer: ids outside the vocabulary are errors, never returned",
          "[io][llama2c][tokenizer]") {
  Vocabulary v;
  v.add("<unk>", 0), v.add("\n<s>\n", 0), v.add("\n</s>\n", 0);
  v.add(" ", -1), v.add("a", -1), v.add("b", -1), v.add("ab", -0.5f);
  const tformer::Llama2cTokenizer tok(tokenizer_file(v), v.size());
  CHECK(tok.encode("abba", true, true) ==
        std::vector<std::int32_t>{1, v.id(" "), v.id("ab"), v.id("b"), v.id("a"), 2});
  // Byte fallback: byte 0x01 is id 4, in range (run.c's rule: ids 3.. are the bytes); 'x' is 123.
  CHECK(tok.encode("\x01", false) == std::vector<std::int32_t>{v.id(" "), 4});
  CHECK_THAT(error_of([&] { tok.encode("abx"); }),
             Catch::Contains("Llama2cTokenizer::encode: text[2] = 0x78") &&
                 Catch::Contains("expected a token id in [0, 7), got 123"));
  CHECK_THAT(error_of([&] { tok.encode("a\xe2\x82\xac"); }), Catch::Contains("text[1] = 0xE2"));
  const auto first = [&](int n) {
    Vocabulary u;
    u.pieces.assign(v.pieces.begin(), v.pieces.begin() + n);
    u.scores.assign(v.scores.begin(), v.scores.begin() + n);
    return tformer::Llama2cTokenizer(tokenizer_file(u), n);
  };
  CHECK_THAT(error_of([&] { first(1).encode("", true); }), Catch::Contains("add_bos"));
  CHECK(first(1).encode("", false).empty());
  CHECK_THAT(error_of([&] { first(2).encode("", false, true); }), Catch::Contains("add_eos"));
  CHECK(first(2).encode("", true) == std::vector<std::int32_t>{1});
  CHECK_THAT(error_of([&] { tok.decode(1, 7); }), Catch::Contains("token"));
  CHECK_THAT(error_of([&] { tok.decode(1, -1); }), Catch::Contains("token"));
  CHECK_THAT(error_of([&] { tok.piece(7); }), Catch::Contains("id"));
}
