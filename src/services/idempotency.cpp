#include "services/idempotency.hpp"

namespace vote::services {

asio::awaitable<std::optional<StoredAnswer>> IdempotencyStore::Find(std::int64_t user_id, const std::string& key) {
  auto params = storage::MakeParams(user_id, key);
  auto result = co_await pg_.Execute(sql::kFindIdempotent, params);
  if (result.Rows() == 0) co_return std::nullopt;
  co_return StoredAnswer{std::string(result.Text(0, 0)), static_cast<int>(result.Int(0, 1)),
                         std::string(result.Text(0, 2))};
}

asio::awaitable<void> IdempotencyStore::Store(std::int64_t user_id, const std::string& key,
                                              const StoredAnswer& answer) {
  const auto ttl_seconds = std::chrono::duration_cast<std::chrono::seconds>(config_.idempotency_ttl).count();
  auto params = storage::MakeParams(user_id, key, answer.route, answer.status, answer.body, ttl_seconds);
  co_await pg_.Execute(sql::kStoreIdempotent, params);
}

}  // namespace vote::services
