// An independent GGUF writer for tests: each field appended as ggml's docs/gguf.md describes it
// (little-endian, packed), never through tformer's reader.
#pragma once

#include <cstdint>
#include <cstring>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace test::gguf {

struct Writer {
  std::vector<std::uint8_t> b;
  void raw(const void* p, std::size_t n) {
    const auto* c = static_cast<const std::uint8_t*>(p);
    b.insert(b.end(), c, c + n);
  }
  void u8(std::uint8_t v) { b.push_back(v); }
  void u32(std::uint32_t v) {
    for (int i = 0; i < 4; ++i) b.push_back(std::uint8_t(v >> (8 * i)));
  }
  void u64(std::uint64_t v) {
    for (int i = 0; i < 8; ++i) b.push_back(std::uint8_t(v >> (8 * i)));
  }
  void i32(std::int32_t v) { u32(std::uint32_t(v)); }
  void f32(float v) {
    std::uint32_t u;
    std::memcpy(&u, &v, 4);
    u32(u);
  }
  void str(std::string_view s) {
    u64(s.size());
    raw(s.data(), s.size());
  }
  void header(std::uint32_t version, std::uint64_t tensors, std::uint64_t kvs) {
    u32(0x46554747);
    u32(version);
    u64(tensors);
    u64(kvs);
  }
  void kv_u32(std::string_view key, std::uint32_t v) {
    str(key);
    u32(4);
    u32(v);
  }
  void kv_str(std::string_view key, std::string_view v) {
    str(key);
    u32(8);
    str(v);
  }
  void info(std::string_view name, const std::vector<std::uint64_t>& dims, std::uint32_t type,
            std::uint64_t offset) {
    str(name);
    u32(std::uint32_t(dims.size()));
    for (auto d : dims) u64(d);
    u32(type);
    u64(offset);
  }
  void pad(std::size_t align) {
    while (b.size() % align) b.push_back(0);
  }
};

struct Tensor {
  std::string name;
  std::uint32_t type;
  std::vector<std::uint64_t> dims;
  std::vector<std::uint8_t> data;
};

// A whole file: header, the pairs `kvs` writes (n_kv of them), the tensor infos with offsets
// packed at `alignment`, padding, the data (no padding after the last tensor).
inline std::vector<std::uint8_t> build(const std::vector<Tensor>& tensors, std::uint64_t n_kv,
                                const std::function<void(Writer&)>& kvs,
                                std::size_t alignment = 32, std::uint32_t version = 3) {
  Writer w;
  w.header(version, tensors.size(), n_kv);
  kvs(w);
  std::uint64_t offset = 0;
  for (const auto& t : tensors) {
    w.info(t.name, t.dims, t.type, offset);
    offset += t.data.size();
    offset = (offset + alignment - 1) / alignment * alignment;
  }
  w.pad(alignment);
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    if (i > 0) w.pad(alignment);
    w.raw(tensors[i].data.data(), tensors[i].data.size());
  }
  return w.b;
}

inline std::vector<std::uint8_t> build(const std::vector<Tensor>& tensors) {
  return build(tensors, 0, [](Writer&) {});
}

}  // namespace test::gguf
