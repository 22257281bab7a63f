#include "services/password_hasher.hpp"

#include <boost/asio/async_result.hpp>
#include <sodium.h>

#include "http/errors.hpp"

namespace vote::services {
namespace {

std::string HashNow(const std::string& password, const config::AuthConfig& config) {
  char out[crypto_pwhash_STRBYTES];
  if (crypto_pwhash_str(out, password.data(), password.size(), config.hash_opslimit,
                        static_cast<std::size_t>(config.hash_memlimit)) != 0) {
    throw std::runtime_error("password hashing ran out of memory");
  }
  return out;
}

}  // namespace

PasswordHasher::PasswordHasher(const config::AuthConfig& config)
    : config_(config), pool_(static_cast<std::size_t>(config.hash_workers)) {
  if (sodium_init() < 0) throw std::runtime_error("libsodium failed to initialise");
  dummy_hash_ = HashNow("dummy password for unknown accounts", config_);
}

PasswordHasher::~PasswordHasher() { pool_.join(); }

template <typename Result, typename Fn>
asio::awaitable<Result> PasswordHasher::Run(Fn fn) {
  if (queued_.fetch_add(1) >= config_.hash_queue) {
    queued_.fetch_sub(1);
    throw http::ApiError(http::Status::service_unavailable, "busy", "too many sign-ins at once, retry shortly");
  }
  auto caller = co_await asio::this_coro::executor;
  auto initiation = [this, caller](auto handler, Fn work) {
    asio::post(pool_, [this, caller, handler = std::move(handler), work = std::move(work)]() mutable {
      std::exception_ptr error;
      Result result{};
      try {
        result = work();
      } catch (...) {
        error = std::current_exception();
      }
      queued_.fetch_sub(1);
      asio::post(caller, [handler = std::move(handler), error, result = std::move(result)]() mutable {
        handler(error, std::move(result));
      });
    });
  };
  co_return co_await asio::async_initiate<const asio::use_awaitable_t<>, void(std::exception_ptr, Result)>(
      std::move(initiation), asio::use_awaitable, std::move(fn));
}

asio::awaitable<std::string> PasswordHasher::Hash(std::string password) {
  auto work = [this, password = std::move(password)] { return HashNow(password, config_); };
  co_return co_await Run<std::string>(std::move(work));
}

asio::awaitable<bool> PasswordHasher::Verify(std::string password, std::optional<std::string> hash) {
  auto work = [this, password = std::move(password), hash = std::move(hash)] {
    const std::string& stored = hash ? *hash : dummy_hash_;
    const bool ok = crypto_pwhash_str_verify(stored.c_str(), password.data(), password.size()) == 0;
    return ok && hash.has_value();
  };
  co_return co_await Run<bool>(std::move(work));
}

}  // namespace vote::services
