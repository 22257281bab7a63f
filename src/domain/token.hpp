#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "domain/clock.hpp"
#include "domain/feed_index.hpp"

namespace vote::domain {

struct IssuedToken {
  std::string token;
  TimePoint expires_at;
};

// Creates and verifies HS256 JWTs. Verification pins the algorithm and checks exp and iss
// itself: libjwt 1.10 accepts "alg: none" when no key is given and does not check exp.
class TokenCodec {
 public:
  TokenCodec(std::string secret, std::chrono::seconds lifetime, std::string issuer, Clock clock);

  IssuedToken Issue(std::int64_t user_id) const;
  // The subject of a valid token, or nothing for anything wrong with it.
  std::optional<std::int64_t> Verify(const std::string& token) const;

  struct Verified {
    std::int64_t user_id = 0;
    std::int64_t expires = 0;  // exp, seconds since the epoch
  };
  // Verify(), with the token's expiry.
  std::optional<Verified> VerifyClaims(const std::string& token) const;
  // Whether a token expiring at `expires` (exp) has expired by now.
  bool Expired(std::int64_t expires) const;

 private:
  std::string secret_;
  std::chrono::seconds lifetime_;
  std::string issuer_;
  Clock clock_;
};

// Tokens that verified, with their subject and expiry, so that a client's next requests skip
// the signature check and the JSON parse (a tenth of a feed request's CPU). Keyed by the whole
// token, so only a byte-identical token hits, and expiry is checked on every hit. One per
// event-loop thread: not thread-safe.
class VerifiedTokens {
 public:
  VerifiedTokens(const TokenCodec& codec, std::size_t capacity) : codec_(codec), cache_(capacity) {}

  std::optional<std::int64_t> Verify(const std::string& token);

 private:
  const TokenCodec& codec_;
  LruCache<std::string, TokenCodec::Verified> cache_;
};

}  // namespace vote::domain
