// SentencePiece tokenization from a GGUF file's vocabulary (tokenizer.ggml.model "llama": Llama
// 1/2, Mistral, Mixtral, Gemma as llama.cpp converts them), as llama.cpp's SPM tokenizer runs it:
//
//   const SpmTokenizer tok = SpmTokenizer::from_gguf(GgufFile::open("mistral-7b.gguf"));
//   std::vector<std::int32_t> ids = tok.encode("Once upon a time");  // BOS first if the file says
//
// encode: " " is prepended when add_space_prefix (the dummy prefix) and the text is not empty;
// every space becomes "▁" (U+2581); each UTF-8 character starts as one symbol; then the adjacent
// pair whose concatenation is a piece of the highest score merges, the leftmost first among
// equal scores, until no pair is a piece; a symbol that is not a piece becomes its bytes'
// tokens "<0xXX>". No special-token text is parsed ("<s>" in the text is three characters).
// BPE vocabularies (tokenizer.ggml.model "gpt2": Llama 3, Qwen) are refused: their
// pre-tokenizers are not implemented.
#pragma once

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
  static constexpr std::int32_t normal = 1, control = 3, byte_type = 6;

  // pieces[i] is token i's text ("▁" for spaces), scores[i] its merge score; bos and eos ids
  // (-1: none) must be tokens. token_types: empty, or one llama.cpp type per token.
  SpmTokenizer(std::vector<std::string> pieces, std::vector<float> scores, std::int32_t bos,
               std::int32_t eos, bool add_bos, bool add_space_prefix,
               std::vector<std::int32_t> token_types = {})
      : pieces_(std::move(pieces)),
        scores_(std::move(scores)),
        types_(std::move(token_types)),
        bos_(bos),
        eos_(eos),
        add_bos_(add_bos),
        add_space_prefix_(add_space_prefix) {
    constexpr const char* where = "SpmTokenizer";
    check(!pieces_.empty() && pieces_.size() <= std::size_t(INT32_MAX), where, "pieces",
          "1 to 2^31 - 1 tokens", pieces_.size());
    check_eq(where, "scores size (= pieces)", pieces_.size(), scores_.size());
    if (!types_.empty()) check_eq(where, "token_types size (= pieces, or 0)", pieces_.size(), types_.size());
    check(bos_ >= -1 && bos_ < vocab_size(), where, "bos", "-1 or a token id", bos_);
    check(eos_ >= -1 && eos_ < vocab_size(), where, "eos", "-1 or a token id", eos_);
    check(!add_bos_ || bos_ >= 0, where, "add_bos", "false without a BOS token", add_bos_);
    // llama.cpp's token_to_id: a later equal piece takes the string.
    for (std::size_t i = 0; i < pieces_.size(); ++i) ids_.insert_or_assign(pieces_[i], std::int32_t(i));
  }

  // From tokenizer.ggml.model ("llama"), .tokens, .scores (0 when absent), .token_type
  // (optional), .bos_token_id (1), .eos_token_id (2), .add_bos_token (true) and
  // .add_space_prefix (true), llama.cpp's defaults for an SPM vocabulary.
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
    const auto flag = [&](const char* key) { return g.find(key) ? g.get<bool>(key) : true; };
    const std::int32_t bos = id("tokenizer.ggml.bos_token_id", pieces.size() > 1 ? 1 : -1);
    const std::int32_t eos = id("tokenizer.ggml.eos_token_id", pieces.size() > 2 ? 2 : -1);
    return SpmTokenizer(std::move(pieces), std::move(scores), bos, eos,
                        flag("tokenizer.ggml.add_bos_token") && bos >= 0,
                        flag("tokenizer.ggml.add_space_prefix"), std::move(types));
  }

  index vocab_size() const noexcept { return index(pieces_.size()); }
  std::int32_t bos() const noexcept { return bos_; }
  std::int32_t eos() const noexcept { return eos_; }
  bool add_bos() const noexcept { return add_bos_; }
  std::string_view piece(std::int32_t id) const {
    check_index("SpmTokenizer::piece", "id", id, vocab_size());
    return pieces_[std::size_t(id)];
  }

  // See the header comment. Raises tformer::Error naming the byte when a character that is not
  // a piece has a byte without its "<0xXX>" token.
  std::vector<std::int32_t> encode(std::string_view text) const {
    std::string s;
    if (add_space_prefix_ && !text.empty()) s = " ";
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
      const auto lead = static_cast<unsigned char>(escaped[i]);
      const std::size_t len = lead < 0x80 ? 1 : lead >> 5 == 6 ? 2 : lead >> 4 == 14 ? 3 : lead >> 3 == 30 ? 4 : 1;
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

    std::vector<std::int32_t> out;
    if (add_bos_) out.push_back(bos_);
    for (int i = sym.empty() ? -1 : 0; i >= 0; i = sym[std::size_t(i)].next) {
      const Symbol& y = sym[std::size_t(i)];
      const std::string text_of(escaped.data() + y.at, y.n);
      if (const auto it = ids_.find(text_of); it != ids_.end()) {
        out.push_back(it->second);
        continue;
      }
      for (std::size_t k = 0; k < y.n; ++k) out.push_back(byte_token(escaped, y.at + k));
    }
    return out;
  }

  // Token `token`'s text after `prev`: "▁" as a space, a byte token as its byte, a control
  // token (BOS, EOS, …) as nothing; after BOS, the dummy prefix's space is dropped.
  std::string decode(std::int32_t prev, std::int32_t token) const {
    check_index("SpmTokenizer::decode", "token", token, vocab_size());
    const std::size_t t = std::size_t(token);
    if (!types_.empty() && types_[t] == control) return "";
    const std::string& p = pieces_[t];
    if (int b = byte_of(p); b >= 0 && (types_.empty() || types_[t] == byte_type))
      return std::string(1, char(b));
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
  // "<0xXX>" → XX; -1 for any other piece.
  static int byte_of(std::string_view p) {
    if (p.size() != 6 || p.substr(0, 3) != "<0x" || p[5] != '>') return -1;
    const auto hex = [](char c) {
      return c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
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
  std::int32_t bos_, eos_;
  bool add_bos_, add_space_prefix_;
};

}  // namespace TFORMER_ARCH_NS
}  // namespace tformer
