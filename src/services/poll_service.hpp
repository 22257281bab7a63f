#pragma once

#include <boost/asio/awaitable.hpp>

#include "cache/redis.hpp"
#include "domain/poll.hpp"
#include "metrics/metrics.hpp"
#include "services/feed_service.hpp"
#include "services/stats_cache.hpp"
#include "storage/pg.hpp"

namespace vote::services {

// A poll with what the caller did with it.
struct PollView {
  domain::Poll poll;
  std::optional<int> my_vote;
  std::optional<domain::Stats> stats;  // once answered
};

struct PollCreatedListener {
  virtual ~PollCreatedListener() = default;
  virtual void OnPollCreated(const domain::Poll& poll) = 0;
};

// Creating and reading polls and their statistics.
class PollService {
 public:
  PollService(storage::Pool& pg, FeedService& feed, StatsCache& stats, cache::Redis& redis,
              PollCreatedListener& listener, metrics::Metrics& metrics);

  asio::awaitable<domain::Poll> Create(std::int64_t creator_id, domain::NewPoll poll);
  // Throws 404 poll_not_found.
  asio::awaitable<PollView> Get(std::int64_t user_id, std::int64_t poll_id);
  asio::awaitable<domain::Stats> Stats(std::int64_t poll_id);
  // Most voted polls of the last hour (poll:stats:hot), best first.
  asio::awaitable<std::vector<domain::Poll>> Hot(int limit);

 private:
  storage::Pool& pg_;
  FeedService& feed_;
  StatsCache& stats_;
  cache::Redis& redis_;
  PollCreatedListener& listener_;
  metrics::Metrics& metrics_;
};

}  // namespace vote::services
