#include <catch2/catch.hpp>

#include <vector>

#include "support/random.hpp"
#include "tformer/cache/kv_cache.hpp"

using Catch::Matchers::Contains;
using tformer::HeadsView;
using tformer::KVCache;

TEST_CASE("cache/kv_cache: layout, lengths per sequence, truncate and reset", "[cache]") {
  const tformer::KVCacheConfig config{
      .layers = 3, .kv_heads = 2, .head_dim = 4, .capacity = 10, .sequences = 2};
  KVCache cache(config);
  CHECK(cache.bytes() == 2u * 2 * 3 * 2 * 10 * 4 * sizeof(float));
  test::Random rng(1);
  const auto k = rng.normal_floats(3 * 2 * 4), v = rng.normal_floats(3 * 2 * 4);
  for (int layer = 0; layer < 3; ++layer)
    cache.write(layer, 1, HeadsView<const float>(k.data(), 3, 2, 4),
                HeadsView<const float>(v.data(), 3, 2, 4));
  CHECK(cache.length(1) == 0);  // written, not yet advanced
  cache.advance(1, 3);
  CHECK(cache.length(1) == 3);
  CHECK(cache.length(0) == 0);
  const auto view = cache.view(2, 1, cache.length(1));
  CHECK(view.length == 3);
  for (int t = 0; t < 3; ++t)
    for (int h = 0; h < 2; ++h)
      for (int i = 0; i < 4; ++i) {
        REQUIRE(view.key(h, t)[i] == k[(t * 2 + h) * 4 + i]);  // [head][position][dim]
        REQUIRE(view.value(h, t)[i] == v[(t * 2 + h) * 4 + i]);
      }
  CHECK(view.key(1, 0) == view.key(0, 0) + 10 * 4);  // one head's positions are contiguous
  cache.truncate(1, 1);
  CHECK(cache.length(1) == 1);
  cache.reset(1);
  CHECK(cache.length(1) == 0);
}

TEST_CASE("cache/kv_cache: overflow and bad arguments raise tformer::Error", "[cache][errors]") {
  KVCache cache({.layers = 1, .kv_heads = 1, .head_dim = 2, .capacity = 4});
  std::vector<float> kv(5 * 2);
  CHECK_THROWS_WITH(cache.write(0, 0, HeadsView<const float>(kv.data(), 5, 1, 2),
                                HeadsView<const float>(kv.data(), 5, 1, 2)),
                    Contains("capacity (4)") && Contains("got 5"));
  CHECK_THROWS_WITH(cache.write(1, 0, HeadsView<const float>(kv.data(), 1, 1, 2),
                                HeadsView<const float>(kv.data(), 1, 1, 2)),
                    Contains("layer") && Contains("[0, 1)"));
  CHECK_THROWS_WITH(cache.write(0, 0, HeadsView<const float>(kv.data(), 1, 2, 2),
                                HeadsView<const float>(kv.data(), 1, 2, 2)),
                    Contains("k.heads (= kv_heads)") && Contains("expected 1, got 2"));
  CHECK_THROWS_WITH(cache.advance(0, 5), Contains("length + tokens"));
  CHECK_THROWS_WITH(cache.truncate(0, 1), Contains("[0, 0] (current length)"));
  CHECK_THROWS_WITH(KVCache({.layers = 0, .kv_heads = 1, .head_dim = 2, .capacity = 4}),
                    Contains("layers"));
}
