#include <catch2/catch.hpp>

#include <vector>

#include "tformer/core/views.hpp"

using Catch::Matchers::Contains;
using tformer::HeadsView;

TEST_CASE("core/views: HeadsView addresses [tokens, heads, head_dim] with a token stride",
          "[core]") {
  std::vector<float> qkv(3 * 10 * 4);  // T = 3, fused row of (4 + 3 + 3) heads of dim 4
  HeadsView<float> k(qkv.data() + 4 * 4, 3, 3, 4, 10 * 4);
  CHECK(k.row(0, 0) == qkv.data() + 16);
  CHECK(k.row(2, 1) == qkv.data() + 2 * 40 + 16 + 4);
  CHECK(k.size() == 36);
  CHECK(k.row_span(1, 2).size() == 4);
  HeadsView<const float> ck = k;  // converts to const
  CHECK(ck.row(1, 1) == k.row(1, 1));
  auto tail = k.tokens_slice(1, 2);
  CHECK(tail.tokens() == 2);
  CHECK(tail.row(0, 0) == k.row(1, 0));
  HeadsView<float> dense(qkv.data(), 3, 10, 4);
  CHECK(dense.token_stride() == 40);
}

TEST_CASE("core/views: check_view rejects bad shapes", "[core][errors]") {
  std::vector<float> buf(64);
  CHECK_THROWS_WITH(tformer::check_view("f", "q", HeadsView<float>(buf.data(), -1, 2, 4)),
                    Contains("f: q shape") && Contains("non-negative"));
  CHECK_THROWS_WITH(tformer::check_view("f", "q", HeadsView<float>(buf.data(), 2, 2, 4, 7)),
                    Contains("token_stride >= heads * head_dim") && Contains("token_stride 7"));
  CHECK_THROWS_WITH(tformer::check_view("f", "q", HeadsView<float>(nullptr, 2, 2, 4)),
                    Contains("q data"));
  CHECK_NOTHROW(tformer::check_view("f", "q", HeadsView<float>(nullptr, 0, 2, 4)));
}
