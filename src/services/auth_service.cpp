#include "services/auth_service.hpp"

#include "http/errors.hpp"

namespace vote::services {
namespace {

domain::User UserFromRow(const storage::Result& r, int row = 0) {
  return {r.Int(row, 0), std::string(r.Text(row, 1)), std::string(r.Text(row, 2)), std::string(r.Text(row, 3))};
}

// Maps a unique violation on users to the contract's conflict codes.
[[noreturn]] void ThrowTaken(const storage::PgError& e) {
  if (e.Constraint() == "users_email_lower_key") throw http::Conflict("email_taken", "that email is already registered");
  if (e.Constraint() == "users_username_lower_key") throw http::Conflict("username_taken", "that username is taken");
  throw e;
}

}  // namespace

AuthService::AuthService(storage::Pool& pg, PasswordHasher& hasher, const domain::TokenCodec& tokens,
                         const config::Config& config, metrics::Metrics& metrics, domain::Clock clock)
    : pg_(pg), hasher_(hasher), tokens_(tokens), config_(config), metrics_(metrics), clock_(std::move(clock)) {}

asio::awaitable<Session> AuthService::Register(domain::Registration registration) {
  auto hash = co_await hasher_.Hash(std::move(registration.password));
  auto params = storage::MakeParams(registration.username, registration.email, hash);
  try {
    auto result = co_await pg_.Execute(sql::kInsertUser, params);
    auto user = UserFromRow(result);
    metrics_.Registration("created").Increment();
    auto token = tokens_.Issue(user.id);
    co_return Session{std::move(user), std::move(token)};
  } catch (const storage::PgError& e) {
    if (!e.IsUniqueViolation()) throw;
    metrics_.Registration("conflict").Increment();
    ThrowTaken(e);
  }
}

asio::awaitable<Session> AuthService::Login(std::string email, std::string password) {
  auto params = storage::MakeParams(email);
  auto result = co_await pg_.Execute(sql::kFindUserByEmail, params);
  std::optional<std::string> hash;
  if (result.Rows() == 1) hash = std::string(result.Text(0, 4));
  // Unknown emails are verified against a dummy hash: same time, same answer.
  const bool ok = co_await hasher_.Verify(std::move(password), hash);
  if (!ok) {
    metrics_.Login("invalid_credentials").Increment();
    throw http::ApiError(http::Status::unauthorized, "invalid_credentials", "wrong email or password");
  }
  metrics_.Login("ok").Increment();
  auto user = UserFromRow(result);
  auto token = tokens_.Issue(user.id);
  co_return Session{std::move(user), std::move(token)};
}

asio::awaitable<Profile> AuthService::Me(std::int64_t user_id) {
  auto params = storage::MakeParams(user_id);
  auto result = co_await pg_.Execute(sql::kFindUserById, params);
  // A valid token for a user that no longer exists is no valid session.
  if (result.Rows() != 1) throw http::Unauthorized("unknown user");
  const int today = static_cast<int>(result.Int(0, 5));
  co_return Profile{UserFromRow(result), today, std::max(0, config_.votes.daily_limit - today)};
}

asio::awaitable<bool> AuthService::Exists(std::int64_t user_id) {
  auto params = storage::MakeParams(user_id);
  auto result = co_await pg_.Execute(sql::kUserExists, params);
  co_return result.Bool(0, 0);
}

asio::awaitable<domain::User> AuthService::UpdateMe(std::int64_t user_id, domain::ProfileChange change) {
  auto params = storage::MakeParams(user_id, change.username, change.email);
  try {
    auto result = co_await pg_.Execute(sql::kUpdateUser, params);
    if (result.Rows() != 1) throw http::Unauthorized("unknown user");
    co_return UserFromRow(result);
  } catch (const storage::PgError& e) {
    if (!e.IsUniqueViolation()) throw;
    ThrowTaken(e);
  }
}

asio::awaitable<void> AuthService::ChangePassword(std::int64_t user_id, std::string current, std::string next) {
  auto find = storage::MakeParams(user_id);
  auto result = co_await pg_.Execute(sql::kFindUserById, find);
  if (result.Rows() != 1) throw http::Unauthorized("unknown user");
  std::optional<std::string> hash(std::string(result.Text(0, 4)));
  const bool ok = co_await hasher_.Verify(std::move(current), std::move(hash));
  if (!ok) throw http::ApiError(http::Status::forbidden, "invalid_credentials", "the current password is wrong");
  auto new_hash = co_await hasher_.Hash(std::move(next));
  auto update = storage::MakeParams(user_id, new_hash);
  co_await pg_.Execute(sql::kUpdatePassword, update);
}

}  // namespace vote::services
