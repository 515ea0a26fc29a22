// SentencePiece tokenization from a GGUF file's vocabulary (tokenizer.ggml.model "llama": Llama
// 1/2, Mistral, Mixtral, Gemma as llama.cpp converts them), as llama.cpp's SPM tokenizer runs it
// (llama_tokenize with add_special, without parse_special):
//
//   const SpmTokenizer tok = SpmTokenizer::from_gguf(GgufFile::open("mistral-7b.gguf"));
//   std::vector<std::int32_t> ids = tok.encode("Once upon a time");  // BOS first if the file says
//
// encode: the text is first cut at user-defined pieces (token type 4, e.g. Gemma's
// <start_of_turn>; the longest first), which become their ids; each remaining run gets " "
// prepended when add_space_prefix (at the start, and after a user-defined piece), every space
// becomes "▁" (U+2581), each UTF-8 character (its length from the lead byte's top 4 bits, as
// llama.cpp's unicode_len_utf8) starts as one symbol; then the adjacent pair whose concatenation
// is a piece of the highest score merges, the leftmost first among equal scores, until no pair
// is a piece; a symbol that is not a piece becomes its bytes' tokens "<0xXX>". BOS first and EOS
// last when the file asks (add_bos_token, add_eos_token). Control-token text ("<s>") is not
// parsed: it is three characters. BPE vocabularies (tokenizer.ggml.model "gpt2": Llama 3, Qwen)
// are refused: their pre-tokenizers are not implemented.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <queue>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "tformer/core/error.hpp"
#include "tformer/io/gguf.hpp"

namespace tformer {
inline namespace TFORMER_ARCH_NS {

class SpmTokenizer {
 public:
  // llama.cpp's token types (tokenizer.ggml.token_type).
  static constexpr std::int32_t normal = 1, unknown = 2, control = 3, user_defined = 4,
                                unused = 5, byte_type = 6;

  // pieces[i] is token i's text ("▁" for spaces), scores[i] its merge score; bos and eos ids
  // (-1: none) must be tokens; equal pieces are an error (as llama.cpp's loader). token_types:
  // empty (every token normal), or one llama.cpp type per token.
  SpmTokenizer(std::vector<std::string> pieces, std::vector<float> scores, std::int32_t bos,
               std::int32_t eos, bool add_bos, bool add_space_prefix,
               std::vector<std::int32_t> token_types = {}, bool add_eos = false)
      : pieces_(std::move(pieces)),
        scores_(std::move(scores)),
        types_(std::move(token_types)),
        bos_(bos),
        eos_(eos),
        add_bos_(add_bos),
        add_eos_(add_eos),
        add_space_prefix_(add_space_prefix) {
    constexpr const char* where = "SpmTokenizer";
    check(!pieces_.empty() && pieces_.size() <= std::size_t(INT32_MAX), where, "pieces",
          "1 to 2^31 - 1 tokens", pieces_.size());
    check_eq(where, "scores size (= pieces)", pieces_.size(), scores_.size());
    if (!types_.empty()) check_eq(where, "token_types size (= pieces, or 0)", pieces_.size(), types_.size());
    check(bos_ >= -1 && bos_ < vocab_size(), where, "bos", "-1 or a token id", bos_);
    check(eos_ >= -1 && eos_ < vocab_size(), where, "eos", "-1 or a token id", eos_);
    check(!add_bos_ || bos_ >= 0, where, "add_bos", "false without a BOS token", add_bos_);
    check(!add_eos_ || eos_ >= 0, where, "add_eos", "false without an EOS token", add_eos_);
    for (std::size_t i = 0; i < pieces_.size(); ++i)
      if (!ids_.try_emplace(pieces_[i], std::int32_t(i)).second) [[unlikely]]
        detail::fail_check(where, "pieces[" + std::to_string(i) + "]",
                           "a piece no other token has", "the piece of token " +
                               std::to_string(ids_.at(pieces_[i])));
    // User-defined pieces, cut out of the text before merging: the longest first.
    for (std::size_t i = 0; i < types_.size(); ++i)
      if (types_[i] == user_defined && !pieces_[i].empty()) user_.push_back(std::int32_t(i));
    std::stable_sort(user_.begin(), user_.end(), [&](std::int32_t a, std::int32_t b) {
      return pieces_[std::size_t(a)].size() > pieces_[std::size_t(b)].size();
    });
  }

  // From tokenizer.ggml.model ("llama"), .tokens, .scores (0 when absent), .token_type
  // (optional), .bos_token_id (1), .eos_token_id (2), .add_bos_token (true), .add_eos_token
  // (false) and .add_space_prefix (true): llama.cpp's defaults for an SPM vocabulary.
  static SpmTokenizer from_gguf(const GgufFile& g) {
    const std::string where = "SpmTokenizer::from_gguf: " + g.where();
    const std::string model = g.get<std::string>("tokenizer.ggml.model");
    if (model != "llama") [[unlikely]]
      detail::fail_check(where, "metadata key 'tokenizer.ggml.model'",
                         "llama (SentencePiece; BPE vocabularies are not read yet)", model);
    std::vector<std::string> pieces = g.get<std::vector<std::string>>("tokenizer.ggml.tokens");
    std::vector<float> scores(pieces.size(), 0.0f);
    if (g.find("tokenizer.ggml.scores")) {
      scores = g.get<std::vector<float>>("tokenizer.ggml.scores");
      if (scores.size() != pieces.size()) [[unlikely]]
        detail::fail_check(where, "metadata key 'tokenizer.ggml.scores' size",
                           std::to_string(pieces.size()) + " (the tokens)", scores.size());
    }
    std::vector<std::int32_t> types;
    if (g.find("tokenizer.ggml.token_type")) {
      types = g.get<std::vector<std::int32_t>>("tokenizer.ggml.token_type");
      if (types.size() != pieces.size()) [[unlikely]]
        detail::fail_check(where, "metadata key 'tokenizer.ggml.token_type' size",
                           std::to_string(pieces.size()) + " (the tokens)", types.size());
    }
    const auto id = [&](const char* key, std::int32_t fallback) -> std::int32_t {
      if (!g.find(key)) return fallback;
      const std::uint64_t v = g.get_uint(key);
      if (v >= pieces.size()) [[unlikely]]
        detail::fail_check(where, "metadata key '" + std::string(key) + "'",
                           "a token id < " + std::to_string(pieces.size()), v);
      return std::int32_t(v);
    };
    const auto flag = [&](const char* key, bool fallback) {
      return g.find(key) ? g.get<bool>(key) : fallback;
    };
    const std::int32_t bos = id("tokenizer.ggml.bos_token_id", pieces.size() > 1 ? 1 : -1);
    const std::int32_t eos = id("tokenizer.ggml.eos_token_id", pieces.size() > 2 ? 2 : -1);
    return SpmTokenizer(std::move(pieces), std::move(scores), bos, eos,
                        flag("tokenizer.ggml.add_bos_token", true) && bos >= 0,
                        flag("tokenizer.ggml.add_space_prefix", true), std::move(types),
                        flag("tokenizer.ggml.add_eos_token", false) && eos >= 0);
  }

  index vocab_size() const noexcept { return index(pieces_.size()); }
  std::int32_t bos() const noexcept { return bos_; }
  std::int32_t eos() const noexcept { return eos_; }
  bool add_bos() const noexcept { return add_bos_; }
  bool add_eos() const noexcept { return add_eos_; }
  std::string_view piece(std::int32_t id) const {
    check_index("SpmTokenizer::piece", "id", id, vocab_size());
    return pieces_[std::size_t(id)];
  }

  // See the header comment. Raises tformer::Error naming the byte when a character that is not
  // a piece has a byte without its "<0xXX>" token.
  std::vector<std::int32_t> encode(std::string_view text) const {
    // Fragments: runs of text, and user-defined pieces (id >= 0), cut longest piece first.
    struct Fragment {
      std::string_view text;
      std::int32_t id;
    };
    std::vector<Fragment> parts;
    if (!text.empty()) parts.push_back({text, -1});
    for (std::int32_t u : user_) {
      const std::string& p = pieces_[std::size_t(u)];
      std::vector<Fragment> next;
      for (const Fragment& f : parts) {
        if (f.id >= 0) {
          next.push_back(f);
          continue;
        }
        std::size_t from = 0;
        for (std::size_t at; (at = f.text.find(p, from)) != std::string_view::npos; from = at + p.size()) {
          if (at > from) next.push_back({f.text.substr(from, at - from), -1});
          next.push_back({{}, u});
        }
        if (from < f.text.size()) next.push_back({f.text.substr(from), -1});
      }
      parts = std::move(next);
    }
    std::vector<std::int32_t> out;
    if (add_bos_) out.push_back(bos_);
    bool after_piece = true;  // the text's start, or a user-defined piece: a space prefix
    for (const Fragment& f : parts) {
      if (f.id >= 0) {
        out.push_back(f.id);
        after_piece = true;
        continue;
      }
      encode_run(f.text, add_space_prefix_ && after_piece, out);
      after_piece = false;
    }
    if (add_eos_) out.push_back(eos_);
    return out;
  }

  // Token `token`'s text after `prev`, as llama.cpp's token_to_piece: "▁" as a space in normal
  // tokens, a byte token (type 6) as its byte, a user-defined token as stored, control, unknown
  // and unused tokens as nothing. After BOS the dummy prefix's space is dropped, as
  // SentencePiece's decode does (llama.cpp's token_to_piece keeps it).
  std::string decode(std::int32_t prev, std::int32_t token) const {
    check_index("SpmTokenizer::decode", "token", token, vocab_size());
    const std::size_t t = std::size_t(token);
    const std::int32_t type = types_.empty() ? normal : types_[t];
    const std::string& p = pieces_[t];
    if (type == control || type == unknown || type == unused) return "";
    if (type == user_defined) return p;
    if (const int b = byte_of(p); b >= 0 && type == byte_type) return std::string(1, char(b));
    std::string s;
    for (std::size_t i = 0; i < p.size();) {
      if (p.compare(i, 3, "\xe2\x96\x81") == 0) {
        s += ' ';
        i += 3;
      } else {
        s += p[i++];
      }
    }
    if (prev == bos_ && bos_ >= 0 && add_space_prefix_ && !s.empty() && s[0] == ' ') s.erase(0, 1);
    return s;
  }

 private:
  // One run of text (no user-defined piece in it) merged into `out`; `prefix`: " " first.
  void encode_run(std::string_view text, bool prefix, std::vector<std::int32_t>& out) const {
    std::string s;
    if (prefix) s = " ";
    s.append(text);
    std::string escaped;  // " " → "▁"
    for (char c : s) escaped += c == ' ' ? std::string_view("\xe2\x96\x81") : std::string_view(&c, 1);

    // One symbol per UTF-8 character (its length from the lead byte, cut at the end).
    struct Symbol {
      std::size_t at, n;
      int prev, next;
    };
    std::vector<Symbol> sym;
    for (std::size_t i = 0; i < escaped.size();) {
      static constexpr std::size_t len_of[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
      const std::size_t len = len_of[static_cast<unsigned char>(escaped[i]) >> 4];
      const std::size_t n = std::min(len, escaped.size() - i);
      sym.push_back({i, n, int(sym.size()) - 1, int(sym.size()) + 1});
      i += n;
    }
    if (!sym.empty()) sym.back().next = -1;

    // Candidate merges: the highest score first, then the leftmost (llama.cpp's comparator).
    struct Bigram {
      int left, right;
      float score;
      std::size_t size;
    };
    const auto later = [](const Bigram& a, const Bigram& b) {
      return a.score < b.score || (a.score == b.score && a.left > b.left);
    };
    std::priority_queue<Bigram, std::vector<Bigram>, decltype(later)> queue(later);
    const auto try_add = [&](int left, int right) {
      if (left < 0 || right < 0) return;
      const std::string_view joined(escaped.data() + sym[std::size_t(left)].at,
                                    sym[std::size_t(left)].n + sym[std::size_t(right)].n);
      const auto it = ids_.find(std::string(joined));
      if (it == ids_.end()) return;
      queue.push({left, right, scores_[std::size_t(it->second)], joined.size()});
    };
    for (std::size_t i = 1; i < sym.size(); ++i) try_add(int(i) - 1, int(i));
    while (!queue.empty()) {
      const Bigram b = queue.top();
      queue.pop();
      Symbol& l = sym[std::size_t(b.left)];
      Symbol& r = sym[std::size_t(b.right)];
      if (l.n == 0 || r.n == 0 || l.n + r.n != b.size) continue;  // stale: a side merged since
      l.n += r.n;
      r.n = 0;
      l.next = r.next;
      if (r.next >= 0) sym[std::size_t(r.next)].prev = b.left;
      try_add(l.prev, b.left);
      try_add(b.left, l.next);
    }

    for (int i = sym.empty() ? -1 : 0; i >= 0; i = sym[std::size_t(i)].next) {
      const Symbol& y = sym[std::size_t(i)];
      const std::string text_of(escaped.data() + y.at, y.n);
      if (const auto it = ids_.find(text_of); it != ids_.end()) {
        out.push_back(it->second);
        continue;
      }
      for (std::size_t k = 0; k < y.n; ++k) out.push_back(byte_token(escaped, y.at + k));
    }
  }

  // "<0xXX>" → XX (either case, as llama.cpp's strtol); -1 for any other piece.
  static int byte_of(std::string_view p) {
    if (p.size() != 6 || p.substr(0, 3) != "<0x" || p[5] != '>') return -1;
    const auto hex = [](char c) {
      return c >= '0' && c <= '9'   ? c - '0'
             : c >= 'A' && c <= 'F' ? c - 'A' + 10
             : c >= 'a' && c <= 'f' ? c - 'a' + 10
                                    : -1;
    };
    const int hi = hex(p[3]), lo = hex(p[4]);
    return hi >= 0 && lo >= 0 ? hi * 16 + lo : -1;
  }
  std::int32_t byte_token(std::string_view text, std::size_t at) const {
    char name[8];
    const auto b = static_cast<unsigned char>(text[at]);
    std::snprintf(name, sizeof name, "<0x%02X>", b);
    const auto it = ids_.find(name);
    if (it == ids_.end()) [[unlikely]]
      detail::fail_check("SpmTokenizer::encode",
                         "byte " + std::to_string(b) + " at offset " + std::to_string(at) +
                             " of the escaped text",
                         "a piece, or its byte token " + std::string(name), "neither");
    return it->second;
  }

  std::vector<std::string> pieces_;
  std::vector<float> scores_;
  std::vector<std::int32_t> types_;
  std::unordered_map<std::string, std::int32_t> ids_;
  std::vector<std::int32_t> user_;  // user-defined tokens, the longest piece first
  std::int32_t bos_, eos_;
  bool add_bos_, add_eos_, add_space_prefix_;
};

}  // namespace TFORMER_ARCH_NS
}  // namespace tformer
