// io/safetensors.hpp: files written here (by this file's own writer, header JSON assembled as a
// string from the format's description, not by the reader) read back bit-identically in every
// float dtype, through weight(), through the raw bytes and through the f32 decode (checked
// against this file's own bf16 / f16 conversions); a hand-assembled file pins the byte layout; a
// sharded directory reads as one model; every malformed file, every prefix of a valid one
// included, raises tformer::Error naming the path and the tensor or key.
#include <catch2/catch.hpp>

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "support/temp_dir.hpp"
#include "tformer/io/safetensors.hpp"

using Catch::Matchers::Contains;
using tformer::FileMode;
using tformer::SafetensorsFile;
using tformer::SafetensorsModel;
using tformer::WeightType;

namespace {

using Bytes = std::vector<std::byte>;

struct Spec {
  std::string name;
  std::string dtype;
  std::vector<tformer::index> shape;
  Bytes data;
};

void append_u64(Bytes& out, std::uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(std::byte(v >> (8 * i) & 0xff));
}

// A file from a header text and a data buffer, N = the text's length.
Bytes raw_file(const std::string& header, const Bytes& data = {}) {
  Bytes out;
  append_u64(out, header.size());
  for (const char c : header) out.push_back(std::byte(static_cast<unsigned char>(c)));
  out.insert(out.end(), data.begin(), data.end());
  return out;
}

// The writer: tensors in the given order, back to back; the header padded with spaces so the
// buffer starts at a multiple of 8 (as the official writer does).
Bytes write_safetensors(const std::vector<Spec>& tensors, const std::string& metadata = "") {
  std::string h = "{";
  if (!metadata.empty()) h += "\"__metadata__\":" + metadata + ",";
  std::size_t at = 0;
  Bytes data;
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    const Spec& t = tensors[i];
    // Appended piece by piece: GCC 12 at -O3 reports a false -Wrestrict for a + b + … chains.
    if (i) h += ',';
    h.append("\"").append(t.name).append("\":{\"dtype\":\"").append(t.dtype);
    h.append("\",\"shape\":[");
    for (std::size_t d = 0; d < t.shape.size(); ++d) {
      if (d) h += ',';
      h += std::to_string(t.shape[d]);
    }
    h.append("],\"data_offsets\":[").append(std::to_string(at)).append(",");
    h.append(std::to_string(at + t.data.size())).append("]}");
    at += t.data.size();
    data.insert(data.end(), t.data.begin(), t.data.end());
  }
  h += "}";
  while ((8 + h.size()) % 8 != 0) h += ' ';
  return raw_file(h, data);
}

Bytes random_bytes(std::mt19937& rng, std::size_t n) {
  Bytes b(n);
  for (auto& x : b) x = std::byte(rng() & 0xff);
  return b;
}

// This file's own conversions (not numeric.hpp's): bf16 is a float's top half; f16 by fields.
float bf16_to_float(std::uint16_t bits) { return std::bit_cast<float>(std::uint32_t(bits) << 16); }
float f16_to_float(std::uint16_t bits) {
  const std::uint32_t sign = bits >> 15, exp = (bits >> 10) & 0x1f, mant = bits & 0x3ff;
  if (exp == 0) {  // zero or subnormal: mant · 2^-24
    const float v = std::ldexp(float(mant), -24);
    return sign ? -v : v;
  }
  if (exp == 31)  // inf, or NaN: payload kept in the top mantissa bits, quieted (as F16C does)
    return std::bit_cast<float>(sign << 31 | 0xffu << 23 | mant << 13 | (mant ? 1u << 22 : 0u));
  return std::bit_cast<float>(sign << 31 | (exp - 15 + 127) << 23 | mant << 13);
}
std::uint32_t bits_of(float x) { return std::bit_cast<std::uint32_t>(x); }

// The reference decode of a tensor's bytes to floats, by dtype.
std::vector<float> decode(const std::string& dtype, const Bytes& data) {
  std::vector<float> out;
  const std::size_t size = dtype == "F32" ? 4 : 2;
  for (std::size_t i = 0; i + size <= data.size(); i += size) {
    if (dtype == "F32") {
      float f;
      std::memcpy(&f, data.data() + i, 4);
      out.push_back(f);
    } else {
      const auto bits = std::uint16_t(std::to_integer<unsigned>(data[i]) |
                                      std::to_integer<unsigned>(data[i + 1]) << 8);
      out.push_back(dtype == "BF16" ? bf16_to_float(bits) : f16_to_float(bits));
    }
  }
  return out;
}

std::string as_string(const Bytes& b) {
  return std::string(reinterpret_cast<const char*>(b.data()), b.size());
}

// A minimal valid header for a tensor entry.
std::string entry(const std::string& name, const std::string& dtype, const std::string& shape,
                  std::uint64_t begin, std::uint64_t end) {
  return "\"" + name + "\":{\"dtype\":\"" + dtype + "\",\"shape\":" + shape +
         ",\"data_offsets\":[" + std::to_string(begin) + "," + std::to_string(end) + "]}";
}

}  // namespace

TEST_CASE("safetensors: every float dtype reads back bit-identically", "[io][safetensors]") {
  std::mt19937 rng(20261201);
  const test::TempDir dir;
  std::vector<Spec> specs = {
      {"f32.weight", "F32", {3, 5}, random_bytes(rng, 3 * 5 * 4)},
      {"f16.weight", "F16", {4, 6}, random_bytes(rng, 4 * 6 * 2)},
      {"bf16.weight", "BF16", {2, 7}, random_bytes(rng, 2 * 7 * 2)},
      {"f32.norm", "F32", {9}, random_bytes(rng, 9 * 4)},
      {"f16.norm", "F16", {5}, random_bytes(rng, 5 * 2)},
      {"bf16.norm", "BF16", {11}, random_bytes(rng, 11 * 2)},
      {"ids", "I64", {3}, random_bytes(rng, 3 * 8)},
      {"flag", "BOOL", {}, Bytes{std::byte{1}}},
      {"empty", "F32", {0, 4}, {}},
  };
  // Sub-normal, infinite and NaN f16 / bf16 bit patterns among the random ones.
  const std::uint16_t special[] = {0x0001, 0x8001, 0x03ff, 0x7c00, 0xfc00, 0x7e01,
                                   0x7c01, 0xfd55, 0x0000, 0x8000};  // 0x7c01, 0xfd55 signal
  for (std::size_t i = 0; i < std::size(special); ++i) {
    std::memcpy(specs[1].data.data() + 2 * i, &special[i], 2);
    std::memcpy(specs[2].data.data() + 2 * i, &special[i], 2);
  }
  const std::string path = dir.write(
      "model.safetensors", write_safetensors(specs, R"({"format":"pt","note":"caf\u00e9"})"));

  for (const FileMode mode : {FileMode::Map, FileMode::Read}) {
    const SafetensorsFile file = SafetensorsFile::open(path, mode);
    CHECK(file.path() == path);
    REQUIRE(file.metadata().size() == 2);
    CHECK(file.metadata().at("format") == "pt");
    CHECK(file.metadata().at("note") == "caf\xc3\xa9");
    REQUIRE(file.tensors().size() == specs.size());
    // Ordered by name.
    std::vector<std::string> names;
    for (const auto& [name, t] : file.tensors()) names.push_back(name);
    CHECK(std::is_sorted(names.begin(), names.end()));
    for (const Spec& s : specs) {
      const tformer::SafetensorsTensor* t = file.find(s.name);
      REQUIRE(t != nullptr);
      CHECK(t == &file.at(s.name));
      CHECK(t->name == s.name);
      CHECK(t->dtype == s.dtype);
      CHECK(t->shape == s.shape);
      REQUIRE(t->bytes.size() == s.data.size());
      CHECK(std::equal(t->bytes.begin(), t->bytes.end(), s.data.begin()));
      if (!t->is_float()) continue;
      const std::vector<float> want = decode(s.dtype, s.data);
      std::vector<float> got(want.size());
      file.to_f32(s.name, got);
      for (std::size_t i = 0; i < want.size(); ++i) CHECK(bits_of(got[i]) == bits_of(want[i]));
      if (s.shape.size() == 1) {
        std::vector<float> v(want.size());
        file.vector_f32(s.name, v);
        for (std::size_t i = 0; i < want.size(); ++i) CHECK(bits_of(v[i]) == bits_of(want[i]));
      } else if (s.shape.size() == 2) {
        const tformer::WeightView w = file.weight(s.name, s.shape[0], s.shape[1]);
        CHECK(w.type() == (s.dtype == "F32"   ? WeightType::f32
                           : s.dtype == "F16" ? WeightType::f16
                                              : WeightType::bf16));
        CHECK(w.rows() == s.shape[0]);
        CHECK(w.cols() == s.shape[1]);
        CHECK(std::string(w.name()) == s.name);
        CHECK(w.data() == t->bytes.data());  // in place, no copy
        CHECK((s.data.empty() || std::memcmp(w.data(), s.data.data(), s.data.size()) == 0));
      }
    }
    CHECK(file.find("absent") == nullptr);
    CHECK(file.at("flag").elements() == 1);
    CHECK(file.at("empty").elements() == 0);
    CHECK(file.at("empty").bytes.empty());
    CHECK(file.at("ids").element_bytes() == 8);
    const tformer::WeightView empty = file.weight("empty", 0, 4);
    CHECK(empty.rows() == 0);
  }

  // parse() over caller memory gives the same, and the names stay valid after a move.
  const Bytes bytes = write_safetensors(specs);
  std::vector<std::uint64_t> aligned((bytes.size() + 7) / 8);
  std::memcpy(aligned.data(), bytes.data(), bytes.size());
  const auto span =
      std::span<const std::byte>(reinterpret_cast<const std::byte*>(aligned.data()), bytes.size());
  SafetensorsFile parsed = SafetensorsFile::parse(span, "in-memory");
  const tformer::WeightView w = parsed.weight("f16.weight", 4, 6);
  const SafetensorsFile moved = std::move(parsed);
  CHECK(std::string(w.name()) == "f16.weight");
  CHECK(moved.at("f16.weight").bytes.data() == w.data());
  CHECK(moved.metadata().empty());
}

TEST_CASE("safetensors: a hand-assembled file pins the byte layout", "[io][safetensors]") {
  // N = 107 (0x6b), the header, then a BF16 [2] = {1.0, -2.5} and an F32 scalar 0.5.
  const std::string header = R"({"a":{"dtype":"BF16","shape":[2],"data_offsets":[0,4]},)"
                             R"("b":{"dtype":"F32","shape":[],"data_offsets":[4,8]}})";
  REQUIRE(header.size() == 107);
  Bytes file = {std::byte{0x6b}, std::byte{0}, std::byte{0}, std::byte{0},
                std::byte{0},    std::byte{0}, std::byte{0}, std::byte{0}};
  for (const char c : header) file.push_back(std::byte(c));
  for (const int b : {0x80, 0x3f, 0x20, 0xc0, 0x00, 0x00, 0x00, 0x3f}) file.push_back(std::byte(b));
  REQUIRE(file.size() == 123);
  const test::TempDir dir;
  const SafetensorsFile f = SafetensorsFile::open(dir.write("pinned.safetensors", file));
  const auto& a = f.at("a");
  const auto& b = f.at("b");
  CHECK(f.offset_of(a) == 115);
  CHECK(f.offset_of(b) == 119);
  CHECK(a.shape == std::vector<tformer::index>{2});
  CHECK(b.shape.empty());
  CHECK(b.elements() == 1);
  float va[2], vb[1];
  f.vector_f32("a", va);
  f.to_f32("b", vb);
  CHECK(va[0] == 1.0f);
  CHECK(va[1] == -2.5f);
  CHECK(vb[0] == 0.5f);
  CHECK(std::to_integer<int>(a.bytes[0]) == 0x80);
  CHECK(std::to_integer<int>(b.bytes[3]) == 0x3f);
}

TEST_CASE("safetensors: a sharded directory reads as one model", "[io][safetensors]") {
  std::mt19937 rng(7);
  const test::TempDir dir;
  const Spec a{"model.embed.weight", "BF16", {4, 8}, random_bytes(rng, 4 * 8 * 2)};
  const Spec b{"model.norm.weight", "BF16", {8}, random_bytes(rng, 8 * 2)};
  const Spec c{"lm_head.weight", "F32", {3, 8}, random_bytes(rng, 3 * 8 * 4)};
  dir.write("model-00001-of-00002.safetensors", write_safetensors({a, b}));
  std::filesystem::create_directory(dir.path / "sub");
  dir.write("sub/model-00002-of-00002.safetensors", write_safetensors({c}));
  const std::string index = R"({"metadata":{"total_size":208},"weight_map":{)"
                            R"("model.embed.weight":"model-00001-of-00002.safetensors",)"
                            R"("model.norm.weight":"model-00001-of-00002.safetensors",)"
                            R"("lm_head.weight":"sub/model-00002-of-00002.safetensors"}})";
  const Bytes index_bytes = raw_file(index);  // the JSON alone, without the 8 bytes
  dir.write("model.safetensors.index.json", Bytes(index_bytes.begin() + 8, index_bytes.end()));

  for (const FileMode mode : {FileMode::Map, FileMode::Read}) {
    const SafetensorsModel m = SafetensorsModel::open(dir.path.string(), mode);
    CHECK(m.shard_count() == 2);
    CHECK(m.size() == 3);
    CHECK(m.index_path() == (dir.path / "model.safetensors.index.json").string());
    CHECK(m.file_of("lm_head.weight").path() ==
          (dir.path / "sub/model-00002-of-00002.safetensors").string());
    const tformer::WeightView e = m.weight("model.embed.weight", 4, 8);
    CHECK(e.type() == WeightType::bf16);
    CHECK(std::memcmp(e.data(), a.data.data(), a.data.size()) == 0);
    const tformer::WeightView h = m.weight("lm_head.weight", 3, 8);
    CHECK(h.type() == WeightType::f32);
    CHECK(std::memcmp(h.data(), c.data.data(), c.data.size()) == 0);
    std::vector<float> norm(8);
    m.vector_f32("model.norm.weight", norm);
    const std::vector<float> want = decode("BF16", b.data);
    for (std::size_t i = 0; i < 8; ++i) CHECK(bits_of(norm[i]) == bits_of(want[i]));
    CHECK(m.find("absent") == nullptr);
    CHECK(&m.at("model.norm.weight") == m.find("model.norm.weight"));
    std::size_t seen = 0;
    m.for_each([&](const SafetensorsFile&, const tformer::SafetensorsTensor&) { ++seen; });
    CHECK(seen == 3);
    REQUIRE_THROWS_WITH(m.at("absent"), Contains("absent") && Contains(m.index_path()));
    CHECK(m.shard(0).tensors().size() == 2);
    REQUIRE_THROWS_WITH(m.shard(2), Contains("shard_count() (2)"));
  }

  // A directory with one model.safetensors, and a file path, read as one-shard models.
  const test::TempDir single;
  const std::string file = single.write("model.safetensors", write_safetensors({a, c}));
  for (const std::string& p : {single.path.string(), file}) {
    const SafetensorsModel m = SafetensorsModel::open(p);
    CHECK(m.shard_count() == 1);
    CHECK(m.index_path().empty());
    CHECK(m.weight("lm_head.weight", 3, 8).data() == m.at("lm_head.weight").bytes.data());
    REQUIRE_THROWS_WITH(m.at("nope"), Contains("nope") && Contains(file));
  }
}

TEST_CASE("safetensors: every prefix of a valid file is an error", "[io][safetensors]") {
  std::mt19937 rng(3);
  const Bytes whole = write_safetensors(
      {{"x", "F16", {2, 3}, random_bytes(rng, 12)}, {"y", "F32", {2}, random_bytes(rng, 8)}},
      R"({"k":"v"})");
  const test::TempDir dir;
  REQUIRE_NOTHROW(SafetensorsFile::open(dir.write("whole.safetensors", whole)));
  for (std::size_t n = 0; n < whole.size(); ++n) {
    const std::string path =
        dir.write("prefix" + std::to_string(n), Bytes(whole.begin(), whole.begin() + long(n)));
    CAPTURE(n);
    REQUIRE_THROWS_AS(SafetensorsFile::open(path), tformer::Error);
    REQUIRE_THROWS_WITH(SafetensorsFile::open(path, FileMode::Read), Contains(path));
    REQUIRE_THROWS_AS(SafetensorsFile::parse(std::span(whole.data(), n), "p"), tformer::Error);
  }
  // One byte more is a hole after the last tensor.
  Bytes longer = whole;
  longer.push_back(std::byte{0});
  const std::string path = dir.write("longer", longer);
  REQUIRE_THROWS_WITH(SafetensorsFile::open(path), Contains(path) && Contains("after the last"));
}

TEST_CASE("safetensors: malformed files raise errors naming the path and the entry",
          "[io][safetensors]") {
  const test::TempDir dir;
  int count = 0;
  const auto file = [&](const Bytes& b) {
    return dir.write("bad" + std::to_string(count++) + ".safetensors", b);
  };
  const auto fails = [&](const Bytes& b, const std::string& what, const std::string& detail) {
    const std::string path = file(b);
    CAPTURE(what, detail, as_string(b));
    REQUIRE_THROWS_WITH(SafetensorsFile::open(path),
                        Contains(path) && Contains(what) && Contains(detail));
  };
  const Bytes four(4);
  const std::string good = "{" + entry("t", "U8", "[4]", 0, 4) + "}";

  SECTION("header size") {
    Bytes big = raw_file(good, four);
    big[0] = std::byte(good.size() + 5);  // N beyond the file
    fails(big, "header size N", "got " + std::to_string(good.size() + 5));
    Bytes huge = raw_file(good, four);
    huge[7] = std::byte{0x80};  // N = 2^63 + …
    fails(huge, "header size N", "100000000");
    fails(raw_file(""), "header size N", "got 0");
    fails(Bytes{std::byte{1}, std::byte{2}}, "file size", ">= 8 bytes");
  }
  SECTION("not JSON, not an object") {
    fails(raw_file("{not json}"), "header", "valid UTF-8 JSON");
    fails(raw_file("[1, 2]"), "header", "a JSON object");
    fails(raw_file("{\"a\": \"\xff\"}"), "header", "valid UTF-8 JSON");
    fails(raw_file(good + " x", four), "header", "valid UTF-8 JSON");
    fails(raw_file("{\"t\":{\"dtype\":\"U8\",\"shape\":[[[4]]],\"data_offsets\":[0,4]}}", four),
          "header", "nested at most 3");
    fails(raw_file("{" + entry("t", "U8", "[4]", 0, 4) + "," + entry("t", "U8", "[4]", 0, 4) + "}",
                   four),
          "header", "\"t\" twice");
    fails(
        raw_file("{\"t\":{\"dtype\":\"U8\",\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]}}",
                 four),
        "header", "\"dtype\" twice");
  }
  SECTION("entries") {
    fails(raw_file("{" + entry("w", "Q4", "[4]", 0, 4) + "}", four), "\"w\" dtype", "\"Q4\"");
    fails(raw_file("{" + entry("w", "F4", "[8]", 0, 4) + "}", four), "\"w\" dtype", "\"F4\"");
    fails(raw_file("{\"w\":{\"dtype\":\"U8\",\"shape\":[4]}}", four), "\"w\"", "data_offsets");
    fails(raw_file("{\"w\":[1]}", four), "\"w\"", "an object");
    fails(raw_file("{" + entry("w", "U8", "[-4]", 0, 4) + "}", four), "\"w\" shape[0]",
          "an unsigned integer");
    fails(raw_file("{" + entry("w", "U8", "[4.0]", 0, 4) + "}", four), "\"w\" shape[0]",
          "an unsigned integer");
    fails(raw_file("{" + entry("w", "U8", "4", 0, 4) + "}", four), "\"w\" shape", "an array");
    fails(raw_file("{" + entry("w", "F32", "[2]", 0, 4) + "}", four), "\"w\" data_offsets",
          "end - begin = 8 bytes");
    fails(raw_file("{" + entry("w", "U8", "[0]", 4, 0) + "}", four), "\"w\" data_offsets",
          "begin <= end");
    fails(raw_file("{" + entry("w", "F32", "[1099511627776,1099511627776]", 0, 4) + "}", four),
          "\"w\" shape", "overflowing");
    fails(raw_file("{" + entry("w", "U8", "[4611686018427387904]", 0, 4) + "}", four),
          "\"w\" shape[0]", "below 2^62");
    fails(raw_file("{" + entry("w", "U8", "[4]", 0, 4) + ",\"__metadata__\":{\"k\":1}}", four),
          "\"__metadata__\" entry \"k\"", "a string");
    fails(raw_file("{" + entry("w", "U8", "[4]", 0, 4) + ",\"__metadata__\":[]}", four),
          "\"__metadata__\"", "an object");
  }
  SECTION("layout of the buffer") {
    const Bytes eight(8);
    fails(raw_file("{" + entry("a", "U8", "[4]", 0, 4) + "," + entry("b", "U8", "[4]", 2, 6) + "}",
                   eight),
          "\"b\" data_offsets", "an overlap");
    fails(raw_file("{" + entry("a", "U8", "[4]", 0, 4) + "," + entry("b", "U8", "[2]", 6, 8) + "}",
                   eight),
          "\"b\" data_offsets", "a hole");
    fails(raw_file("{" + entry("a", "U8", "[4]", 4, 8) + "}", eight), "\"a\" data_offsets",
          "a hole");
    fails(raw_file("{" + entry("a", "U8", "[4]", 0, 4) + "}", eight), "data buffer",
          "4 bytes after the last tensor");
    fails(raw_file("{" + entry("a", "U8", "[12]", 0, 12) + "}", eight), "\"a\" data_offsets",
          "end <= 8");
    fails(raw_file("{}", four), "data buffer", "there are none");
    // An empty tensor with absurd other sizes is fine, and so is an empty file.
    REQUIRE_NOTHROW(SafetensorsFile::open(
        file(raw_file("{" + entry("z", "F32", "[1099511627776,1099511627776,0]", 4, 4) + "," +
                          entry("a", "U8", "[4]", 0, 4) + "}",
                      four))));
    REQUIRE_NOTHROW(SafetensorsFile::open(file(raw_file("{}   "))));
    // "__metadata__": null is no metadata, as in the official reader.
    CHECK(SafetensorsFile::open(file(raw_file("{\"__metadata__\":null}"))).metadata().empty());
  }
  SECTION("typed access") {
    // "u" U8 [1] at 0, then "w" F32 [2, 3] at byte 1 of an 8-aligned buffer: misaligned.
    std::string h = "{" + entry("u", "U8", "[1]", 0, 1) + "," + entry("w", "F32", "[2,3]", 1, 25) +
                    "," + entry("v", "F32", "[6]", 25, 49) + "}";
    while ((8 + h.size()) % 8 != 0) h += ' ';
    Bytes data(49);
    const float one = 1.0f;
    std::memcpy(data.data() + 25, &one, 4);
    const std::string path = file(raw_file(h, data));
    const SafetensorsFile f = SafetensorsFile::open(path);
    REQUIRE_THROWS_WITH(f.weight("w", 2, 3),
                        Contains(path) && Contains("\"w\"") && Contains("aligned"));
    REQUIRE_THROWS_WITH(f.weight("v", 2, 3), Contains(path) && Contains("\"v\" shape") &&
                                                 Contains("[2, 3]") && Contains("[6]"));
    REQUIRE_THROWS_WITH(f.weight("u", 1, 1),
                        Contains(path) && Contains("\"u\" dtype") && Contains("U8"));
    REQUIRE_THROWS_WITH(f.weight("missing", 1, 1), Contains(path) && Contains("\"missing\""));
    REQUIRE_THROWS_WITH(f.at("missing"), Contains(path) && Contains("\"missing\""));
    std::vector<float> six(6), five(5);
    REQUIRE_THROWS_WITH(f.vector_f32("w", six), Contains(path) && Contains("\"w\" shape") &&
                                                    Contains("[6]") && Contains("[2, 3]"));
    REQUIRE_THROWS_WITH(f.vector_f32("v", five), Contains(path) && Contains("[5]"));
    REQUIRE_THROWS_WITH(f.vector_f32("u", std::span(six.data(), 1)), Contains("\"u\" dtype"));
    f.to_f32("w", six);  // decoding takes any alignment
    f.vector_f32("v", six);
    CHECK(six[0] == 1.0f);
  }
  SECTION("files that are not files") {
    REQUIRE_THROWS_WITH(SafetensorsFile::open((dir.path / "none").string()),
                        Contains((dir.path / "none").string()));
    REQUIRE_THROWS_WITH(SafetensorsFile::open(dir.path.string()), Contains("a directory"));
    REQUIRE_THROWS_WITH(SafetensorsModel::open(dir.path.string()),
                        Contains(dir.path.string()) && Contains("model.safetensors"));
  }
}

TEST_CASE("safetensors: inconsistent shards raise errors naming index, tensor and shard",
          "[io][safetensors]") {
  const Spec a{"a", "U8", {2}, Bytes(2)};
  const Spec b{"b", "U8", {3}, Bytes(3)};
  const auto model = [&](const std::string& weight_map, const std::vector<Spec>& one,
                         const std::vector<Spec>& two) {
    auto dir = std::make_unique<test::TempDir>();
    dir->write("one.safetensors", write_safetensors(one));
    dir->write("two.safetensors", write_safetensors(two));
    const std::string index = R"({"weight_map":)" + weight_map + "}";
    dir->write("model.safetensors.index.json",
               Bytes(reinterpret_cast<const std::byte*>(index.data()),
                     reinterpret_cast<const std::byte*>(index.data()) + index.size()));
    return dir;
  };
  const auto fails = [&](const test::TempDir& dir, const std::vector<std::string>& parts) {
    const std::string index = (dir.path / "model.safetensors.index.json").string();
    try {
      (void)SafetensorsModel::open(dir.path.string());
      FAIL("no error");
    } catch (const tformer::Error& e) {
      const std::string message = e.what();
      CAPTURE(message);
      CHECK(message.find(index) != std::string::npos);
      for (const std::string& p : parts) CHECK(message.find(p) != std::string::npos);
    }
  };
  SECTION("valid") {
    const auto dir = model(R"({"a":"one.safetensors","b":"two.safetensors"})", {a}, {b});
    CHECK(SafetensorsModel::open(dir->path.string()).size() == 2);
  }
  SECTION("escaping the directory") {
    fails(*model(R"({"a":"../one.safetensors","b":"two.safetensors"})", {a}, {b}),
          {"\"a\"", "\"../one.safetensors\""});
    fails(*model(R"({"a":"/etc/passwd","b":"two.safetensors"})", {a}, {b}),
          {"\"a\"", "\"/etc/passwd\""});
    fails(*model(R"({"a":"x/../../one.safetensors","b":"two.safetensors"})", {a}, {b}),
          {"\"a\"", "x/../../one.safetensors"});
    fails(*model(R"({"a":"","b":"two.safetensors"})", {a}, {b}), {"\"a\"", "relative path"});
  }
  SECTION("a listed tensor missing from its shard") {
    fails(*model(R"({"a":"one.safetensors","b":"one.safetensors"})", {a}, {b}),
          {"\"b\"", "one.safetensors"});
  }
  SECTION("a tensor in two shards") {
    fails(*model(R"({"a":"one.safetensors","b":"two.safetensors"})", {a, b}, {b}),
          {"\"b\"", "one.safetensors", "two.safetensors"});
  }
  SECTION("a shard that is not there, an index that is not one") {
    fails(*model(R"({"a":"one.safetensors","b":"three.safetensors"})", {a}, {b}),
          {"\"b\"", "three.safetensors"});
    fails(*model(R"(["a"])", {a}, {b}), {"weight_map"});
    fails(*model(R"({"a":1})", {a}, {b}), {"\"a\"", "a file name"});
  }
}
