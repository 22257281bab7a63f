#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <atomic>
#include <exception>
#include <optional>
#include <string>

#include "config/config.hpp"

namespace vote::services {

namespace asio = boost::asio;

// Argon2id (libsodium crypto_pwhash_str) on a small pool of its own threads: a hash costs
// ~100 ms of CPU and must never run on an event-loop thread. The queue is bounded so a flood
// of logins is refused (503) instead of starving everything else.
class PasswordHasher {
 public:
  explicit PasswordHasher(const config::AuthConfig& config);
  ~PasswordHasher();

  asio::awaitable<std::string> Hash(std::string password);
  // Verifies against `hash`; with no hash (unknown account) verifies against a dummy hash so
  // the answer takes the same time.
  asio::awaitable<bool> Verify(std::string password, std::optional<std::string> hash);

 private:
  template <typename Result, typename Fn>
  asio::awaitable<Result> Run(Fn fn);

  const config::AuthConfig& config_;
  asio::thread_pool pool_;
  std::atomic<int> queued_{0};
  std::string dummy_hash_;
};

}  // namespace vote::services
