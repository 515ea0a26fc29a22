// Replaces every global allocation function (plain, array, aligned, nothrow) with counting ones,
// and, unless AddressSanitizer owns malloc, the C allocation functions too, forwarding to glibc's
// own (__libc_malloc and friends). One atomic counter for every thread.
#include "support/allocation_counter.hpp"

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <new>

#if defined(__SANITIZE_ADDRESS__)
#define TFORMER_TEST_COUNT_MALLOC 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TFORMER_TEST_COUNT_MALLOC 0
#endif
#endif
#if !defined(TFORMER_TEST_COUNT_MALLOC) && defined(__GLIBC__)
#define TFORMER_TEST_COUNT_MALLOC 1
#elif !defined(TFORMER_TEST_COUNT_MALLOC)
#define TFORMER_TEST_COUNT_MALLOC 0
#endif

namespace {
std::atomic<std::size_t> count{0};
void counted() noexcept { count.fetch_add(1, std::memory_order_relaxed); }
}  // namespace

#if TFORMER_TEST_COUNT_MALLOC
// glibc's implementations, which the replacements below forward to.
extern "C" {
void* __libc_malloc(std::size_t);
void* __libc_calloc(std::size_t, std::size_t);
void* __libc_realloc(void*, std::size_t);
void* __libc_memalign(std::size_t, std::size_t);
void __libc_free(void*);

void* malloc(std::size_t size) {
  counted();
  return __libc_malloc(size);
}
void* calloc(std::size_t n, std::size_t size) {
  counted();
  return __libc_calloc(n, size);
}
void* realloc(void* p, std::size_t size) {
  counted();
  return __libc_realloc(p, size);
}
void free(void* p) { __libc_free(p); }
void* aligned_alloc(std::size_t alignment, std::size_t size) {
  counted();
  return __libc_memalign(alignment, size);
}
void* memalign(std::size_t alignment, std::size_t size) {
  counted();
  return __libc_memalign(alignment, size);
}
void* valloc(std::size_t size) {
  counted();
  return __libc_memalign(4096, size);
}
int posix_memalign(void** out, std::size_t alignment, std::size_t size) {
  counted();
  if (alignment % sizeof(void*) != 0 || (alignment & (alignment - 1)) != 0) return EINVAL;
  void* p = __libc_memalign(alignment, size);
  if (!p) return ENOMEM;
  *out = p;
  return 0;
}
}
#endif

namespace {
// operator new counts itself and allocates through glibc directly, so one new is one count.
void* allocate(std::size_t size, std::size_t alignment) {
  counted();
  if (size == 0) size = 1;
#if TFORMER_TEST_COUNT_MALLOC
  void* p = alignment <= alignof(std::max_align_t) ? __libc_malloc(size)
                                                    : __libc_memalign(alignment, size);
#else
  void* p = alignment <= alignof(std::max_align_t)
                ? std::malloc(size)
                : std::aligned_alloc(alignment, (size + alignment - 1) / alignment * alignment);
#endif
  if (!p) throw std::bad_alloc();
  return p;
}
}  // namespace

std::size_t test::allocations() noexcept { return count.load(std::memory_order_relaxed); }
bool test::counts_malloc() noexcept { return TFORMER_TEST_COUNT_MALLOC != 0; }

void* operator new(std::size_t size) { return allocate(size, alignof(std::max_align_t)); }
void* operator new[](std::size_t size) { return allocate(size, alignof(std::max_align_t)); }
void* operator new(std::size_t size, std::align_val_t a) {
  return allocate(size, static_cast<std::size_t>(a));
}
void* operator new[](std::size_t size, std::align_val_t a) {
  return allocate(size, static_cast<std::size_t>(a));
}
void* operator new(std::size_t size, const std::nothrow_t&) noexcept try {
  return allocate(size, alignof(std::max_align_t));
} catch (...) {
  return nullptr;
}
void* operator new[](std::size_t size, const std::nothrow_t&) noexcept try {
  return allocate(size, alignof(std::max_align_t));
} catch (...) {
  return nullptr;
}
void* operator new(std::size_t size, std::align_val_t a, const std::nothrow_t&) noexcept try {
  return allocate(size, static_cast<std::size_t>(a));
} catch (...) {
  return nullptr;
}
void* operator new[](std::size_t size, std::align_val_t a, const std::nothrow_t&) noexcept try {
  return allocate(size, static_cast<std::size_t>(a));
} catch (...) {
  return nullptr;
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t, const std::nothrow_t&) noexcept { std::free(p); }
