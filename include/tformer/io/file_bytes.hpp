// The bytes of a whole checkpoint file, memory-mapped (zero copy) or read into an owned
// buffer: FileBytes, shared by the readers in io/ (llama2c.hpp, and the safetensors and GGUF
// readers). Regular, non-empty files only; every failure is a tformer::Error naming the caller,
// the path and the system's reason.
#pragma once

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <utility>

#include "tformer/core/error.hpp"
#include "tformer/core/memory.hpp"

namespace tformer {
inline namespace TFORMER_ARCH_NS {

// How open() brings a file into memory.
enum class FileMode {
  // mmap(2), read-only and private: no copy; pages are read from the page cache on first use.
  // The file must keep its length while the model lives: once it is truncated (rewritten in
  // place, cut by a full disk, replaced over NFS), the first touch of a page past its new end
  // raises SIGBUS, which kills the process at decode. Every mmap-based loader has this hazard
  // and no check at open can exclude it; use Read where files may change under the process.
  Map,
  // read(2) into an owned, 64-byte aligned buffer: one copy and the memory of the whole file,
  // but nothing later done to the file can reach what was read.
  Read,
};

namespace file_detail {

// Closes the descriptor on every path out of the constructor.
struct Descriptor {
  int fd = -1;
  ~Descriptor() {
    if (fd >= 0) ::close(fd);
  }
};

// What a file that is not a regular file is, for the message.
inline const char* kind(mode_t mode) noexcept {
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISFIFO(mode)) return "a FIFO (named pipe)";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISSOCK(mode)) return "a socket";
  return "not a regular file";
}

// "path (the system's reason)", from errno: call right after the failing call.
inline std::string with_reason(const std::string& path) {
  return path + " (" + std::strerror(errno) + ")";
}

}  // namespace file_detail

// The bytes of a whole regular file, mapped or read (move-only).
class FileBytes {
 public:
  FileBytes() = default;
  // Opens `path` with O_NONBLOCK, so that a FIFO without a writer is refused at once instead of
  // blocking open(2) forever, and takes only a non-empty regular file: a directory, FIFO, device
  // or socket raises tformer::Error naming `where`, the path and what it is.
  FileBytes(const std::string& path, FileMode mode, std::string_view where = "FileBytes") {
    using namespace file_detail;
    const Descriptor file{::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC)};
    if (file.fd < 0) [[unlikely]]
      detail::fail_check(where, "path", "a readable file", with_reason(path));
    struct stat st {};
    if (::fstat(file.fd, &st) != 0) [[unlikely]]
      detail::fail_check(where, "path", "a file fstat(2) can describe", with_reason(path));
    if (!S_ISREG(st.st_mode)) [[unlikely]]
      detail::fail_check(where, "path", "a regular file",
                         std::string(kind(st.st_mode)) + ": " + path);
    if (st.st_size <= 0) [[unlikely]]
      detail::fail_check(where, "file size", "> 0 bytes", "0 bytes: " + path);
    size_ = static_cast<std::size_t>(st.st_size);
    if (mode == FileMode::Map)
      map(file.fd, path, where);
    else
      read(file.fd, path, where);
  }
  FileBytes(FileBytes&& o) noexcept
      : owned_(std::move(o.owned_)),
        data_(std::exchange(o.data_, nullptr)),
        size_(std::exchange(o.size_, 0)),
        mapped_(std::exchange(o.mapped_, false)) {}
  FileBytes& operator=(FileBytes&& o) noexcept {
    if (this != &o) {
      unmap();
      owned_ = std::move(o.owned_);
      data_ = std::exchange(o.data_, nullptr);
      size_ = std::exchange(o.size_, 0);
      mapped_ = std::exchange(o.mapped_, false);
    }
    return *this;
  }
  FileBytes(const FileBytes&) = delete;
  FileBytes& operator=(const FileBytes&) = delete;
  ~FileBytes() { unmap(); }

  std::span<const std::byte> bytes() const noexcept { return {data_, size_}; }
  bool mapped() const noexcept { return mapped_; }

 private:
  void map(int fd, const std::string& path, std::string_view where) {
    void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) [[unlikely]]
      detail::fail_check(where, "path", "a file mmap(2) can map", file_detail::with_reason(path));
    data_ = static_cast<const std::byte*>(p);
    mapped_ = true;
  }
  // The whole file, as long as fstat said at open; a file that shrinks meanwhile is an error.
  void read(int fd, const std::string& path, std::string_view where) {
    ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) & ~O_NONBLOCK);  // plain blocking reads
    owned_ = AlignedBuffer<std::byte>(size_);
    for (std::size_t got = 0; got < size_;) {
      const ssize_t n = ::read(fd, owned_.data() + got, size_ - got);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) [[unlikely]]
        detail::fail_check(where, "path", "a file read(2) can read",
                           file_detail::with_reason(path));
      if (n == 0) [[unlikely]]
        detail::fail_check(where, "file size", std::to_string(size_) + " bytes (its size at open)",
                           std::to_string(got) + " bytes, as it shrank while read: " + path);
      got += static_cast<std::size_t>(n);
    }
    data_ = owned_.data();
  }
  void unmap() noexcept {
    if (mapped_) ::munmap(const_cast<std::byte*>(data_), size_);
    mapped_ = false;
  }

  AlignedBuffer<std::byte> owned_;  // Read mode's copy
  const std::byte* data_ = nullptr;
  std::size_t size_ = 0;
  bool mapped_ = false;
};

}  // namespace TFORMER_ARCH_NS
}  // namespace tformer
