// io/gguf.hpp: files written here, by this file's own writer (each field appended as ggml's
// docs/gguf.md describes it) and with its own block packing and decoding (not the library's),
// read back bit for bit in every supported type (f32, f16, bf16, q8_0, q4_0); a hand-assembled
// file pins the byte offsets of every field and the data section's start (default and explicit
// general.alignment); truncated and inconsistent files raise tformer::Error naming the file and
// the key or tensor, never anything else.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "support/error_of.hpp"
#include "support/gguf_writer.hpp"
#include "support/temp_dir.hpp"
#include "tformer/core/convert.hpp"
#include "tformer/io/gguf.hpp"

using tformer::GgmlType;
using tformer::GgufFile;
using tformer::GgufType;
using tformer::WeightType;

namespace {

using test::gguf::Writer;
using test::gguf::Tensor;
using test::gguf::build;

// Bytes at an 8-byte aligned address, as a mapped file's are (more than what f32 needs).
struct Buffer {
  explicit Buffer(const std::vector<std::uint8_t>& bytes)
      : words((bytes.size() + 7) / 8), size(bytes.size()) {
    if (size) std::memcpy(words.data(), bytes.data(), size);
  }
  std::span<const std::byte> span() const {
    return {reinterpret_cast<const std::byte*>(words.data()), size};
  }
  std::vector<std::uint64_t> words;
  std::size_t size;
};

GgufFile parse(const Buffer& b, std::string name = "test.gguf") {
  return GgufFile::parse(b.span(), std::move(name));
}

using test::error_of;

std::string parse_error(const std::vector<std::uint8_t>& bytes, std::string name = "bad.gguf") {
  const Buffer b(bytes);
  return error_of([&] { (void)GgufFile::parse(b.span(), name); });
}

bool has(const std::string& s, std::string_view part) {
  return s.find(part) != std::string::npos;
}

// ---- independent value packing and decoding --------------------------------------------------

float half_to_float(std::uint16_t h) {
  const int e = (h >> 10) & 31, m = h & 1023;
  const double v = e == 0 ? std::ldexp(double(m), -24) : std::ldexp(double(1024 + m), e - 25);
  return float((h >> 15) ? -v : v);
}
float bf16_to_float(std::uint16_t h) {
  const std::uint32_t u = std::uint32_t(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
// Finite f16 bits: exponent field in [lo, hi] (lo >= 0, hi <= 30).
std::uint16_t random_half(std::mt19937& rng, int lo = 0, int hi = 30) {
  const int e = std::uniform_int_distribution<int>(lo, hi)(rng);
  return std::uint16_t((rng() & 1) << 15 | e << 10 | (rng() & 1023));
}

struct Packed {
  std::vector<std::uint8_t> bytes;
  std::vector<float> values;  // the decoded values, row-major
};

// rows × cols random values of `type`, packed as ggml stores them, and their exact values.
Packed random_tensor(GgmlType type, std::size_t rows, std::size_t cols, std::mt19937& rng) {
  Packed p;
  auto put16 = [&](std::uint16_t h) {
    p.bytes.push_back(std::uint8_t(h));
    p.bytes.push_back(std::uint8_t(h >> 8));
  };
  for (std::size_t r = 0; r < rows; ++r) {
    switch (type) {
      case GgmlType::f32:
        for (std::size_t c = 0; c < cols; ++c) {
          const float v = std::normal_distribution<float>(0.f, 1.f)(rng);
          std::uint8_t q[4];
          std::memcpy(q, &v, 4);
          p.bytes.insert(p.bytes.end(), q, q + 4);
          p.values.push_back(v);
        }
        break;
      case GgmlType::f16:
        for (std::size_t c = 0; c < cols; ++c) {
          const std::uint16_t h = random_half(rng);
          put16(h);
          p.values.push_back(half_to_float(h));
        }
        break;
      case GgmlType::bf16:
        for (std::size_t c = 0; c < cols; ++c) {
          std::uint16_t h;
          do h = std::uint16_t(rng()); while (((h >> 7) & 0xff) == 0xff);  // finite
          put16(h);
          p.values.push_back(bf16_to_float(h));
        }
        break;
      case GgmlType::q8_0:  // f16 d, then 32 int8 q: value q·d
        for (std::size_t blk = 0; blk < cols / 32; ++blk) {
          const std::uint16_t d = random_half(rng, 5, 20);
          put16(d);
          for (int j = 0; j < 32; ++j) {
            const auto q = std::int8_t(rng());
            p.bytes.push_back(std::uint8_t(q));
            p.values.push_back(float(q) * half_to_float(d));
          }
        }
        break;
      case GgmlType::q4_0: {  // f16 d, 16 bytes: value j is (low nibble of byte j) for j < 16,
                              // (high nibble of byte j - 16) for j >= 16, minus 8, times d
        for (std::size_t blk = 0; blk < cols / 32; ++blk) {
          const std::uint16_t d = random_half(rng, 5, 20);
          put16(d);
          std::uint8_t q[16];
          for (auto& x : q) x = std::uint8_t(rng());
          p.bytes.insert(p.bytes.end(), q, q + 16);
          for (int j = 0; j < 32; ++j) {
            const int n = j < 16 ? (q[j] & 15) : (q[j - 16] >> 4);
            p.values.push_back(float(n - 8) * half_to_float(d));
          }
        }
        break;
      }
      default: break;
    }
  }
  return p;
}

// A small valid file: metadata of several types and two tensors.
std::vector<std::uint8_t> small_file() {
  std::mt19937 rng(7);
  std::vector<Tensor> ts = {
      {"blk.0.attn_q.weight", 8, {32, 2}, random_tensor(GgmlType::q8_0, 2, 32, rng).bytes},
      {"output_norm.weight", 0, {3}, random_tensor(GgmlType::f32, 1, 3, rng).bytes}};
  return build(ts, 3, [](Writer& w) {
    w.kv_str("general.architecture", "llama");
    w.kv_u32("llama.block_count", 1);
    w.str("tokenizer.ggml.tokens");
    w.u32(9);
    w.u32(8);
    w.u64(2);
    w.str("a");
    w.str("bc");
  });
}

}  // namespace

TEST_CASE("gguf: every supported type reads back bit-identically", "[gguf]") {
  std::mt19937 rng(20261201);
  const GgmlType types[] = {GgmlType::f32, GgmlType::f16, GgmlType::bf16, GgmlType::q8_0,
                            GgmlType::q4_0};
  const WeightType wtypes[] = {WeightType::f32, WeightType::f16, WeightType::bf16,
                               WeightType::q8_0, WeightType::q4_0};
  std::vector<Tensor> ts;
  std::vector<Packed> packed;
  std::vector<std::pair<std::size_t, std::size_t>> shapes;
  for (int i = 0; i < 5; ++i)
    for (const auto& [rows, cols] :
         std::initializer_list<std::pair<std::size_t, std::size_t>>{{3, 64}, {1, 96}, {5, 32}}) {
      packed.push_back(random_tensor(types[i], rows, cols, rng));
      shapes.emplace_back(rows, cols);
      std::vector<std::uint64_t> dims = {cols};
      if (rows > 1) dims.push_back(rows);
      ts.push_back({"t." + std::to_string(ts.size()), std::uint32_t(types[i]), dims,
                    packed.back().bytes});
    }
  const auto bytes = build(ts, 1, [](Writer& w) { w.kv_str("general.name", "types"); });
  const Buffer buf(bytes);
  const GgufFile g = parse(buf);
  REQUIRE(g.tensors().size() == ts.size());
  CHECK(g.version() == 3);
  CHECK(g.alignment() == 32);
  for (std::size_t i = 0; i < ts.size(); ++i) {
    const auto& t = g.tensors()[i];
    INFO(ts[i].name);
    CHECK(t.name == ts[i].name);  // file order
    CHECK(std::uint32_t(t.type) == ts[i].type);
    CHECK(t.dims == ts[i].dims);
    CHECK(t.offset % 32 == 0);
    REQUIRE(t.bytes.size() == ts[i].data.size());
    CHECK(std::memcmp(t.bytes.data(), ts[i].data.data(), t.bytes.size()) == 0);
    const auto [rows, cols] = shapes[i];
    const tformer::WeightView w =
        g.weight(ts[i].name, tformer::index(rows), tformer::index(cols));
    CHECK(w.type() == wtypes[i / 3]);
    CHECK(w.data() == t.bytes.data());
    CHECK(std::string(w.name()) == ts[i].name);
    CHECK(w.extent_bytes() == tformer::index(ts[i].data.size()));
    std::vector<float> row(cols);
    for (std::size_t r = 0; r < rows; ++r) {
      tformer::dequantize_row(w, tformer::index(r), row);
      for (std::size_t c = 0; c < cols; ++c) {
        const float want = packed[i].values[r * cols + c];
        if (std::memcmp(&row[c], &want, 4) != 0) {
          FAIL_CHECK("value [" << r << ", " << c << "]: " << row[c] << " vs " << want);
          break;
        }
      }
    }
    if (rows == 1 && i / 3 < 3) {  // f32, f16, bf16 vectors
      std::vector<float> v(cols, -1.f);
      g.vector_f32(ts[i].name, v);
      CHECK(std::memcmp(v.data(), packed[i].values.data(), 4 * cols) == 0);
    }
  }
}

TEST_CASE("gguf: a hand-assembled file pins every field's offset", "[gguf]") {
  // clang-format off
  const std::vector<std::uint8_t> bytes = {
      0x47, 0x47, 0x55, 0x46,                          //   0: magic "GGUF"
      0x03, 0, 0, 0,                                   //   4: version 3
      0x01, 0, 0, 0, 0, 0, 0, 0,                       //   8: tensor_count 1
      0x05, 0, 0, 0, 0, 0, 0, 0,                       //  16: metadata_kv_count 5
      0x05, 0, 0, 0, 0, 0, 0, 0, 'a', '.', 'u', '3', '2',  //  24: key "a.u32"
      0x04, 0, 0, 0,                                   //  37: type UINT32
      0x2a, 0, 0, 0,                                   //  41: 42
      0x05, 0, 0, 0, 0, 0, 0, 0, 'b', '.', 's', 't', 'r',  //  45: key "b.str"
      0x08, 0, 0, 0,                                   //  58: type STRING
      0x02, 0, 0, 0, 0, 0, 0, 0, 'h', 'i',             //  62: "hi"
      0x05, 0, 0, 0, 0, 0, 0, 0, 'c', '.', 'a', 'r', 'r',  //  72: key "c.arr"
      0x09, 0, 0, 0,                                   //  85: type ARRAY
      0x05, 0, 0, 0,                                   //  89: of INT32
      0x02, 0, 0, 0, 0, 0, 0, 0,                       //  93: 2 elements
      0xff, 0xff, 0xff, 0xff, 0x07, 0, 0, 0,           // 101: -1, 7
      0x05, 0, 0, 0, 0, 0, 0, 0, 'd', '.', 'f', '3', '2',  // 109: key "d.f32"
      0x06, 0, 0, 0,                                   // 122: type FLOAT32
      0x00, 0x00, 0xc0, 0x3f,                          // 126: 1.5f
      0x04, 0, 0, 0, 0, 0, 0, 0, 'e', '.', 'b', 'o',   // 130: key "e.bo"
      0x07, 0, 0, 0,                                   // 142: type BOOL
      0x01,                                            // 146: true
      0x01, 0, 0, 0, 0, 0, 0, 0, 't',                  // 147: tensor name "t"
      0x02, 0, 0, 0,                                   // 156: n_dims 2
      0x02, 0, 0, 0, 0, 0, 0, 0,                       // 160: ne[0] = 2 (columns)
      0x01, 0, 0, 0, 0, 0, 0, 0,                       // 168: ne[1] = 1 (rows)
      0x00, 0, 0, 0,                                   // 176: GGML_TYPE_F32
      0x00, 0, 0, 0, 0, 0, 0, 0,                       // 180: offset 0
      0, 0, 0, 0,                                      // 188: padding to 192 (6 · 32)
      0x00, 0x00, 0x80, 0x3f, 0x00, 0x00, 0x00, 0xc0,  // 192: 1.0f, -2.0f
  };
  // clang-format on
  REQUIRE(bytes.size() == 200);
  const Buffer buf(bytes);
  const GgufFile g = parse(buf, "pinned.gguf");
  CHECK(g.version() == 3);
  CHECK(g.alignment() == 32);
  CHECK(g.data_offset() == 192);
  CHECK(g.metadata().size() == 5);
  CHECK(g.get<std::uint32_t>("a.u32") == 42);
  CHECK(g.get_uint("a.u32") == 42);
  CHECK(g.get<std::string>("b.str") == "hi");
  CHECK(g.get<std::vector<std::int32_t>>("c.arr") == std::vector<std::int32_t>{-1, 7});
  CHECK(g.get<float>("d.f32") == 1.5f);
  CHECK(g.get<bool>("e.bo") == true);
  CHECK(g.find("c.arr")->type() == GgufType::array);
  CHECK(g.find("c.arr")->element_type() == GgufType::int32);
  CHECK(g.find("c.arr")->size() == 2);
  CHECK(tformer::gguf_type_name(*g.find("c.arr")) == "array of int32");
  CHECK(g.find("nope") == nullptr);
  const auto& t = g.tensor("t");
  CHECK(t.dims == std::vector<std::uint64_t>{2, 1});
  CHECK(t.bytes.data() == buf.span().data() + 192);
  CHECK(t.bytes.size() == 8);
  const auto w = g.weight("t", 1, 2);
  CHECK(w.f32().row(0)[0] == 1.0f);
  CHECK(w.f32().row(0)[1] == -2.0f);

  SECTION("version 2 has the same layout") {
    auto v2 = bytes;
    v2[4] = 2;
    const Buffer b2(v2);
    CHECK(parse(b2).version() == 2);
    CHECK(parse(b2).data_offset() == 192);
  }
}

TEST_CASE("gguf: general.alignment moves the data section and the offsets", "[gguf]") {
  // clang-format off
  const std::vector<std::uint8_t> bytes = {
      0x47, 0x47, 0x55, 0x46, 0x03, 0, 0, 0,           //   0: magic, version 3
      0x02, 0, 0, 0, 0, 0, 0, 0,                       //   8: 2 tensors
      0x01, 0, 0, 0, 0, 0, 0, 0,                       //  16: 1 pair
      0x11, 0, 0, 0, 0, 0, 0, 0,                       //  24: key of 17 bytes
      'g', 'e', 'n', 'e', 'r', 'a', 'l', '.', 'a', 'l', 'i', 'g', 'n', 'm', 'e', 'n', 't',
      0x04, 0, 0, 0, 0x40, 0, 0, 0,                    //  49: UINT32 64
      0x01, 0, 0, 0, 0, 0, 0, 0, 'x',                  //  57: tensor "x"
      0x01, 0, 0, 0, 0x01, 0, 0, 0, 0, 0, 0, 0,        //  66: n_dims 1, ne[0] = 1
      0x00, 0, 0, 0, 0x00, 0, 0, 0, 0, 0, 0, 0,        //  78: F32, offset 0
      0x01, 0, 0, 0, 0, 0, 0, 0, 'y',                  //  90: tensor "y"
      0x01, 0, 0, 0, 0x02, 0, 0, 0, 0, 0, 0, 0,        //  99: n_dims 1, ne[0] = 2
      0x01, 0, 0, 0, 0x40, 0, 0, 0, 0, 0, 0, 0,        // 111: F16, offset 64
      // 123: padding to 128 (2 · 64)
      0, 0, 0, 0, 0,
      0x00, 0x00, 0x20, 0x41,                          // 128: x = 10.0f
  };
  // clang-format on
  std::vector<std::uint8_t> full = bytes;
  full.resize(128 + 64, 0);  // x, then padding up to y at 128 + 64
  full.push_back(0x00), full.push_back(0x3c);  // y[0] = f16 1.0
  full.push_back(0x00), full.push_back(0xc0);  // y[1] = f16 -2.0
  const Buffer buf(full);
  const GgufFile g = parse(buf);
  CHECK(g.alignment() == 64);
  CHECK(g.data_offset() == 128);
  CHECK(g.tensor("y").bytes.data() == buf.span().data() + 192);
  float x[1], y[2];
  g.vector_f32("x", x);
  g.vector_f32("y", y);
  CHECK(x[0] == 10.0f);
  CHECK(y[0] == 1.0f);
  CHECK(y[1] == -2.0f);

  SECTION("an offset that is a multiple of 32 but not of 64 is refused") {
    auto bad = full;
    bad[115] = 0x20;
    const std::string e = parse_error(bad);
    CHECK(has(e, "bad.gguf"));
    CHECK(has(e, "'y' offset"));
    CHECK(has(e, "a multiple of the alignment (64)"));
  }
}

TEST_CASE("gguf: metadata of every type, nested arrays and typed getters", "[gguf]") {
  const auto bytes = build({}, 16, [](Writer& w) {
    w.str("u8"), w.u32(0), w.u8(200);
    w.str("i8"), w.u32(1), w.u8(0x80);
    w.str("u16"), w.u32(2), w.u8(0x34), w.u8(0x12);
    w.str("i16"), w.u32(3), w.u8(0xfe), w.u8(0xff);
    w.str("u32"), w.u32(4), w.u32(4000000000u);
    w.str("i32"), w.u32(5), w.i32(-5);
    w.str("f32"), w.u32(6), w.f32(0.25f);
    w.str("bool"), w.u32(7), w.u8(0);
    w.str("str"), w.u32(8), w.str("");
    w.str("u64"), w.u32(10), w.u64(1ull << 40);
    w.str("i64"), w.u32(11), w.u64(std::uint64_t(-3));
    w.str("f64"), w.u32(12), w.u64(0x3ff8000000000000ull);  // 1.5
    w.str("bools"), w.u32(9), w.u32(7), w.u64(3), w.u8(1), w.u8(0), w.u8(1);
    w.str("empty"), w.u32(9), w.u32(12), w.u64(0);
    w.str("nested"), w.u32(9), w.u32(9), w.u64(2);  // [[1, 2], ["x"]]
    w.u32(4), w.u64(2), w.u32(1), w.u32(2);
    w.u32(8), w.u64(1), w.str("x");
    w.str("general.alignment"), w.u32(4), w.u32(8);
  });
  const Buffer buf(bytes);
  const GgufFile g = parse(buf);
  CHECK(g.tensors().empty());
  CHECK(g.alignment() == 8);
  CHECK(g.get<std::uint8_t>("u8") == 200);
  CHECK(g.get<std::int8_t>("i8") == -128);
  CHECK(g.get<std::uint16_t>("u16") == 0x1234);
  CHECK(g.get<std::int16_t>("i16") == -2);
  CHECK(g.get<std::uint32_t>("u32") == 4000000000u);
  CHECK(g.get<std::int32_t>("i32") == -5);
  CHECK(g.get<float>("f32") == 0.25f);
  CHECK(g.get<bool>("bool") == false);
  CHECK(g.get<std::string>("str").empty());
  CHECK(g.get<std::uint64_t>("u64") == (1ull << 40));
  CHECK(g.get<std::int64_t>("i64") == -3);
  CHECK(g.get<double>("f64") == 1.5);
  CHECK(g.get<std::vector<bool>>("bools") == std::vector<bool>{true, false, true});
  CHECK(g.get<std::vector<double>>("empty").empty());
  CHECK(g.find("empty")->element_type() == GgufType::float64);
  const auto& nested = g.get<std::vector<tformer::GgufValue>>("nested");
  REQUIRE(nested.size() == 2);
  CHECK(std::get<std::vector<std::uint32_t>>(nested[0].value) == std::vector<std::uint32_t>{1, 2});
  CHECK(std::get<std::vector<std::string>>(nested[1].value) == std::vector<std::string>{"x"});
  CHECK(tformer::gguf_type_name(*g.find("nested")) == "array of array");
  CHECK(g.get_uint("u64") == (1ull << 40));
  CHECK(g.get_uint("u8") == 200);

  SECTION("a getter asked for the wrong type names the key and both types") {
    const std::string e = error_of([&] { (void)g.get<std::uint32_t>("str"); });
    CHECK(has(e, "test.gguf"));
    CHECK(has(e, "'str'"));
    CHECK(has(e, "expected a value of type uint32, got string"));
    const std::string e2 = error_of([&] { (void)g.get<std::vector<std::string>>("bools"); });
    CHECK(has(e2, "expected a value of type array of string, got array of bool"));
    const std::string e3 = error_of([&] { (void)g.get<float>("missing.key"); });
    CHECK(has(e3, "'missing.key'"));
    CHECK(has(e3, "no such key"));
    const std::string e4 = error_of([&] { (void)g.get_uint("i64"); });
    CHECK(has(e4, "'i64'"));
    CHECK(has(e4, "int64 -3"));
    CHECK(has(error_of([&] { (void)g.get_uint("f32"); }), "got float32"));
  }
}

TEST_CASE("gguf: open maps or reads a file, and names its path", "[gguf]") {
  const test::TempDir dir;
  const auto bytes = small_file();
  std::vector<std::byte> file(bytes.size());
  std::memcpy(file.data(), bytes.data(), bytes.size());
  const std::string path = dir.write("small.gguf", file);
  for (const auto mode : {tformer::FileMode::Map, tformer::FileMode::Read}) {
    GgufFile g = GgufFile::open(path, mode);
    const GgufFile moved = std::move(g);  // views keep pointing at the same names and bytes
    CHECK(moved.get<std::string>("general.architecture") == "llama");
    CHECK(moved.get<std::vector<std::string>>("tokenizer.ggml.tokens") ==
          std::vector<std::string>{"a", "bc"});
    const auto w = moved.weight("blk.0.attn_q.weight", 2, 32);
    CHECK(std::string(w.name()) == "blk.0.attn_q.weight");
    const std::string e = error_of([&] { (void)moved.weight("blk.0.attn_q.weight", 32, 2); });
    CHECK(has(e, path));
    CHECK(has(e, "'blk.0.attn_q.weight'"));
    CHECK(has(e, "expected shape [rows 32, cols 2], got [2, 32] (ne = [32, 2], q8_0)"));
  }
  auto cut = file;
  cut.resize(cut.size() - 1);
  const std::string bad = dir.write("cut.gguf", cut);
  const std::string e = error_of([&] { (void)GgufFile::open(bad); });
  CHECK(has(e, bad));
  CHECK(has(e, "'output_norm.weight'"));
  CHECK(has(error_of([&] { (void)GgufFile::open(dir.path.string() + "/none.gguf"); }),
            "none.gguf"));
}

TEST_CASE("gguf: every prefix of a valid file is an Error", "[gguf]") {
  const auto bytes = small_file();
  {
    const Buffer whole(bytes);
    CHECK_NOTHROW(parse(whole));
  }
  for (std::size_t n = 0; n < bytes.size(); ++n) {
    const std::vector<std::uint8_t> prefix(bytes.begin(), bytes.begin() + std::ptrdiff_t(n));
    const std::string e = parse_error(prefix, "prefix.gguf");
    INFO("prefix of " << n << " bytes: " << e);
    CHECK(has(e, "prefix.gguf"));
  }
}

TEST_CASE("gguf: bad headers and metadata", "[gguf]") {
  auto with = [](std::uint64_t n_kv, const std::function<void(Writer&)>& kvs) {
    return build({}, n_kv, kvs);
  };
  SECTION("magic") {
    auto b = small_file();
    b[0] = 'X';
    const std::string e = parse_error(b);
    CHECK(has(e, "bad.gguf"));
    CHECK(has(e, "magic: expected 0x46554747 ('GGUF')"));
  }
  SECTION("versions 1, 4 and a big-endian 3") {
    for (const std::uint32_t v : {1u, 4u, 0u, 0x03000000u}) {
      auto b = small_file();
      std::memcpy(b.data() + 4, &v, 4);
      const std::string e = parse_error(b);
      CHECK(has(e, "version: expected 2 or 3"));
      CHECK(has(e, std::to_string(v)));
      if (v == 0x03000000u) CHECK(has(e, "big-endian"));
    }
  }
  SECTION("huge counts") {
    Writer w;
    w.header(3, 0, std::uint64_t(1) << 60);
    CHECK(has(parse_error(w.b), "metadata_kv_count: expected at most 0"));
    Writer t;
    t.header(3, std::uint64_t(1) << 60, 0);
    t.b.resize(t.b.size() + 100);
    CHECK(has(parse_error(t.b), "tensor_count: expected at most 4"));
    Writer both;  // each fits alone, not together
    both.header(3, 4, 8);
    both.b.resize(both.b.size() + 100);
    CHECK(has(parse_error(both.b), "tensor_count"));
  }
  SECTION("huge key and string lengths") {
    auto b = with(1, [](Writer& w) { w.u64(std::uint64_t(1) << 62), w.u64(0), w.u64(0); });
    CHECK(has(parse_error(b), "metadata pair #0 key: expected 4611686018427387904 bytes"));
    auto s = with(1, [](Writer& w) { w.str("k.s"), w.u32(8), w.u64(~std::uint64_t(0)); });
    const std::string e = parse_error(s);
    CHECK(has(e, "'k.s'"));
    CHECK(has(e, "18446744073709551615 bytes"));
  }
  SECTION("huge array counts") {
    for (const std::uint32_t type : {0u, 8u, 9u, 12u}) {
      auto b = with(1, [&](Writer& w) {
        w.str("k.arr"), w.u32(9), w.u32(type), w.u64(std::uint64_t(1) << 61), w.u64(0);
      });
      const std::string e = parse_error(b);
      CHECK(has(e, "bad.gguf"));
      CHECK(has(e, "'k.arr' count"));
    }
    auto strings = with(1, [](Writer& w) {  // the count fits 8 bytes each, the strings do not
      w.str("k.strs"), w.u32(9), w.u32(8), w.u64(2), w.str("ab"), w.u64(1000);
    });
    CHECK(has(parse_error(strings), "'k.strs'[1]: expected 1000 bytes"));
  }
  SECTION("value type ids") {
    auto b = with(1, [](Writer& w) { w.str("k.t"), w.u32(13), w.u64(0); });
    CHECK(has(parse_error(b), "'k.t' type: expected a GGUF value type in [0, 12], got 13"));
    auto a = with(1, [](Writer& w) { w.str("k.a"), w.u32(9), w.u32(99), w.u64(0); });
    CHECK(has(parse_error(a), "'k.a' element type"));
    auto bo = with(1, [](Writer& w) { w.str("k.b"), w.u32(7), w.u8(2); });
    CHECK(has(parse_error(bo), "'k.b': expected a bool: 0 or 1, got 2"));
  }
  SECTION("nesting depth") {
    auto nest = [&](int depth) {
      return with(1, [depth](Writer& w) {
        w.str("k.n"), w.u32(9);
        for (int d = 1; d < depth; ++d) w.u32(9), w.u64(1);
        w.u32(0), w.u64(0);
      });
    };
    const Buffer ok(nest(4));
    CHECK_NOTHROW(parse(ok));
    CHECK(has(parse_error(nest(5)), "nested at most 4 deep"));
  }
  SECTION("duplicate keys") {
    auto b = with(2, [](Writer& w) { w.kv_u32("k.d", 1), w.kv_str("k.d", "x"); });
    CHECK(has(parse_error(b), "'k.d': expected a key used once"));
  }
  SECTION("general.alignment 0, 3, too large, of the wrong type") {
    for (const std::uint32_t a : {0u, 3u, 48u, 1u << 21}) {
      const std::string e =
          parse_error(with(1, [a](Writer& w) { w.kv_u32("general.alignment", a); }));
      CHECK(has(e, "'general.alignment': expected a power of two in [1, 2^20], got " +
                       std::to_string(a)));
    }
    const std::string e = parse_error(with(1, [](Writer& w) {
      w.str("general.alignment"), w.u32(10), w.u64(32);
    }));
    CHECK(has(e, "'general.alignment': expected a value of type uint32, got uint64"));
  }
}

TEST_CASE("gguf: bad tensor infos", "[gguf]") {
  std::mt19937 rng(3);
  const auto f32x4 = random_tensor(GgmlType::f32, 1, 4, rng).bytes;
  SECTION("n_dims 0 and 5") {
    for (const std::uint32_t n : {0u, 5u}) {
      Writer w;
      w.header(3, 1, 0);
      w.str("blk.0.x"), w.u32(n);
      w.b.resize(w.b.size() + 64);
      const std::string e = parse_error(w.b);
      CHECK(has(e, "'blk.0.x' n_dims: expected 1 to 4, got " + std::to_string(n)));
    }
  }
  SECTION("shape overflow and partial blocks") {
    Writer w;
    w.header(3, 1, 0);
    w.info("big", {1ull << 40, 1ull << 40}, 0, 0);
    CHECK(has(parse_error(w.b), "'big' shape: expected fewer than 2^63 elements"));
    Writer bytes;  // elements fit, bytes do not
    bytes.header(3, 1, 0);
    bytes.info("bytes", {1ull << 31, 1ull << 31}, 0, 0);
    CHECK(has(parse_error(bytes.b), "'bytes' size: expected fewer than 2^63 bytes"));
    Writer q;
    q.header(3, 1, 0);
    q.info("q", {48, 2}, 8, 0);
    CHECK(has(parse_error(q.b),
              "'q' ne[0]: expected a multiple of 32 (whole q8_0 blocks), got 48"));
  }
  SECTION("unknown ggml types") {
    for (const std::uint32_t type : {4u, 31u, 40u, 0xffffffffu}) {
      Writer w;
      w.header(3, 1, 0);
      w.info("u", {32}, type, 0);
      CHECK(has(parse_error(w.b), "'u' ggml type: expected a ggml type GGUF files hold, got " +
                                      std::to_string(type)));
    }
  }
  SECTION("unsupported ggml types are listed, and refused as weights") {
    std::vector<std::uint8_t> q41(20, 1), q4k(144, 2);
    const auto b = build({{"a.q4_1", 3, {32}, q41}, {"b.q4_K", 12, {256}, q4k}});
    const Buffer buf(b);
    const GgufFile g = parse(buf);
    CHECK(g.tensor("a.q4_1").bytes.size() == 20);
    CHECK(g.tensor("b.q4_K").bytes.size() == 144);
    CHECK(std::string(g.tensor("b.q4_K").type_name()) == "q4_K");
    const std::string e = error_of([&] { (void)g.weight("b.q4_K", 1, 256); });
    CHECK(has(e, "test.gguf"));
    CHECK(has(e, "'b.q4_K' type"));
    CHECK(has(e, "got q4_K (ggml type 12)"));
    float out[32];
    CHECK(has(error_of([&] { g.vector_f32("a.q4_1", out); }), "'a.q4_1' type"));
    CHECK(has(error_of([&] { (void)g.tensor("c"); }), "'c': expected a tensor of that name"));
  }
  SECTION("misaligned offsets and addresses") {
    Writer w;
    w.header(3, 1, 0);
    w.info("m", {4}, 0, 16);
    w.pad(32);
    w.b.resize(w.b.size() + 64);
    const std::string e = parse_error(w.b);
    CHECK(has(e, "'m' offset: expected a multiple of the alignment (32), got 16"));
    // general.alignment 1 allows any offset; an f32 view at an address 4 does not divide is
    // refused when asked for.
    auto at = [&](std::uint64_t offset) {
      Writer a;
      a.header(3, 1, 1);
      a.kv_u32("general.alignment", 1);
      a.info("f", {4}, 0, offset);
      a.b.resize(a.b.size() + offset + 16);
      return a.b;
    };
    const Buffer probe(at(0));
    const std::uint64_t start = parse(probe).data_offset();
    const std::uint64_t odd = (4 - start % 4) % 4 + 1;  // (start + odd) % 4 == 1
    const Buffer buf(at(odd));
    const GgufFile g = parse(buf);
    const std::string e2 = error_of([&] { (void)g.weight("f", 1, 4); });
    CHECK(has(e2, "test.gguf"));
    CHECK(has(e2, "alignment"));
    float out[4];
    CHECK_NOTHROW(g.vector_f32("f", out));  // decoded with memcpy: any address
  }
  SECTION("tensors past the end, overlapping, duplicated") {
    auto past = build({{"p", 0, {4}, f32x4}});
    past.pop_back();
    const std::string e = parse_error(past);
    CHECK(has(e, "'p': expected [offset, offset + 16 bytes) inside the data section of 15 bytes"));
    Writer o;
    o.header(3, 2, 0);
    o.info("first", {16}, 0, 0);
    o.info("second", {4}, 0, 32);
    o.pad(32);
    o.b.resize(o.b.size() + 64);
    CHECK(has(parse_error(o.b),
              "'second' offset: expected an offset >= 64 (the end of tensor 'first'"));
    const auto dup = build({{"d", 0, {4}, f32x4}, {"d", 0, {4}, f32x4}});
    CHECK(has(parse_error(dup), "'d': expected a name used once"));
    Writer start;  // the data section's start itself past the end
    start.header(3, 1, 0);
    start.info("e", {0}, 0, 0);
    CHECK(has(parse_error(start.b), "data section start"));
  }
  SECTION("empty tensors and wrong shapes") {
    const auto b = build({{"empty", 0, {0, 7}, {}}, {"v", 0, {4}, f32x4}});
    const Buffer buf(b);
    const GgufFile g = parse(buf);
    CHECK(g.tensor("empty").bytes.empty());
    CHECK(g.weight("empty", 7, 0).rows() == 7);
    const auto b0 = build({{"none", 1, {0}, {}}});
    const Buffer buf0(b0);
    CHECK_NOTHROW(parse(buf0).vector_f32("none", {}));  // nothing to decode, no null memcpy
    const std::string e = error_of([&] { (void)g.weight("v", 2, 2); });
    CHECK(has(e, "'v': expected shape [rows 2, cols 2], got [1, 4] (ne = [4], f32)"));
    std::vector<float> out(3);
    CHECK(has(error_of([&] { g.vector_f32("v", out); }),
              "'v': expected a vector of 3 values, got ne = [4]"));
  }
  SECTION("non-finite block scales are refused by weight()") {
    std::vector<std::uint8_t> q(34, 0);
    q[0] = 0x00, q[1] = 0x7c;  // d = +inf
    const auto b = build({{"inf", 8, {32}, q}});
    const Buffer buf(b);
    const GgufFile g = parse(buf);
    CHECK(has(error_of([&] { (void)g.weight("inf", 1, 32); }), "scale"));
  }
}
