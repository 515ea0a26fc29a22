// Deterministic random data for property tests: every test draws from a generator seeded with a
// value it CAPTUREs, so a failure prints the seed that reproduces it.
#pragma once

#include <cstdint>
#include <random>
#include <vector>

namespace test {

class Random {
 public:
  explicit Random(std::uint64_t seed) : engine_(seed) {}

  // Uniform integer in [lo, hi].
  int integer(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(engine_); }
  // Uniform even integer in [lo, hi] (lo and hi even).
  int even(int lo, int hi) { return 2 * integer(lo / 2, hi / 2); }
  double uniform(double lo, double hi) {
    return std::uniform_real_distribution<double>(lo, hi)(engine_);
  }
  std::vector<float> normal_floats(std::size_t n, float stddev = 1.0f) {
    std::normal_distribution<float> dist(0.0f, stddev);
    std::vector<float> v(n);
    for (auto& x : v) x = dist(engine_);
    return v;
  }
  std::mt19937_64& engine() { return engine_; }

 private:
  std::mt19937_64 engine_;
};

}  // namespace test
