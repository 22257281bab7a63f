#pragma once

#include <boost/asio/awaitable.hpp>

#include <optional>
#include <string>

#include "config/config.hpp"
#include "storage/pg.hpp"

namespace vote::services {

namespace asio = boost::asio;

struct StoredAnswer {
  std::string route;
  int status = 0;
  std::string body;
};

// Answers to requests sent with an Idempotency-Key, kept for votes.idempotency_ttl.
class IdempotencyStore {
 public:
  IdempotencyStore(storage::Pool& pg, const config::VotesConfig& config) : pg_(pg), config_(config) {}

  asio::awaitable<std::optional<StoredAnswer>> Find(std::int64_t user_id, const std::string& key);
  asio::awaitable<void> Store(std::int64_t user_id, const std::string& key, const StoredAnswer& answer);

 private:
  storage::Pool& pg_;
  const config::VotesConfig& config_;
};

}  // namespace vote::services
