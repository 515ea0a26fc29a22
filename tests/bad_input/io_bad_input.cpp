// Bad inputs of the public entry points in include/tformer/io/ (see bad_input.hpp): llama2.c
// checkpoints through Llama2cModel::view and ::open in both FileModes, files that are not regular
// files, and llama2.c tokenizers through their reader, encode, decode, piece and score. Files are
// written to a unique temporary directory, removed at the end.
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "bad_input/bad_input.hpp"
#include "support/temp_dir.hpp"
#include "tformer/io/llama2c.hpp"

using namespace tformer;
using Index = tformer::index;
using namespace bad_input;

namespace {

// The header's seven int32: dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len.
using Fields = std::array<std::int32_t, 7>;
constexpr Fields small = {8, 12, 1, 2, 1, 5, 3};  // head_dim 4, kv_dim 4; tied

void put(std::vector<std::byte>& out, const void* p, std::size_t n) {
  const auto* b = static_cast<const std::byte*>(p);
  out.insert(out.end(), b, b + n);
}
void zeros(std::vector<std::byte>& out, std::size_t n) { out.resize(out.size() + n); }

// A legacy (run.c) checkpoint of `h` with a tied classifier; every weight 0.
std::vector<std::byte> legacy(const Fields& h) {
  const std::size_t D = 8, F = 12, L = 1, V = 5, S = 3, kvd = 4, hd = 4;
  std::vector<std::byte> out;
  put(out, h.data(), 28);
  zeros(out, 4 * (V * D + L * D + L * (2 * D * D + 2 * kvd * D) + L * D + 3 * L * F * D + D +
                  2 * S * (hd / 2)));
  return out;
}

// An "ak42" checkpoint of `small`, version 1 (float32) or 2 (int8 groups of 4, scales 1), with a
// shared classifier.
std::vector<std::byte> versioned(int version) {
  const std::size_t D = 8, F = 12, L = 1, V = 5, kvd = 4, gs = 4;
  std::vector<std::byte> out(256);
  const std::uint32_t magic = 0x616b3432;
  std::memcpy(out.data(), &magic, 4);
  std::memcpy(out.data() + 4, &version, 4);
  std::memcpy(out.data() + 8, small.data(), 28);
  out[36] = std::byte{1};
  if (version == 2) std::memcpy(out.data() + 37, &gs, 4);
  zeros(out, 4 * (2 * L * D + D));  // RMSNorm weights
  const std::size_t matrices[] = {V * D, D * D, kvd * D, kvd * D, D * D, F * D, D * F, F * D};
  for (const std::size_t values : matrices) {
    if (version == 1) {
      zeros(out, 4 * values);
      continue;
    }
    zeros(out, values);  // int8 values
    for (std::size_t g = 0; g < values / gs; ++g) {
      const float one = 1.0f;
      put(out, &one, 4);
    }
  }
  return out;
}

std::vector<std::byte> with_field(std::vector<std::byte> b, std::size_t offset, std::int32_t v) {
  std::memcpy(b.data() + offset, &v, 4);
  return b;
}
std::vector<std::byte> resized(std::vector<std::byte> b, std::size_t n) {
  b.resize(n);
  return b;
}

// A tokenizer.bin: int32 max_token_length, then per piece float32 score, int32 length, bytes.
std::vector<std::byte> tokenizer_file(const std::vector<std::string>& pieces,
                                      std::int32_t max_len = 16) {
  std::vector<std::byte> out;
  put(out, &max_len, 4);
  for (const auto& p : pieces) {
    const float score = -float(p.size());
    const std::int32_t len = std::int32_t(p.size());
    put(out, &score, 4);
    put(out, &len, 4);
    put(out, p.data(), p.size());
  }
  return out;
}

// llama2.c's layout: <unk>, <s>, </s>, the 256 byte tokens (ids 3..258), then `extra`.
std::vector<std::string> layout(const std::vector<std::string>& extra) {
  std::vector<std::string> p = {"<unk>", "\n<s>\n", "\n</s>\n"};
  for (int b = 0; b < 256; ++b) {
    char hex[8];
    std::snprintf(hex, sizeof hex, "<0x%02X>", b);
    p.emplace_back(hex);
  }
  p.insert(p.end(), extra.begin(), extra.end());
  return p;
}

// Bytes at a 4-byte aligned address (as a mapped file's), or at an odd one.
struct Held {
  explicit Held(const std::vector<std::byte>& b, std::size_t shift = 0)
      : words((b.size() + shift + 3) / 4 + 1), size(b.size()), shift(shift) {
    if (!b.empty()) std::memcpy(reinterpret_cast<std::byte*>(words.data()) + shift, b.data(), size);
  }
  std::span<const std::byte> bytes() const {
    return {reinterpret_cast<const std::byte*>(words.data()) + shift, size};
  }
  std::vector<std::uint32_t> words;
  std::size_t size, shift;
};

}  // namespace

TEST_CASE("bad_input: llama2.c checkpoints (Llama2cModel::view, ::open in both modes)",
          "[bad_input][io]") {
  const test::TempDir dir;
  const auto good = legacy(small), v1 = versioned(1), v2 = versioned(2);
  REQUIRE_NOTHROW(Llama2cModel::view(Held(good).bytes()));
  REQUIRE_NOTHROW(Llama2cModel::view(Held(v1).bytes()));
  REQUIRE_NOTHROW(Llama2cModel::view(Held(v2).bytes()));
  auto field = [&](int i, std::int32_t v) {
    Fields h = small;
    h[std::size_t(i)] = v;
    return legacy(h);
  };
  const float nan = NAN;
  auto v2_nan = v2;  // the embedding's first scale, after the norms and its 5·8 int8 values
  std::memcpy(v2_nan.data() + 256 + 4 * (2 * 8 + 8) + 40, &nan, 4);
  const struct {
    const char* input;
    std::vector<std::byte> bytes;
    const char* names;
  } files[] = {
      {"a 10-byte file (truncated header)", resized(good, 10), "file size"},
      {"the weights cut by 4 bytes", resized(good, good.size() - 4), "file size"},
      {"4 bytes past the weights", resized(good, good.size() + 4), "file size"},
      {"dim = 0", field(0, 0), "dim"},
      {"dim = 10 (not a multiple of n_heads with even head_dim)", field(0, 10), "dim"},
      {"hidden_dim = -12", field(1, -12), "hidden_dim"},
      {"n_layers = 0", field(2, 0), "n_layers"},
      {"n_heads = -2", field(3, -2), "n_heads"},
      {"n_kv_heads = 3", field(4, 3), "n_kv_heads"},
      {"vocab_size = 0", field(5, 0), "vocab_size"},
      {"vocab_size = INT32_MIN", field(5, INT32_MIN), "vocab_size"},
      {"vocab_size = -5 (untied, no classifier stored)", field(5, -5), "file size"},
      {"vocab_size = 6 (more rows than stored)", field(5, 6), "file size"},
      {"seq_len = -1", field(6, -1), "seq_len"},
      {"hidden_dim = INT32_MAX", field(1, INT32_MAX), "file size"},
      {"dim = 2^30 (overflowing products)", field(0, 1 << 30), "size"},
      {"version 1: version = 3", with_field(v1, 4, 3), "version"},
      {"version 1: vocab_size = -5", with_field(v1, 28, -5), "vocab_size"},
      {"version 1: shared_classifier = 2", with_field(v1, 36, 2), "shared_classifier"},
      {"version 1: shared_classifier = 0 (no classifier stored)", with_field(v1, 36, 0),
       "file size"},
      {"version 1: cut to 255 bytes", resized(v1, 255), "file size"},
      {"version 2: group_size = 0", with_field(v2, 37, 0), "group_size"},
      {"version 2: group_size = 3 (divides neither dim nor hidden_dim)", with_field(v2, 37, 3),
       "group_size"},
      {"version 2: a NaN scale", v2_nan, "scale"},
      {"version 2: the last scale cut", resized(v2, v2.size() - 1), "file size"},
  };
  std::vector<bad_input::Row> rows;
  int n = 0;
  for (const auto& f : files) {
    const auto held = std::make_shared<Held>(f.bytes);
    rows.push_back(
        {"Llama2cModel::view", f.input, f.names, [held] { Llama2cModel::view(held->bytes()); }});
    const std::string path = dir.write("model" + std::to_string(n++) + ".bin", f.bytes);
    rows.push_back({"Llama2cModel::open", f.input, f.names, [path] { Llama2cModel::open(path); }});
    rows.push_back({"Llama2cModel::open(FileMode::Read)", f.input, f.names,
                    [path] { Llama2cModel::open(path, FileMode::Read); }});
  }
  const auto odd = std::make_shared<Held>(good, 1);
  rows.push_back({"Llama2cModel::view", "bytes at an odd address", "data: expected 4-byte aligned",
                  [odd] { Llama2cModel::view(odd->bytes()); }});
  rows.push_back({"Llama2cModel::view", "no bytes", "file size", [] { Llama2cModel::view({}); }});

  // Paths that are not a regular file with a checkpoint in it.
  const std::string missing = (dir.path / "missing.bin").string(),
                    fifo = (dir.path / "fifo").string(), empty = dir.write("empty.bin", {}),
                    directory = dir.path.string();
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  const struct {
    const char* input;
    std::string path;
    const char* names;
  } paths[] = {
      {"a missing file", missing, "path: expected a readable file"},
      {"a directory", directory, "path: expected a regular file, got a directory"},
      {"a FIFO without a writer", fifo, "path: expected a regular file, got a FIFO"},
      {"/dev/null", "/dev/null", "path: expected a regular file, got a character device"},
      {"an empty file", empty, "file size: expected > 0 bytes"},
      {"an empty path", "", "path: expected a readable file"},
  };
  for (const auto& p : paths) {
    const std::string path = p.path;
    rows.push_back({"Llama2cModel::open", p.input, p.names, [path] { Llama2cModel::open(path); }});
    rows.push_back({"Llama2cModel::open(FileMode::Read)", p.input, p.names,
                    [path] { Llama2cModel::open(path, FileMode::Read); }});
    rows.push_back(
        {"Llama2cTokenizer::open", p.input, p.names, [path] { Llama2cTokenizer::open(path, 3); }});
    rows.push_back({"Llama2cTokenizer::open(FileMode::Map)", p.input, p.names,
                    [path] { Llama2cTokenizer::open(path, 3, FileMode::Map); }});
    for (const FileMode mode : {FileMode::Map, FileMode::Read})
      rows.push_back({"FileBytes",
                      std::string(p.input) + (mode == FileMode::Map ? ", Map" : ", Read"), p.names,
                      [path, mode] { (void)FileBytes(path, mode); }});
  }
  bad_input::run(rows);
}

TEST_CASE("bad_input: llama2.c tokenizers (reader, encode, decode, piece, score)",
          "[bad_input][io]") {
  const test::TempDir dir;
  const std::vector<std::string> small_pieces = {"<unk>", "\n<s>\n", "\n</s>\n", " ",
                                                 "a",     "b",       "ab"};
  const auto small_file = tokenizer_file(small_pieces);
  const Llama2cTokenizer tok(small_file, 7);
  const auto one = std::make_shared<Llama2cTokenizer>(small_file, 1),
             two = std::make_shared<Llama2cTokenizer>(small_file, 2);
  const auto full_file = tokenizer_file(layout({" ", "a"}));
  const Llama2cTokenizer no_ff(full_file, 258);  // the byte tokens up to <0xFE>
  const std::string path = dir.write("tokenizer.bin", small_file);

  auto file_with = [&](std::size_t offset, std::int32_t v) {
    return with_field(small_file, offset, v);
  };
  const auto long_pieces = tokenizer_file({"aaaaaaaaaaaa", "bbbbbbbbbbbb"});
  const struct {
    const char* input;
    std::vector<std::byte> bytes;
    Index vocab;
    const char* names;
  } files[] = {
      {"vocab_size = 0", small_file, 0, "vocab_size"},
      {"vocab_size = -1", small_file, -1, "vocab_size"},
      {"vocab_size = 2^40", small_file, Index(1) << 40, "vocab_size"},
      {"vocab_size = 2^31", small_file, Index(1) << 31, "vocab_size"},
      {"vocab_size = 8 (the file holds 7)", small_file, 8, "token"},
      {"vocab_size = 100 (more than the file's bytes can hold)", small_file, 100, "vocab_size"},
      {"no bytes", {}, 7, "max_token_length"},
      {"3 bytes", resized(small_file, 3), 7, "max_token_length"},
      {"max_token_length = 0", file_with(0, 0), 7, "max_token_length"},
      {"max_token_length = INT32_MIN", file_with(0, INT32_MIN), 7, "max_token_length"},
      {"token length = -3", file_with(8, -3), 7, "token length"},
      {"token length = 17 (> max_token_length)", file_with(8, 17), 7, "token length"},
      {"token length = INT32_MAX", file_with(8, INT32_MAX), 7, "token length"},
      {"the last piece cut by a byte", resized(small_file, small_file.size() - 1), 7,
       "token bytes"},
      {"the second token's score and length cut", resized(long_pieces, 4 + 20 + 4), 2,
       "token score and length"},
  };
  std::vector<bad_input::Row> rows;
  int n = 0;
  for (const auto& f : files) {
    const auto bytes = std::make_shared<std::vector<std::byte>>(f.bytes);
    const Index vocab = f.vocab;
    rows.push_back({"Llama2cTokenizer", f.input, f.names,
                    [bytes, vocab] { Llama2cTokenizer(*bytes, vocab); }});
    if (f.bytes.empty()) continue;  // an empty file is refused before it is parsed (above)
    const std::string file = dir.write("tokenizer" + std::to_string(n++) + ".bin", f.bytes);
    rows.push_back({"Llama2cTokenizer::open", f.input, f.names,
                    [file, vocab] { Llama2cTokenizer::open(file, vocab); }});
    rows.push_back({"Llama2cTokenizer::open(FileMode::Map)", f.input, f.names,
                    [file, vocab] { Llama2cTokenizer::open(file, vocab, FileMode::Map); }});
  }
  const std::vector<bad_input::Row> calls = {
      {"Llama2cTokenizer::encode", "add_bos with vocab_size 1", "add_bos",
       [one] { one->encode("", true); }},
      {"Llama2cTokenizer::encode", "add_eos with vocab_size 2", "add_eos",
       [two] { two->encode("", false, true); }},
      {"Llama2cTokenizer::encode", "'x' (byte token 123) with vocab_size 7", "text[2] = 0x78",
       [&] { tok.encode("abx"); }},
      {"Llama2cTokenizer::encode",
       "\"\\xe2\\x82\\xac\" (no piece, byte token 229) with vocab_size 7", "text[0] = 0xE2",
       [&] { tok.encode("\xe2\x82\xac", false); }},
      {"Llama2cTokenizer::encode", "byte 0xFF with vocab_size 258 (no <0xFF>)", "text[1] = 0xFF",
       [&] { no_ff.encode("a\xff"); }},
      {"Llama2cTokenizer::decode", "token = -1", "token", [&] { tok.decode(1, -1); }},
      {"Llama2cTokenizer::decode", "token = vocab_size", "token", [&] { tok.decode(1, 7); }},
      {"Llama2cTokenizer::decode", "token = INT32_MIN", "token", [&] { tok.decode(0, INT32_MIN); }},
      {"Llama2cTokenizer::piece", "id = -1", "id", [&] { tok.piece(-1); }},
      {"Llama2cTokenizer::piece", "id = vocab_size", "id", [&] { tok.piece(7); }},
      {"Llama2cTokenizer::piece", "id = INT32_MAX", "id", [&] { tok.piece(INT32_MAX); }},
      {"Llama2cTokenizer::score", "id = -1", "id", [&] { tok.score(-1); }},
      {"Llama2cTokenizer::score", "id = vocab_size", "id", [&] { tok.score(7); }},
      {"Llama2cTokenizer::open", "vocab_size = 0", "vocab_size",
       [&] { Llama2cTokenizer::open(path, 0); }},
  };
  rows.insert(rows.end(), calls.begin(), calls.end());
  bad_input::run(rows);
}
