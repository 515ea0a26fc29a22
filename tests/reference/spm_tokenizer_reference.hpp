// SentencePiece encoding written from its definition, the quadratic way (tests/io's reference for
// tformer::SpmTokenizer, which merges from a priority queue as llama.cpp does): the dummy prefix,
// spaces as "▁", one symbol per UTF-8 character (length from its lead byte); then, while some
// adjacent pair's concatenation is a piece, merge the pair of the highest score, the leftmost
// among equal scores; symbols that are not pieces become their bytes' "<0xXX>" tokens (-1 when
// the vocabulary lacks one). A character's length: 1 for lead bytes below 0xC0, 2 for 0xC0 to
// 0xDF, 3 for 0xE0 to 0xEF, 4 from 0xF0 (llama.cpp's unicode_len_utf8), cut at the end. No
// user-defined pieces (SpmTokenizer's own test covers them).
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace ref {

inline std::vector<std::int32_t> spm_encode(const std::vector<std::string>& pieces,
                                            const std::vector<float>& scores, std::string_view text,
                                            std::int32_t bos, bool add_space_prefix) {
  std::unordered_map<std::string, std::int32_t> ids;
  for (std::size_t i = 0; i < pieces.size(); ++i) ids.emplace(pieces[i], std::int32_t(i));
  std::string s = add_space_prefix && !text.empty() ? " " : "";
  s += text;
  std::string e;
  for (char c : s) e += c == ' ' ? std::string("\xe2\x96\x81") : std::string(1, c);
  std::vector<std::string> sym;
  for (std::size_t i = 0; i < e.size();) {
    const unsigned char c = static_cast<unsigned char>(e[i]);
    std::size_t n = c < 0xC0 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
    if (n > e.size() - i) n = e.size() - i;
    sym.push_back(e.substr(i, n));
    i += n;
  }
  for (;;) {
    std::size_t best = sym.size();
    float best_score = 0;
    for (std::size_t i = 0; i + 1 < sym.size(); ++i) {
      const auto it = ids.find(sym[i] + sym[i + 1]);
      if (it == ids.end()) continue;
      const float sc = scores[std::size_t(it->second)];
      if (best == sym.size() || sc > best_score) {
        best = i;
        best_score = sc;
      }
    }
    if (best == sym.size()) break;
    sym[best] += sym[best + 1];
    sym.erase(sym.begin() + std::ptrdiff_t(best) + 1);
  }
  std::vector<std::int32_t> out;
  if (bos >= 0) out.push_back(bos);
  for (const std::string& y : sym) {
    if (const auto it = ids.find(y); it != ids.end()) {
      out.push_back(it->second);
      continue;
    }
    for (unsigned char b : y) {
      char name[8];
      std::snprintf(name, sizeof name, "<0x%02X>", b);
      const auto it = ids.find(name);
      out.push_back(it == ids.end() ? -1 : it->second);
    }
  }
  return out;
}

}  // namespace ref
