#include "domain/token.hpp"

#include <jwt.h>

#include <cerrno>
#include <charconv>
#include <memory>
#include <stdexcept>

namespace vote::domain {
namespace {

using JwtPtr = std::unique_ptr<jwt_t, void (*)(jwt_t*)>;

// How far in the future a token's nbf or iat may lie: the clocks of instances differ a little.
constexpr std::int64_t kClockSkewSeconds = 30;

std::int64_t Seconds(TimePoint t) {
  return std::chrono::duration_cast<std::chrono::seconds>(t.time_since_epoch()).count();
}

}  // namespace

TokenCodec::TokenCodec(std::string secret, std::chrono::seconds lifetime, std::string issuer, Clock clock)
    : secret_(std::move(secret)), lifetime_(lifetime), issuer_(std::move(issuer)), clock_(std::move(clock)) {}

IssuedToken TokenCodec::Issue(std::int64_t user_id) const {
  jwt_t* raw = nullptr;
  if (jwt_new(&raw) != 0) throw std::runtime_error("jwt_new failed");
  JwtPtr jwt(raw, &jwt_free);
  const auto now = clock_();
  const auto expires = now + lifetime_;
  const auto subject = std::to_string(user_id);
  jwt_add_grant(jwt.get(), "sub", subject.c_str());
  jwt_add_grant(jwt.get(), "iss", issuer_.c_str());
  jwt_add_grant_int(jwt.get(), "iat", Seconds(now));
  jwt_add_grant_int(jwt.get(), "exp", Seconds(expires));
  if (jwt_set_alg(jwt.get(), JWT_ALG_HS256, reinterpret_cast<const unsigned char*>(secret_.data()),
                  static_cast<int>(secret_.size())) != 0) {
    throw std::runtime_error("jwt_set_alg failed");
  }
  std::unique_ptr<char, void (*)(void*)> encoded(jwt_encode_str(jwt.get()), &free);
  if (!encoded) throw std::runtime_error("jwt_encode_str failed");
  return {encoded.get(), std::chrono::time_point_cast<std::chrono::seconds>(expires)};
}

std::optional<std::int64_t> TokenCodec::Verify(const std::string& token) const {
  const auto claims = VerifyClaims(token);
  if (!claims) return std::nullopt;
  return claims->user_id;
}

bool TokenCodec::Expired(std::int64_t expires) const { return expires <= Seconds(clock_()); }

std::optional<TokenCodec::Verified> TokenCodec::VerifyClaims(const std::string& token) const {
  if (token.empty() || token.size() > 4096) return std::nullopt;
  jwt_t* raw = nullptr;
  // Passing the key makes libjwt verify the signature; the algorithm is checked below.
  if (jwt_decode(&raw, token.c_str(), reinterpret_cast<const unsigned char*>(secret_.data()),
                 static_cast<int>(secret_.size())) != 0 ||
      raw == nullptr) {
    return std::nullopt;
  }
  JwtPtr jwt(raw, &jwt_free);
  if (jwt_get_alg(jwt.get()) != JWT_ALG_HS256) return std::nullopt;
  const char* issuer = jwt_get_grant(jwt.get(), "iss");
  if (issuer == nullptr || issuer_ != issuer) return std::nullopt;
  errno = 0;
  const long exp = jwt_get_grant_int(jwt.get(), "exp");
  if (errno != 0 || Expired(exp)) return std::nullopt;
  // Not valid before its nbf; and one issued in the future was not issued by an instance whose
  // clock is near ours. kClockSkew allows for instances' clocks differing a little.
  for (const char* claim : {"nbf", "iat"}) {
    errno = 0;
    const long at = jwt_get_grant_int(jwt.get(), claim);
    if (errno == ENOENT) continue;
    if (errno != 0 || at > Seconds(clock_()) + kClockSkewSeconds) return std::nullopt;
  }
  const char* subject = jwt_get_grant(jwt.get(), "sub");
  if (subject == nullptr) return std::nullopt;
  std::int64_t user_id = 0;
  const std::string_view sub(subject);
  const auto [ptr, ec] = std::from_chars(sub.data(), sub.data() + sub.size(), user_id);
  if (ec != std::errc{} || ptr != sub.data() + sub.size() || user_id <= 0) return std::nullopt;
  return Verified{user_id, exp};
}

std::optional<std::int64_t> VerifiedTokens::Verify(const std::string& token) {
  if (const auto* known = cache_.Get(token)) {
    if (!codec_.Expired(known->expires)) return known->user_id;
    cache_.Erase(token);
    return std::nullopt;
  }
  const auto claims = codec_.VerifyClaims(token);
  if (!claims) return std::nullopt;
  cache_.Put(token, *claims);
  return claims->user_id;
}

}  // namespace vote::domain
