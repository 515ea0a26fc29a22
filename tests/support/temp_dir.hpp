// A unique temporary directory for tests that write files, removed with its contents.
#pragma once

#include <stdlib.h>  // mkdtemp

#include <cstddef>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <system_error>
#include <vector>

namespace test {

struct TempDir {
  TempDir() {
    std::string t = (std::filesystem::temp_directory_path() / "tformer_test_XXXXXX").string();
    if (::mkdtemp(t.data()) == nullptr) std::abort();
    path = t;
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  // Writes `bytes` to the file `name` in this directory; returns its path.
  std::string write(const std::string& name, const std::vector<std::byte>& bytes) const {
    const auto file = path / name;
    std::ofstream(file, std::ios::binary)
        .write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
    return file.string();
  }
  std::filesystem::path path;
};

}  // namespace test
