// Bad inputs of the public entry points in include/tformer/cache/ (see bad_input.hpp).
#include <cstdint>
#include <limits>
#include <sstream>
#include <vector>

#include "bad_input/bad_input.hpp"
#include "tformer/cache/kv_cache.hpp"

using namespace tformer;
using Index = tformer::index;
using namespace bad_input;

namespace {


// Every length and what view() accepts, per sequence and layer.
std::string state(const KVCache& c) {
  std::ostringstream s;
  for (Index q = 0; q < c.config().sequences; ++q) {
    s << c.length(q) << ":";
    for (Index l = 0; l < c.config().layers; ++l) {
      Index valid = 0;
      while (valid < c.slots()) {
        try {
          (void)c.view(l, q, valid + 1);
        } catch (const Error&) {
          break;
        }
        ++valid;
      }
      s << valid << ",";
    }
  }
  return s.str();
}

// Tokens, padding flags and which layers are set, per sequence.
std::string state(const CrossKVCache& c, Index sequences, Index layers) {
  std::ostringstream s;
  for (Index q = 0; q < sequences; ++q) {
    s << c.tokens(q) << ":";
    for (const std::uint8_t f : c.key_valid(q)) s << int(f);
    for (Index l = 0; l < layers; ++l) {
      try {
        (void)c.view(l, q);
        s << "+";
      } catch (const Error&) {
        s << "-";
      }
    }
    s << ",";
  }
  return s.str();
}

}  // namespace

TEST_CASE("bad_input: KVCache and CrossKVCache", "[bad_input][cache]") {
  const KVCacheConfig ok{.layers = 2, .kv_heads = 2, .head_dim = 4, .capacity = 8, .sequences = 2};
  auto make = [](KVCacheConfig c) { return [c] { KVCache cache(c); }; };
  auto with = [&](auto change) {
    KVCacheConfig c = ok;
    change(c);
    return c;
  };
  KVCache cache(ok);
  KVCache ring({.layers = 1, .kv_heads = 1, .head_dim = 4, .window = 4, .max_step = 2});
  std::vector<float> data(64, 0.5f);
  const HeadsView<const float> k3(data.data(), 3, 2, 4), k9(data.data(), 9, 2, 4),
      k3_one_head(data.data(), 3, 1, 4), k3_dim2(data.data(), 3, 2, 2),
      k2(data.data(), 2, 2, 4), negative(data.data(), -1, 2, 4), null(nullptr, 3, 2, 4),
      wraps(data.data(), 3, huge, 8);
  cache.write(0, 0, k3, k3);
  cache.write(1, 0, k3, k3);
  cache.advance(0, 3);
  cache.write(0, 0, k2, k2);  // one layer of the next step written, not yet advanced
  auto cache_state = [&] { return state(cache); };
  auto ring_state = [&] { return state(ring); };

  CrossKVCache cross({.layers = 2, .kv_heads = 2, .head_dim = 4, .capacity = 4, .sequences = 2});
  const std::vector<std::uint8_t> mask{1, 1, 0}, other{1, 0, 0}, short_mask{1, 1};
  cross.set(0, 0, k3, k3, mask);
  auto cross_state = [&] { return state(cross, 2, 2); };

  bad_input::run({
      {"KVCache", "layers = 0", "layers", make(with([](auto& c) { c.layers = 0; }))},
      {"KVCache", "kv_heads = -1", "kv_heads", make(with([](auto& c) { c.kv_heads = -1; }))},
      {"KVCache", "head_dim = 0", "head_dim", make(with([](auto& c) { c.head_dim = 0; }))},
      {"KVCache", "sequences = 0", "sequences", make(with([](auto& c) { c.sequences = 0; }))},
      {"KVCache", "capacity = 0", "capacity", make(with([](auto& c) { c.capacity = 0; }))},
      {"KVCache", "window = -1", "window", make(with([](auto& c) { c.window = -1; }))},
      {"KVCache", "type 9 (not a KVType)", "type",
       make(with([](auto& c) { c.type = static_cast<tformer::KVType>(9); }))},
      {"KVCache", "sinks without a window", "window", make(with([](auto& c) { c.sinks = 2; }))},
      {"KVCache", "sinks = -1", "sinks", make(with([](auto& c) {
         c.window = 4;
         c.sinks = -1;
       }))},
      {"KVCache", "ring max_step = 0", "max_step", make(with([](auto& c) {
         c.window = 4;
         c.max_step = 0;
       }))},
      {"KVCache", "ring window 2^62, max_step 2^62 + 2", "window", make(with([](auto& c) {
         c.window = huge;
         c.max_step = huge + 2;
       }))},
      {"KVCache", "ring max_step 2^62", "max_step", make(with([](auto& c) {
         c.window = 4;
         c.max_step = huge;
       }))},
      {"KVCache", "size product wraps to 16 floats (2^64 + 16)", "sequences * layers",
       make(with([](auto& c) {
         c.sequences = Index(1) << 30;
         c.layers = Index(1) << 30;
         c.kv_heads = 16;
         c.capacity = 1;
         c.head_dim = 1;
       }))},
      {"KVCache", "2^40 positions", "2^40 bytes",
       make(with([](auto& c) { c.capacity = Index(1) << 40; }))},
      {"KVCache::length", "seq = 2", "seq", [&] { (void)cache.length(2); }, cache_state},
      {"KVCache::write", "layer = 2", "layer", [&] { cache.write(2, 0, k3, k3); }, cache_state},
      {"KVCache::write", "seq = -1", "seq", [&] { cache.write(0, -1, k3, k3); }, cache_state},
      {"KVCache::write", "past capacity", "capacity", [&] { cache.write(1, 0, k9, k9); },
       cache_state},
      {"KVCache::write", "k with 1 head", "k.heads", [&] { cache.write(1, 0, k3_one_head, k3); },
       cache_state},
      {"KVCache::write", "v with head_dim 2", "v.head_dim", [&] { cache.write(1, 0, k3, k3_dim2); },
       cache_state},
      {"KVCache::write", "v.tokens != k.tokens", "v.tokens", [&] { cache.write(1, 0, k3, k2); },
       cache_state},
      {"KVCache::write", "negative tokens", "k shape", [&] { cache.write(1, 0, negative, k3); },
       cache_state},
      {"KVCache::write", "null data", "k data", [&] { cache.write(1, 0, null, null); },
       cache_state},
      {"KVCache::write", "heads * head_dim wraps", "k shape", [&] { cache.write(1, 0, wraps, k3); },
       cache_state},
      {"KVCache::write", "ring: more than max_step tokens", "max_step",
       [&] {
         ring.write(0, 0, {data.data(), 3, 1, 4}, {data.data(), 3, 1, 4});
       },
       ring_state},
      {"KVCache::view", "layer = -1", "layer", [&] { (void)cache.view(-1, 0, 1); }, cache_state},
      {"KVCache::view", "seq = 2", "seq", [&] { (void)cache.view(0, 2, 1); }, cache_state},
      {"KVCache::view", "length = -1", "length", [&] { (void)cache.view(0, 0, -1); }, cache_state},
      {"KVCache::view", "length past capacity", "length", [&] { (void)cache.view(0, 0, 9); },
       cache_state},
      {"KVCache::view", "length never written (layer 1 of the step)", "length",
       [&] { (void)cache.view(1, 0, 5); }, cache_state},
      {"KVCache::view", "length never written (sequence 1)", "length",
       [&] { (void)cache.view(0, 1, 1); }, cache_state},
      {"KVCache::advance", "tokens = -1", "tokens", [&] { cache.advance(0, -1); }, cache_state},
      {"KVCache::advance", "tokens = INT64_MAX", "tokens", [&] { cache.advance(0, max_index); },
       cache_state},
      {"KVCache::advance", "past capacity", "tokens", [&] { cache.advance(0, 6); }, cache_state},
      {"KVCache::advance", "seq = 5", "seq", [&] { cache.advance(5, 1); }, cache_state},
      {"KVCache::advance", "ring: INT64_MAX", "max_step", [&] { ring.advance(0, max_index); },
       ring_state},
      {"KVCache::truncate", "length above the current", "length", [&] { cache.truncate(0, 4); },
       cache_state},
      {"KVCache::truncate", "length = -1", "length", [&] { cache.truncate(0, -1); }, cache_state},
      {"KVCache::truncate", "seq = 2", "seq", [&] { cache.truncate(2, 0); }, cache_state},
      {"KVCache::reset", "seq = -1", "seq", [&] { cache.reset(-1); }, cache_state},
      {"CrossKVCache", "window = 4", "window",
       [] {
         CrossKVCache c({.layers = 1, .kv_heads = 1, .head_dim = 2, .capacity = 4, .window = 4});
       }},
      {"CrossKVCache", "capacity = 0", "capacity",
       [] { CrossKVCache c({.layers = 1, .kv_heads = 1, .head_dim = 2, .capacity = 0}); }},
      {"CrossKVCache", "size product wraps", "sequences * layers",
       [] { CrossKVCache c({.layers = huge, .kv_heads = 4, .head_dim = 2, .capacity = 4}); }},
      {"CrossKVCache::set", "seq = 2", "seq", [&] { cross.set(0, 2, k3, k3); }, cross_state},
      {"CrossKVCache::set", "layer = 2", "layer", [&] { cross.set(2, 0, k3, k3); }, cross_state},
      {"CrossKVCache::set", "a layer already set", "layer", [&] { cross.set(0, 0, k3, k3); },
       cross_state},
      {"CrossKVCache::set", "other encoder length", "encoder tokens",
       [&] { cross.set(1, 0, k2, k2); }, cross_state},
      {"CrossKVCache::set", "a different padding mask", "valid",
       [&] { cross.set(1, 0, k3, k3, other); }, cross_state},
      {"CrossKVCache::set", "mask of the wrong size", "valid size",
       [&] { cross.set(1, 0, k3, k3, short_mask); }, cross_state},
      {"CrossKVCache::set", "more tokens than capacity", "capacity",
       [&] { cross.set(0, 1, k9, k9); }, cross_state},
      {"CrossKVCache::view", "layer not set", "layer", [&] { (void)cross.view(1, 0); },
       cross_state},
      {"CrossKVCache::view", "seq = -1", "seq", [&] { (void)cross.view(0, -1); }, cross_state},
      {"CrossKVCache::key_valid", "seq = 2", "seq", [&] { (void)cross.key_valid(2); }, cross_state},
      {"CrossKVCache::tokens", "seq = 2", "seq", [&] { (void)cross.tokens(2); }, cross_state},
      {"CrossKVCache::reset", "seq = 2", "seq", [&] { cross.reset(2); }, cross_state},
  });
}
