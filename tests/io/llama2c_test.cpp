// io/llama2c.hpp: a checkpoint written here (by this file's own writer, from the format's
// description, not the library's) reads back to identical tensors and identical logits;
// truncated, over-long and inconsistent files raise tformer::Error; the tokenizer follows
// run.c's encode and decode.
#include <catch2/catch.hpp>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "support/random.hpp"
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
