// llama2.c's encode as the tokenizer did it before issue 15: run.c's quadratic loop, kept as the
// reference for Llama2cTokenizer::encode (tests/io, tests/fuzz). Each step scans every adjacent
// pair, merges the one whose merged piece has the highest score (strictly above -1e10, as run.c's
// best_score starts there; the leftmost on ties) and erases from a vector.
//
// It has the old behaviour for small vocabularies too: BOS (1), EOS (2) and byte-fallback ids
// (byte + 3) are emitted even when they are >= vocab_size, and such ids take no part in merges.
// The library now raises tformer::Error where this returns an id outside [0, vocab_size).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace ref {

// pieces[i] and scores[i] are token i's; the first of equal pieces owns the string.
inline std::vector<std::int32_t> llama2c_encode(const std::vector<std::string>& pieces,
                                                const std::vector<float>& scores,
                                                std::string_view text, bool add_bos, bool add_eos) {
  const std::int32_t bos = 1, eos = 2;
  const std::int64_t vocab = std::int64_t(pieces.size());
  std::unordered_map<std::string, std::int32_t> ids;
  for (std::size_t i = 0; i < pieces.size(); ++i) ids.try_emplace(pieces[i], std::int32_t(i));
  std::vector<std::int32_t> t;
  if (add_bos) t.push_back(bos);
  if (!text.empty()) {
    if (auto it = ids.find(" "); it != ids.end()) t.push_back(it->second);
  }
  for (std::size_t i = 0; i < text.size();) {
    std::size_t n = 1;  // a UTF-8 code point: its lead byte and up to 3 continuation bytes
    while (i + n < text.size() && n < 4 && (static_cast<unsigned char>(text[i + n]) & 0xC0) == 0x80)
      ++n;
    if (auto it = ids.find(std::string(text.substr(i, n))); it != ids.end()) {
      t.push_back(it->second);
    } else {
      for (std::size_t j = 0; j < n; ++j)
        t.push_back(std::int32_t(static_cast<unsigned char>(text[i + j])) + 3);
    }
    i += n;
  }
  const std::size_t first = add_bos ? 1 : 0;  // BOS takes no part in merges
  for (;;) {
    float best = -1e10f;
    std::size_t at = t.size();
    std::int32_t merged = -1;
    for (std::size_t i = first; i + 1 < t.size(); ++i) {
      if (t[i] < 0 || t[i] >= vocab || t[i + 1] < 0 || t[i + 1] >= vocab) continue;
      const auto it = ids.find(pieces[std::size_t(t[i])] + pieces[std::size_t(t[i + 1])]);
      if (it != ids.end() && scores[std::size_t(it->second)] > best) {
        best = scores[std::size_t(it->second)];
        at = i;
        merged = it->second;
      }
    }
    if (merged < 0) break;
    t[at] = merged;
    t.erase(t.begin() + std::ptrdiff_t(at) + 1);
  }
  if (add_eos) t.push_back(eos);
  return t;
}

}  // namespace ref
