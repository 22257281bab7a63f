#pragma once

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <array>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>

namespace vote::metrics {

// Every metric family of the process, declared in one place. Middleware and services record
// through the helpers; handlers never touch Prometheus.
class Metrics {
 public:
  Metrics();

  std::string Serialize() const;

  void ObserveRequest(const std::string& method, const std::string& route, int status, double seconds);
  prometheus::Gauge& InFlight() { return in_flight_; }

  prometheus::Counter& Registration(const std::string& outcome) { return registrations_.Add({{"outcome", outcome}}); }
  prometheus::Counter& Login(const std::string& outcome) { return logins_.Add({{"outcome", outcome}}); }
  prometheus::Counter& PollCreated() { return polls_created_; }
  prometheus::Counter& Vote(const std::string& outcome) { return votes_.Add({{"outcome", outcome}}); }
  prometheus::Counter& Skip() { return skips_; }
  prometheus::Counter& Cache(std::string_view cache, bool hit) {
    for (const auto& known : caches_) {
      if (known.name == cache) return hit ? *known.hit : *known.miss;
    }
    return cache_.Add({{"cache", std::string(cache)}, {"result", hit ? "hit" : "miss"}});
  }
  prometheus::Counter& RateLimited(const std::string& kind) { return rate_limited_.Add({{"kind", kind}}); }
  prometheus::Gauge& RateLimitFallback() { return ratelimit_fallback_; }
  prometheus::Gauge& PoolGauge(const std::string& pool, const std::string& state) {
    return pools_.Add({{"pool", pool}, {"state", state}});
  }
  prometheus::Gauge& Dependency(const std::string& name) { return dependency_up_.Add({{"dependency", name}}); }
  prometheus::Histogram& VoteBatchSize() { return vote_batch_size_; }
  prometheus::Counter& Events(const std::string& state) { return events_.Add({{"state", state}}); }
  prometheus::Gauge& OutboxBacklog() { return outbox_backlog_; }
  prometheus::Gauge& OutboxOldestAge() { return outbox_oldest_age_; }
  prometheus::Counter& EventsConsumed(const std::string& type) { return events_consumed_.Add({{"type", type}}); }
  // Seconds between an event's commit and its arrival at this instance's fan-out consumer.
  prometheus::Gauge& ConsumerLag() { return consumer_lag_; }
  prometheus::Gauge& WebSocketConnections() { return ws_connections_; }
  prometheus::Counter& WebSocketMessages(const std::string& direction) {
    return ws_messages_.Add({{"direction", direction}});
  }
  prometheus::Gauge& FeedIndexPolls() { return feed_index_polls_; }
  prometheus::Gauge& FeedCachedUsers() { return feed_cached_users_; }
  // Feed checks against the database (one per pick of a page): "current" (the user's set was
  // exact, no per-poll probe) or "behind" (the set lagged the stored answers; ids were checked).
  prometheus::Counter& FeedCheck(bool current) { return current ? feed_check_current_ : feed_check_behind_; }
  // Requests refused past a bound (a full queue, a deadline), by the bound's name.
  prometheus::Counter& Shed(const std::string& reason) { return load_shed_.Add({{"reason", reason}}); }

 private:
  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Family<prometheus::Counter>& http_requests_;
  prometheus::Family<prometheus::Histogram>& http_duration_;
  prometheus::Gauge& in_flight_;
  prometheus::Family<prometheus::Counter>& registrations_;
  prometheus::Family<prometheus::Counter>& logins_;
  prometheus::Counter& polls_created_;
  prometheus::Family<prometheus::Counter>& votes_;
  prometheus::Counter& skips_;
  prometheus::Family<prometheus::Counter>& cache_;
  // The caches looked up on every request, resolved once (Family::Add builds and hashes a label
  // map under a mutex on every call).
  struct KnownCache {
    std::string_view name;
    prometheus::Counter* hit;
    prometheus::Counter* miss;
  };
  std::array<KnownCache, 3> caches_;
  prometheus::Family<prometheus::Counter>& rate_limited_;
  prometheus::Gauge& ratelimit_fallback_;
  prometheus::Family<prometheus::Gauge>& pools_;
  prometheus::Family<prometheus::Gauge>& dependency_up_;
  prometheus::Histogram& vote_batch_size_;
  prometheus::Family<prometheus::Counter>& events_;
  prometheus::Gauge& outbox_backlog_;
  prometheus::Gauge& outbox_oldest_age_;
  prometheus::Family<prometheus::Counter>& events_consumed_;
  prometheus::Gauge& consumer_lag_;
  prometheus::Gauge& ws_connections_;
  prometheus::Family<prometheus::Counter>& ws_messages_;
  prometheus::Gauge& feed_index_polls_;
  prometheus::Gauge& feed_cached_users_;
  prometheus::Family<prometheus::Counter>& load_shed_;
  prometheus::Counter& shed_vote_queue_;
  prometheus::Counter& shed_vote_timeout_;
  prometheus::Counter& shed_pg_pool_;
  prometheus::Family<prometheus::Counter>& feed_checks_;
  prometheus::Counter& feed_check_current_;
  prometheus::Counter& feed_check_behind_;
  prometheus::Gauge& start_time_;
  // (method, route, status) -> the request counter and duration histogram of that label set.
  std::mutex requests_mutex_;
  std::unordered_map<std::string, std::pair<prometheus::Counter*, prometheus::Histogram*>> requests_;
};

}  // namespace vote::metrics
