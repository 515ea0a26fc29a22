// An installed tformer::checkpoints: a safetensors file of one F32 tensor, parsed from memory.
#include <tformer/io/safetensors.hpp>

#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

int main() {
  const std::string header = R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  std::vector<std::byte> file(8 + header.size() + 8);
  const std::uint64_t n = header.size();
  std::memcpy(file.data(), &n, 8);  // little-endian hosts (x86-64, AArch64)
  std::memcpy(file.data() + 8, header.data(), header.size());
  const float values[2] = {1.5f, -2.0f};
  std::memcpy(file.data() + 8 + header.size(), values, 8);
  const auto st = tformer::SafetensorsFile::parse(file, "memory");
  float out[2];
  st.to_f32("x", out);
  const bool ok = out[0] == 1.5f && out[1] == -2.0f;
  std::printf("checkpoint consumer: %s\n", ok ? "OK" : "MISMATCH");
  return ok ? 0 : 1;
}
