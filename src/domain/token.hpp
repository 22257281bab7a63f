#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "domain/clock.hpp"

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

 private:
  std::string secret_;
  std::chrono::seconds lifetime_;
  std::string issuer_;
  Clock clock_;
};

}  // namespace vote::domain
