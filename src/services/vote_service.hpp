#pragma once

#include <boost/asio/awaitable.hpp>

#include <atomic>
#include <boost/asio/steady_timer.hpp>

#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>

#include "config/config.hpp"
#include "domain/clock.hpp"
#include "domain/poll.hpp"
#include "metrics/metrics.hpp"
#include "services/stats_cache.hpp"
#include "storage/pg.hpp"

namespace vote::services {


struct VoteResult {
  std::int64_t poll_id = 0;
  int option_index = 0;
  domain::Stats stats;
  int votes_remaining_today = 0;
};

// Called after a vote or skip is committed (feed state, event relay wake-up).
struct AnswerListener {
  virtual ~AnswerListener() = default;
  // `seq`: the answer's place in the user's answer sequence (0: nothing new was written).
  virtual void OnAnswered(std::int64_t user_id, std::int64_t poll_id, std::int64_t seq) = 0;
};

struct PendingVote;

// Votes waiting to be written, shared by every event-loop thread of the process: the holder of
// a free slot writes the next group, so groups stay large however many threads take requests.
// Thread-safe.
class VoteQueue {
 public:
  VoteQueue(int slots, int shard_base) : busy_(static_cast<std::size_t>(std::max(1, slots)), false), shard_base_(shard_base) {}

  // Groups are then written from `executor` (a thread of their own) over `pool`, which lives
  // there: the next group goes out as soon as the database answers the last one, instead of
  // waiting behind the HTTP work of an event-loop thread. Call before the first vote.
  void UseWriter(asio::any_io_executor executor, storage::Pool& pool) {
    writer_executor_ = std::move(executor);
    writer_pool_ = &pool;
  }

 private:
  friend class VoteService;
  std::mutex mutex_;
  std::deque<std::shared_ptr<PendingVote>> pending_;
  std::vector<bool> busy_;
  int shard_base_;
  std::optional<asio::any_io_executor> writer_executor_;
  storage::Pool* writer_pool_ = nullptr;
};

// Votes and skips. Concurrent votes are grouped into one transaction (one round trip, one
// durable commit for the whole group) while each request still gets its own exact answer:
// cast_votes() applies the rules vote by vote inside the transaction.
class VoteService {
 public:
  VoteService(storage::Pool& pg, StatsCache& stats, AnswerListener& listener, VoteQueue& queue,
              const config::Config& config, metrics::Metrics& metrics, domain::Clock clock);

  // Throws ApiError: 404 poll_not_found, 400 invalid_option, 409 already_voted,
  // 429 daily_vote_limit_reached (with Retry-After).
  asio::awaitable<VoteResult> Cast(std::int64_t user_id, std::int64_t poll_id, int option_index);
  // Throws ApiError: 404 poll_not_found, 409 already_voted.
  asio::awaitable<void> Skip(std::int64_t user_id, std::int64_t poll_id);
  // Retry-After of a daily_vote_limit_reached answer given now.
  int SecondsToLimitReset() const;

 private:
  using Pending = PendingVote;
  // Writes groups while votes wait; answers each group's voters on `home`, this service's thread.
  asio::awaitable<void> Flush(int slot, asio::any_io_executor home);
  struct Group;
  Group MakeGroup(const std::vector<std::shared_ptr<Pending>>& batch, int slot) const;
  // The voter's deadline passed: takes the vote off the queue if it is still there, throws 503.
  [[noreturn]] void Abandon(Pending& pending);
  // Takes a group's outcomes into its votes: each vote has its status (kCommitted), or the group's
  // error (kFailed); kRetry when a deadlock rolled the group back and it is to be sent again.
  enum class Applied { kCommitted, kFailed, kRetry };
  Applied Apply(Group& group, std::vector<storage::PipelineOutcome>& outcomes);
  // Moves the stats cache forward with the group's fresh counts, then answers its voters.
  asio::awaitable<void> Finish(std::vector<std::shared_ptr<Pending>> batch, bool committed);


  storage::Pool& pg_;
  StatsCache& stats_;
  AnswerListener& listener_;
  const config::Config& config_;
  metrics::Metrics& metrics_;
  VoteQueue& queue_;
  const std::size_t parallel_min_;  // votes.parallel_batch_min
  const std::size_t max_queue_;     // votes.max_queue
  domain::Clock clock_;
};

// Seconds from `now` to the next UTC midnight (at least 1).
int SecondsToUtcMidnight(domain::TimePoint now);

}  // namespace vote::services
