#pragma once

#include <boost/asio/awaitable.hpp>

#include "cache/redis.hpp"
#include "domain/cursor.hpp"
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

// One page of a user's own list (their polls, or the polls they voted on).
struct PollPage {
  std::vector<PollView> polls;
  std::optional<std::string> next_cursor;
};

enum class MyList { kCreated, kVoted };

struct PollCreatedListener {
  virtual ~PollCreatedListener() = default;
  virtual void OnPollCreated(const domain::Poll& poll) = 0;
};

// Creating and reading polls and their statistics.
class PollService {
 public:
  PollService(storage::Pool& pg, FeedService& feed, StatsCache& stats, cache::Redis& redis,
              PollCreatedListener& listener, metrics::Metrics& metrics, std::string_view cursor_secret);

  asio::awaitable<domain::Poll> Create(std::int64_t creator_id, domain::NewPoll poll);
  // Throws 404 poll_not_found.
  asio::awaitable<PollView> Get(std::int64_t user_id, std::int64_t poll_id);
  asio::awaitable<domain::Stats> Stats(std::int64_t poll_id);
  // Most voted polls of the last hour (poll:stats:hot), best first.
  asio::awaitable<std::vector<domain::Poll>> Hot(int limit);
  // The caller's polls, or the polls the caller voted on, newest first, each with its counts
  // (and the caller's vote). `cursor` is one this returned for the same user and list; another
  // is 400 invalid_cursor.
  asio::awaitable<PollPage> Mine(std::int64_t user_id, MyList list, int limit, const std::optional<std::string>& cursor);

 private:
  storage::Pool& pg_;
  FeedService& feed_;
  StatsCache& stats_;
  cache::Redis& redis_;
  PollCreatedListener& listener_;
  metrics::Metrics& metrics_;
  domain::CursorCodec cursor_codec_;
};

}  // namespace vote::services
