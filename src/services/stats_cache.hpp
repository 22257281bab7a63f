#pragma once

#include <boost/asio/awaitable.hpp>

#include <unordered_set>

#include <optional>

#include "cache/redis.hpp"
#include "domain/poll.hpp"
#include "metrics/metrics.hpp"
#include "storage/pg.hpp"

namespace vote::services {

namespace asio = boost::asio;

// Poll statistics: Redis poll:stats:{id} in front of the sharded counters. Entries only ever
// move forward (a write with a lower total than the cached one is ignored), so a reader never
// sees fewer votes than a vote that was already answered 200.
// The rows of polls_stats.sql (poll id, option texts, votes per option) as Stats.
std::vector<domain::Stats> StatsFromRows(const storage::Result& counts);

class StatsCache {
 public:
  StatsCache(storage::Pool& pg, cache::Redis& redis, const config::RedisConfig& config, metrics::Metrics& metrics);

  // Stats of a poll, or nothing when the poll does not exist.
  asio::awaitable<std::optional<domain::Stats>> Get(std::int64_t poll_id);
  // Records fresher counts (after a vote); Redis being down is not an error.
  asio::awaitable<void> Put(const domain::Stats& stats);
  // Several polls in one round trip (a vote batch touches many).
  asio::awaitable<void> PutMany(const std::vector<const domain::Stats*>& many);
  // These polls' cached counts may be behind the stored ones (a write that failed, a vote
  // group whose commit is unknown); CatchUp re-reads them from the database and moves the
  // cache forward. Called periodically by the owner thread's background loop.
  void MarkBehind(const std::vector<std::int64_t>& poll_ids);
  asio::awaitable<void> CatchUp();

 private:
  // Polls marked behind, at most this many (beyond it further marks are dropped: their entries
  // catch up with the next vote on them, or expire with stats_ttl).
  static constexpr std::size_t kMaxBehind = 100000;
  std::unordered_set<std::int64_t> behind_;
  storage::Pool& pg_;
  cache::Redis& redis_;
  const config::RedisConfig& config_;
  metrics::Metrics& metrics_;
};

}  // namespace vote::services
