#include <gtest/gtest.h>

#include <jwt.h>

#include "domain/token.hpp"

namespace vote::domain {
namespace {

using namespace std::chrono_literals;

struct FakeClock {
  TimePoint now = TimePoint{} + std::chrono::hours(24 * 365 * 56);
  Clock Get() {
    return [this] { return now; };
  }
};

TEST(TokenCodecTest, IssuedTokenVerifiesToItsSubject) {
  FakeClock clock;
  TokenCodec codec("secret-key", 3600s, "vote", clock.Get());
  const auto issued = codec.Issue(42);
  EXPECT_EQ(issued.expires_at, clock.now + 3600s);
  EXPECT_EQ(codec.Verify(issued.token), std::optional<std::int64_t>(42));
}

TEST(TokenCodecTest, ExpiredTokenIsRefused) {
  FakeClock clock;
  TokenCodec codec("secret-key", 60s, "vote", clock.Get());
  const auto issued = codec.Issue(7);
  clock.now += 59s;
  EXPECT_TRUE(codec.Verify(issued.token).has_value());
  clock.now += 1s;
  EXPECT_FALSE(codec.Verify(issued.token).has_value());
}

TEST(TokenCodecTest, TokenSignedWithAnotherKeyIsRefused) {
  FakeClock clock;
  TokenCodec mine("secret-key", 60s, "vote", clock.Get());
  TokenCodec theirs("other-key", 60s, "vote", clock.Get());
  EXPECT_FALSE(mine.Verify(theirs.Issue(1).token).has_value());
}

TEST(TokenCodecTest, TokenOfAnotherIssuerIsRefused) {
  FakeClock clock;
  TokenCodec mine("secret-key", 60s, "vote", clock.Get());
  TokenCodec other("secret-key", 60s, "someone-else", clock.Get());
  EXPECT_FALSE(mine.Verify(other.Issue(1).token).has_value());
}

TEST(TokenCodecTest, UnsignedAlgNoneTokenIsRefused) {
  FakeClock clock;
  TokenCodec codec("secret-key", 60s, "vote", clock.Get());
  jwt_t* raw = nullptr;
  ASSERT_EQ(jwt_new(&raw), 0);
  jwt_add_grant(raw, "sub", "1");
  jwt_add_grant(raw, "iss", "vote");
  jwt_add_grant_int(raw, "exp", std::chrono::duration_cast<std::chrono::seconds>(
                                    (clock.now + 60s).time_since_epoch()).count());
  char* token = jwt_encode_str(raw);  // alg none
  ASSERT_NE(token, nullptr);
  EXPECT_FALSE(codec.Verify(token).has_value());
  free(token);
  jwt_free(raw);
}

// A well-signed HS256 token with the given extra integer claim, valid for an hour from `now`.
std::string SignedWith(const FakeClock& clock, const char* claim, std::int64_t value) {
  const auto seconds = [](TimePoint t) {
    return std::chrono::duration_cast<std::chrono::seconds>(t.time_since_epoch()).count();
  };
  jwt_t* raw = nullptr;
  EXPECT_EQ(jwt_new(&raw), 0);
  jwt_add_grant(raw, "sub", "1");
  jwt_add_grant(raw, "iss", "vote");
  jwt_add_grant_int(raw, "exp", seconds(clock.now + 3600s));
  jwt_add_grant_int(raw, claim, value);
  const std::string key = "secret-key";
  jwt_set_alg(raw, JWT_ALG_HS256, reinterpret_cast<const unsigned char*>(key.data()), static_cast<int>(key.size()));
  char* encoded = jwt_encode_str(raw);
  std::string token = encoded != nullptr ? encoded : "";
  free(encoded);
  jwt_free(raw);
  return token;
}

TEST(TokenCodecTest, TokenNotYetValidIsRefusedUntilItsNbf) {
  FakeClock clock;
  TokenCodec codec("secret-key", 60s, "vote", clock.Get());
  const auto nbf = std::chrono::duration_cast<std::chrono::seconds>((clock.now + 600s).time_since_epoch()).count();
  const auto token = SignedWith(clock, "nbf", nbf);
  EXPECT_FALSE(codec.Verify(token).has_value());
  clock.now += 600s;
  EXPECT_EQ(codec.Verify(token), std::optional<std::int64_t>(1));
}

TEST(TokenCodecTest, TokenIssuedInTheFutureIsRefusedBeyondTheClockSkew) {
  FakeClock clock;
  TokenCodec codec("secret-key", 60s, "vote", clock.Get());
  const auto at = [&clock](std::chrono::seconds ahead) {
    return std::chrono::duration_cast<std::chrono::seconds>((clock.now + ahead).time_since_epoch()).count();
  };
  EXPECT_FALSE(codec.Verify(SignedWith(clock, "iat", at(3600s))).has_value());
  EXPECT_FALSE(codec.Verify(SignedWith(clock, "iat", at(31s))).has_value());
  EXPECT_TRUE(codec.Verify(SignedWith(clock, "iat", at(5s))).has_value());
  EXPECT_TRUE(codec.Verify(SignedWith(clock, "iat", at(-5s))).has_value());
}

TEST(TokenCodecTest, TruncatedOrGarbageTokensAreRefused) {
  FakeClock clock;
  TokenCodec codec("secret-key", 60s, "vote", clock.Get());
  const auto token = codec.Issue(5).token;
  EXPECT_FALSE(codec.Verify(token.substr(0, token.size() - 3)).has_value());
  EXPECT_FALSE(codec.Verify(token.substr(0, token.find('.'))).has_value());
  EXPECT_FALSE(codec.Verify("").has_value());
  EXPECT_FALSE(codec.Verify("not a token").has_value());
  EXPECT_FALSE(codec.Verify(std::string(10000, 'a')).has_value());
}

TEST(VerifiedTokensTest, RemembersAValidTokenUntilItExpires) {
  FakeClock clock;
  TokenCodec codec("secret-key", 60s, "vote", clock.Get());
  VerifiedTokens tokens(codec, 2);
  const auto issued = codec.Issue(9);
  EXPECT_EQ(tokens.Verify(issued.token), std::optional<std::int64_t>(9));
  clock.now += 59s;
  EXPECT_EQ(tokens.Verify(issued.token), std::optional<std::int64_t>(9));
  clock.now += 1s;
  EXPECT_FALSE(tokens.Verify(issued.token).has_value()) << "a remembered token still expires";
}

TEST(VerifiedTokensTest, RefusesWhatTheCodecRefusesAndOnlyExactTokensHit) {
  FakeClock clock;
  TokenCodec codec("secret-key", 60s, "vote", clock.Get());
  TokenCodec other("other-key", 60s, "vote", clock.Get());
  VerifiedTokens tokens(codec, 8);
  const auto good = codec.Issue(5).token;
  ASSERT_TRUE(tokens.Verify(good).has_value());
  EXPECT_FALSE(tokens.Verify(other.Issue(5).token).has_value());
  // The same claims with a changed signature, and a truncated copy: not the remembered token.
  auto tampered = good;
  auto& c = tampered[tampered.size() - 5];
  c = c == 'A' ? 'B' : 'A';
  EXPECT_FALSE(tokens.Verify(tampered).has_value());
  EXPECT_FALSE(tokens.Verify(good.substr(0, good.size() - 1)).has_value());
  EXPECT_FALSE(tokens.Verify("").has_value());
}

TEST(VerifiedTokensTest, EvictedTokensAreVerifiedAgain) {
  FakeClock clock;
  TokenCodec codec("secret-key", 60s, "vote", clock.Get());
  VerifiedTokens tokens(codec, 1);
  const auto a = codec.Issue(1).token;
  const auto b = codec.Issue(2).token;
  EXPECT_EQ(tokens.Verify(a), std::optional<std::int64_t>(1));
  EXPECT_EQ(tokens.Verify(b), std::optional<std::int64_t>(2));
  EXPECT_EQ(tokens.Verify(a), std::optional<std::int64_t>(1));
}

}  // namespace
}  // namespace vote::domain
