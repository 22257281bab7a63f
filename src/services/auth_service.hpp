#pragma once

#include <boost/asio/awaitable.hpp>

#include "config/config.hpp"
#include "domain/account.hpp"
#include "domain/clock.hpp"
#include "domain/token.hpp"
#include "metrics/metrics.hpp"
#include "services/password_hasher.hpp"
#include "storage/pg.hpp"

namespace vote::services {

struct Session {
  domain::User user;
  domain::IssuedToken token;
};

struct Profile {
  domain::User user;
  int votes_today = 0;
  int votes_remaining_today = 0;
};

// Registration, login and profile use cases.
class AuthService {
 public:
  AuthService(storage::Pool& pg, PasswordHasher& hasher, const domain::TokenCodec& tokens, const config::Config& config,
              metrics::Metrics& metrics, domain::Clock clock);

  asio::awaitable<Session> Register(domain::Registration registration);
  asio::awaitable<Session> Login(std::string email, std::string password);
  asio::awaitable<Profile> Me(std::int64_t user_id);
  // Whether the account exists (a token outlives nothing: it may name a user who is gone).
  asio::awaitable<bool> Exists(std::int64_t user_id);
  asio::awaitable<domain::User> UpdateMe(std::int64_t user_id, domain::ProfileChange change);
  asio::awaitable<void> ChangePassword(std::int64_t user_id, std::string current, std::string next);

 private:
  storage::Pool& pg_;
  PasswordHasher& hasher_;
  const domain::TokenCodec& tokens_;
  const config::Config& config_;
  metrics::Metrics& metrics_;
  domain::Clock clock_;
};

}  // namespace vote::services
