#pragma once

#include <boost/asio/awaitable.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "cache/redis.hpp"
#include "config/config.hpp"
#include "domain/clock.hpp"
#include "metrics/metrics.hpp"

namespace vote::services {

namespace asio = boost::asio;

// What one limit said about one request; rendered as X-RateLimit-* (and Retry-After).
struct RateDecision {
  bool allowed = true;
  std::string kind;  // "user" or "ip": the limit the headers describe (or that refused)
  int limit = 0;
  int remaining = 0;
  std::int64_t reset_unix = 0;   // when the window frees a request
  int retry_after_seconds = 0;   // when refused
};

// Sliding-window limits kept in-process, per instance; used while Redis is unreachable.
// Thread-safe (shared by all event-loop threads).
class LocalRateLimiter {
 public:
  struct Limit {
    std::string kind;
    std::string key;
    int limit = 0;
    std::chrono::milliseconds window{0};
  };

  explicit LocalRateLimiter(domain::Clock clock);
  RateDecision Check(const std::string& kind, const std::string& key, int limit, std::chrono::milliseconds window);
  // Records the request in every limit only when all of them allow it (a refused request counts
  // against nothing). The decision describes the first limit that refused, or else the last one.
  RateDecision Check(const std::vector<Limit>& limits);

  // RateLimiter instances (one per event-loop thread) say when they start and stop relying on
  // these limits; `gauge` is 1 while any does. Returns true when the first starts or the last
  // stops, so that an outage is reported once per process.
  bool Engage(bool on, prometheus::Gauge& gauge);

 private:
  struct Entry;
  domain::Clock clock_;
  std::mutex mutex_;
  std::unordered_map<std::string, std::shared_ptr<Entry>> entries_;
  std::chrono::steady_clock::time_point last_purge_{};
  int engaged_ = 0;
};

// Per-user and per-address sliding-window limits in Redis: one Lua script, one round trip per
// request, atomic across instances. Falls back to LocalRateLimiter while Redis is down.
class RateLimiter {
 public:
  RateLimiter(cache::Redis& redis, LocalRateLimiter& fallback, const config::RateLimitConfig& config,
              metrics::Metrics& metrics, domain::Clock clock);

  // Checks the address limit and, when user_id is set, the user limit. A refused request
  // counts against nothing. The decision describes the user limit for authenticated calls and
  // the address limit otherwise (or whichever refused).
  asio::awaitable<RateDecision> Check(const std::string& address, std::optional<std::int64_t> user_id);

 private:
  cache::Redis& redis_;
  LocalRateLimiter& fallback_;
  const config::RateLimitConfig& config_;
  metrics::Metrics& metrics_;
  domain::Clock clock_;
  std::atomic<bool> degraded_{false};  // this instance is using the fallback
};

}  // namespace vote::services
