#pragma once

#include <boost/asio/awaitable.hpp>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

#include "cache/redis.hpp"

namespace vote::services {

namespace asio = boost::asio;

struct WsTicket {
  std::string ticket;
  std::chrono::system_clock::time_point expires_at;
};

// One-time tickets for the WebSocket upgrade: browsers cannot send Authorization there, and a
// long-lived token in a URL ends up in proxies' and servers' logs. A ticket is random, names
// one user, is good for `ttl` and for one upgrade only. Kept in Redis, so a ticket issued by
// one instance opens a WebSocket on any other.
class WsTickets {
 public:
  WsTickets(cache::Redis& redis, std::chrono::seconds ttl) : redis_(redis), ttl_(ttl) {}

  // Throws cache::RedisError when Redis cannot store it.
  asio::awaitable<WsTicket> Issue(std::int64_t user_id);
  // The ticket's user, once: a ticket that is unknown, used or expired, or Redis being
  // unreachable, gives nothing.
  asio::awaitable<std::optional<std::int64_t>> Redeem(const std::string& ticket);

 private:
  cache::Redis& redis_;
  std::chrono::seconds ttl_;
};

}  // namespace vote::services
