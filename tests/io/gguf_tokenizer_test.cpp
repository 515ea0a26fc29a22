// SpmTokenizer: hand-worked merges, the quadratic reference on random vocabularies and texts,
// and the vocabulary read from GGUF metadata.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "reference/spm_tokenizer_reference.hpp"
#include "support/error_of.hpp"
#include "support/gguf_writer.hpp"
#include "support/random.hpp"
#include "tformer/io/gguf_tokenizer.hpp"

using tformer::SpmTokenizer;
using Catch::Matchers::Contains;

namespace {
const std::string sp = "\xe2\x96\x81";  // "▁"

// 0 <unk>, 1 <s>, 2 </s>, 3 ▁, 4 a, 5 b, 6 ab, 7 ▁a, 8 <0x63> (c), 9 ba
SpmTokenizer small_vocab() {
  return SpmTokenizer({"<unk>", "<s>", "</s>", sp, "a", "b", "ab", sp + "a", "<0x63>", "ba"},
                      {0, 0, 0, 0, 0, 0, -1, -2, 0, -1}, 1, 2, true, true,
                      {2, 3, 3, 1, 1, 1, 1, 1, 6, 1});
}
}  // namespace

TEST_CASE("tokenizer/spm: merges by score, leftmost first, with byte fallback", "[io][tokenizer]") {
  const SpmTokenizer tok = small_vocab();
  // "▁abab": ab (-1, left 1), ba (-1, left 2) and ab (-1, left 3) tie: the leftmost merges, which
  // leaves ba stale; then the second ab. ▁a (-2) lost its a to the first merge.
  CHECK(tok.encode("abab") == std::vector<std::int32_t>{1, 3, 6, 6});
  // "▁c▁a": c is no piece, its byte token is; ▁a merges.
  CHECK(tok.encode("c a") == std::vector<std::int32_t>{1, 3, 8, 7});
  CHECK(tok.encode("") == std::vector<std::int32_t>{1});
  // é (C3 A9) is no piece and has no byte tokens here.
  CHECK_THAT(test::error_of([&] { (void)tok.encode("\xc3\xa9"); }),
             Contains("byte 195") && Contains("<0xC3>"));
  // Decoding: ▁ as a space, dropped after BOS; a byte token is its byte; control tokens nothing.
  CHECK(tok.decode(1, 7) == "a");
  CHECK(tok.decode(6, 7) == " a");
  CHECK(tok.decode(6, 8) == "c");
  CHECK(tok.decode(6, 2).empty());
  CHECK_THROWS_WITH(tok.decode(0, 10), Contains("token"));
}

TEST_CASE("tokenizer/spm: user-defined pieces are cut first, EOS when asked, token types decode",
          "[io][tokenizer]") {
  // 0 <unk>, 1 <s>, 2 </s>, 3 ▁, 4 a, 5 b, 6 ab, 7 ▁a, 8 <T> (user-defined), 9 <TT> (user-
  // defined, longer: cut first), 10 <0x3C> ('<'), 11 <0x54> ('T'), 12 <0x3E> ('>'), 13 ▁ab (unused)
  const SpmTokenizer tok({"<unk>", "<s>", "</s>", sp, "a", "b", "ab", sp + "a", "<T>", "<TT>",
                          "<0x3C>", "<0x54>", "<0x3E>", sp + "ab"},
                         {0, 0, 0, 0, 0, 0, -1, -2, 0, 0, 0, 0, 0, -3},
                         1, 2, true, true, {2, 3, 3, 1, 1, 1, 1, 1, 4, 4, 6, 6, 6, 5},
                         /*add_eos=*/true);
  // "ab<TT>a<T>": runs "ab" and "a", each after the start or a user-defined piece, so each gets
  // the dummy prefix. "▁ab": ab (-1) merges before ▁a (-2), then ▁ + ab is the piece ▁ab (an
  // unused-typed piece still merges). "▁a": ▁a.
  CHECK(tok.encode("ab<TT>a<T>") == std::vector<std::int32_t>{1, 13, 9, 7, 8, 2});
  // Without the user-defined pieces the brackets are bytes: "<TT>" is < T T >.
  const SpmTokenizer plain({"<unk>", "<s>", "</s>", sp, "<0x3C>", "<0x54>", "<0x3E>"}, {0, 0, 0, 0, 0, 0, 0},
                           1, 2, false, false, {2, 3, 3, 1, 6, 6, 6});
  CHECK(plain.encode("<TT>") == std::vector<std::int32_t>{4, 5, 5, 6});
  CHECK(tok.encode("") == std::vector<std::int32_t>{1, 2});
  CHECK(tok.decode(3, 9) == "<TT>");   // user-defined: as stored
  CHECK(tok.decode(3, 13).empty());    // unused
  CHECK(tok.decode(3, 0).empty());     // unknown
  CHECK(tok.decode(3, 10) == "<");     // byte
  // Without token types every token is normal: a byte piece decodes as its text (llama.cpp).
  CHECK(plain.decode(3, 4) == "<");
  const SpmTokenizer untyped({"<unk>", "<s>", "</s>", "<0x0a>"}, {0, 0, 0, 0}, 1, 2, true, true);
  CHECK(untyped.decode(3, 3) == "<0x0a>");
  CHECK_THAT(test::error_of([] { SpmTokenizer({"a", "b", "a"}, {0, 0, 0}, -1, -1, false, false); }),
             Contains("pieces[2]") && Contains("token 0"));
}

TEST_CASE("tokenizer/spm: equals the quadratic reference on random vocabularies and texts",
          "[io][tokenizer]") {
  // ASCII, a space, 2- and 3-byte characters, and bytes that are not UTF-8 (a lead byte without
  // its continuation, 0xFF): every text encodes, through byte tokens where need be.
  const std::vector<std::string> chars = {"a", "b", "c", " ", "\xc3\xa9", "\xe4\xb8\x80", "\xc3", "\xff",
                                          "\xf8"};
  for (std::uint64_t seed = 1; seed <= 150; ++seed) {
    test::Random rng(seed);
    std::vector<std::string> pieces = {"<unk>", "<s>", "</s>"};
    for (int b = 0; b < 256; ++b) {
      char name[8];
      std::snprintf(name, sizeof name, "<0x%02X>", b);
      pieces.push_back(name);
    }
    std::vector<float> scores(pieces.size(), 0.0f);
    const int extra = rng.integer(0, 40);
    for (int i = 0; i < extra; ++i) {  // pieces of 1 to 4 characters; scores with ties
      std::string p;
      for (int n = rng.integer(1, 4); n > 0; --n) {
        const std::string& c = chars[std::size_t(rng.integer(0, int(chars.size()) - 1))];
        p += c == " " ? sp : c;
      }
      if (std::find(pieces.begin(), pieces.end(), p) != pieces.end()) continue;  // no duplicates
      pieces.push_back(p);
      scores.push_back(float(rng.integer(-5, 0)));
    }
    const bool prefix = rng.integer(0, 1) == 1;
    const SpmTokenizer tok(pieces, scores, 1, 2, true, prefix);
    for (int k = 0; k < 5; ++k) {
      std::string text;
      for (int n = rng.integer(0, 30); n > 0; --n) text += chars[std::size_t(rng.integer(0, int(chars.size()) - 1))];
      INFO("seed " << seed << " text '" << text << "'");
      REQUIRE(tok.encode(text) == ref::spm_encode(pieces, scores, text, 1, prefix));
    }
  }
}

namespace {
// A GGUF file with the tokenizer keys of `tok`'s vocabulary (small_vocab) and `model`.
std::vector<std::byte> vocab_file(const std::string& model, std::size_t scores, std::uint32_t bos) {
  const std::vector<std::string> pieces = {"<unk>", "<s>", "</s>", sp, "a", "b", "ab", sp + "a", "<0x63>", "ba"};
  const std::vector<float> score = {0, 0, 0, 0, 0, 0, -1, -2, 0, -1};
  const std::vector<std::int32_t> types = {2, 3, 3, 1, 1, 1, 1, 1, 6, 1};
  const auto bytes = test::gguf::build({}, 7, [&](test::gguf::Writer& w) {
    w.kv_str("tokenizer.ggml.model", model);
    w.str("tokenizer.ggml.tokens");
    w.u32(9);
    w.u32(8);
    w.u64(pieces.size());
    for (const auto& p : pieces) w.str(p);
    w.str("tokenizer.ggml.scores");
    w.u32(9);
    w.u32(6);
    w.u64(scores);
    for (std::size_t i = 0; i < scores; ++i) w.f32(score[i % score.size()]);
    w.str("tokenizer.ggml.token_type");
    w.u32(9);
    w.u32(5);
    w.u64(types.size());
    for (std::int32_t t : types) w.i32(t);
    w.kv_u32("tokenizer.ggml.bos_token_id", bos);
    w.kv_u32("tokenizer.ggml.eos_token_id", 2);
    w.str("tokenizer.ggml.add_space_prefix");
    w.u32(7);
    w.u8(1);
  });
  std::vector<std::byte> out(bytes.size());
  std::memcpy(out.data(), bytes.data(), bytes.size());
  return out;
}
}  // namespace

TEST_CASE("tokenizer/spm: the vocabulary from GGUF metadata", "[io][tokenizer]") {
  const auto good = vocab_file("llama", 10, 1);
  const auto tok = SpmTokenizer::from_gguf(tformer::GgufFile::parse(good, "v.gguf"));
  CHECK((tok.vocab_size() == 10 && tok.bos() == 1 && tok.eos() == 2 && tok.add_bos()));
  const SpmTokenizer direct = small_vocab();
  for (const char* text : {"abab", "c a", "ba ab", ""}) CHECK(tok.encode(text) == direct.encode(text));
  CHECK(tok.decode(6, 8) == "c");
  const auto error = [](const std::vector<std::byte>& bytes) {
    return test::error_of([&] { (void)SpmTokenizer::from_gguf(tformer::GgufFile::parse(bytes, "bad.gguf")); });
  };
  CHECK_THAT(error(vocab_file("gpt2", 10, 1)), Contains("bad.gguf") && Contains("tokenizer.ggml.model") &&
                                                    Contains("gpt2"));
  CHECK_THAT(error(vocab_file("llama", 9, 1)), Contains("tokenizer.ggml.scores") && Contains("got 9"));
  CHECK_THAT(error(vocab_file("llama", 10, 10)), Contains("tokenizer.ggml.bos_token_id") && Contains("got 10"));
}
