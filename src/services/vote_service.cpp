#include "services/vote_service.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>

#include "http/errors.hpp"
#include "services/auth_service.hpp"

namespace vote::services {

struct PendingVote {
  PendingVote(asio::any_io_executor ex, std::chrono::milliseconds deadline) : executor(ex), done(ex, deadline) {}
  asio::any_io_executor executor;  // the requester's event loop
  std::int64_t user_id = 0;
  std::int64_t poll_id = 0;
  int option_index = 0;
  asio::steady_timer done;  // cancelled (on `executor`) when the answer is in; expires at the deadline
  std::string status;
  int votes_today = 0;
  std::int64_t answer_seq = 0;  // the vote's place in the user's answer sequence, once accepted
  std::shared_ptr<const domain::Stats> fresh;  // read after the commit; null if that read failed
  std::exception_ptr error;
};

namespace {

// The vote path sheds load with 503 and Retry-After: the voter may simply try again.
http::ApiError Unavailable(std::string message) {
  return std::move(http::ApiError(http::Status::service_unavailable, "unavailable", std::move(message)))
      .WithHeader("Retry-After", "1");
}

}  // namespace

int SecondsToUtcMidnight(domain::TimePoint now) {
  const auto midnight = std::chrono::floor<std::chrono::days>(now) + std::chrono::days(1);
  const auto seconds = std::chrono::ceil<std::chrono::seconds>(midnight - now).count();
  return static_cast<int>(std::max<std::int64_t>(1, seconds));
}

VoteService::VoteService(storage::Pool& pg, StatsCache& stats, AnswerListener& listener, VoteQueue& queue,
                         const config::Config& config, metrics::Metrics& metrics, domain::Clock clock)
    : pg_(pg),
      stats_(stats),
      listener_(listener),
      config_(config),
      metrics_(metrics),
      queue_(queue),
      parallel_min_(static_cast<std::size_t>(config.votes.parallel_batch_min)),
      max_queue_(static_cast<std::size_t>(config.votes.max_queue)),
      clock_(std::move(clock)) {}

int VoteService::SecondsToLimitReset() const { return SecondsToUtcMidnight(clock_()); }

asio::awaitable<VoteResult> VoteService::Cast(std::int64_t user_id, std::int64_t poll_id, int option_index) {
  auto ex = co_await asio::this_coro::executor;
  auto pending = std::make_shared<Pending>(ex, config_.votes.answer_timeout);
  pending->user_id = user_id;
  pending->poll_id = poll_id;
  pending->option_index = option_index;
  // Start a flusher on this thread when a slot is free; otherwise a running one, on any thread,
  // picks this vote up with its next group. Slots beyond the first open only for a group worth
  // its own transaction: a handful of votes wait better for the group in flight to return.
  int slot = -1;
  {
    std::lock_guard lock(queue_.mutex_);
    if (queue_.pending_.size() >= max_queue_) {
      metrics_.Shed("vote_queue").Increment();
      throw Unavailable("too many votes waiting, try again");
    }
    queue_.pending_.push_back(pending);
    for (std::size_t s = 0; s < queue_.busy_.size(); ++s) {
      if (s > 0 && queue_.pending_.size() < parallel_min_) break;
      if (!queue_.busy_[s]) {
        queue_.busy_[s] = true;
        slot = static_cast<int>(s);
        break;
      }
    }
  }
  if (slot >= 0) {
    const auto writer = queue_.writer_executor_.value_or(ex);
    asio::co_spawn(writer, Flush(slot, ex), asio::detached);
  }
  boost::system::error_code ec;
  co_await pending->done.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  if (!ec) Abandon(*pending);  // the deadline passed without an answer
  if (pending->error) std::rethrow_exception(pending->error);

  const auto& status = pending->status;
  if (status == "accepted") {
    metrics_.Vote("accepted").Increment();
    VoteResult result;
    result.poll_id = poll_id;
    result.option_index = option_index;
    result.votes_remaining_today = std::max(0, config_.votes.daily_limit - pending->votes_today);
    if (pending->fresh) {
      // The batch already moved the cache forward to these counts.
      result.stats = *pending->fresh;
    } else {
      // The read after the commit failed: the vote is stored and its voter must hear so; the
      // counts come from the cache or the database, as for any reader.
      try {
        if (auto stats = co_await stats_.Get(poll_id)) result.stats = std::move(*stats);
      } catch (const std::exception& e) {
        spdlog::warn("vote {} on poll {}: stats unavailable: {}", user_id, poll_id, e.what());
      }
      result.stats.poll_id = poll_id;
    }
    co_return result;
  }
  if (status == "poll_not_found") {
    metrics_.Vote("invalid").Increment();
    throw http::NotFound("poll_not_found", "no poll with that id");
  }
  if (status == "invalid_option") {
    metrics_.Vote("invalid").Increment();
    throw http::BadRequest("invalid_option", "optionIndex is not one of the poll's options");
  }
  if (status == "already_voted") {
    metrics_.Vote("already_voted").Increment();
    throw http::Conflict("already_voted", "you have already voted on this poll");
  }
  if (status == "limit_reached") {
    metrics_.Vote("limit").Increment();
    throw std::move(http::ApiError(http::Status::too_many_requests, "daily_vote_limit_reached",
                                   "you have reached today's vote limit"))
        .WithHeader("Retry-After", std::to_string(SecondsToLimitReset()));
  }
  // cast_votes() answered something this code does not know: a bug, never a silent 429.
  throw std::logic_error("cast_votes: unknown vote status '" + status + "'");
}

void VoteService::Abandon(Pending& pending) {
  // Not sent yet: it never will be. Already sent: its group may still commit, and a retry then
  // answers 409 already_voted (or replays, with the same Idempotency-Key).
  bool was_queued = false;
  {
    std::lock_guard lock(queue_.mutex_);
    const auto it = std::find_if(queue_.pending_.begin(), queue_.pending_.end(),
                                 [&pending](const auto& p) { return p.get() == &pending; });
    if (it != queue_.pending_.end()) {
      queue_.pending_.erase(it);
      was_queued = true;
    }
  }
  metrics_.Shed("vote_timeout").Increment();
  spdlog::warn("vote of user {} on poll {}: no answer from the vote writer within {} ms ({})", pending.user_id,
               pending.poll_id, config_.votes.answer_timeout.count(), was_queued ? "never sent" : "in flight");
  throw Unavailable("the vote could not be confirmed in time, try again");
}

// A group of votes on its way through cast_votes(), with the read of its polls' counts.
struct VoteService::Group {
  std::vector<std::shared_ptr<Pending>> votes;  // sorted by user
  storage::Params cast;
  storage::Params read;
  int attempts = 0;

  std::vector<std::pair<const sql::Statement*, const storage::Params*>> Statements() const {
    return {{&sql::kCastVotes, &cast}, {&sql::kPollsStats, &read}};
  }
};

VoteService::Group VoteService::MakeGroup(const std::vector<std::shared_ptr<Pending>>& batch, int slot) const {
  Group group;
  group.votes = batch;
  // Per-user locks are taken in user order in every group, so groups cannot deadlock.
  std::stable_sort(group.votes.begin(), group.votes.end(),
                   [](const auto& a, const auto& b) { return a->user_id < b->user_id; });
  std::vector<std::int64_t> users;
  std::vector<std::int64_t> polls;
  std::vector<int> options;
  for (const auto& p : group.votes) {
    users.push_back(p->user_id);
    polls.push_back(p->poll_id);
    options.push_back(p->option_index);
  }
  const int shard = (queue_.shard_base_ + slot) % config_.votes.counter_shards;
  // The day is the database's (NULL): instances whose clocks differ agree on when it ends.
  group.cast = storage::MakeParams(users, polls, options, std::nullopt, config_.votes.daily_limit, shard);
  // Counts read inside the vote transaction would miss groups committing at the same moment on
  // other connections (other shards, other instances): two such groups could each cache a total
  // one short, forever. Read after the commit, the last group to commit sees every vote, and the
  // cache keeps the highest total, so it ends at the stored counts. Both statements go out in
  // one round trip (pipeline); the read runs once the votes are committed.
  std::sort(polls.begin(), polls.end());
  polls.erase(std::unique(polls.begin(), polls.end()), polls.end());
  group.read = storage::MakeParams(polls);
  metrics_.VoteBatchSize().Observe(static_cast<double>(group.votes.size()));
  return group;
}

VoteService::Applied VoteService::Apply(Group& group, std::vector<storage::PipelineOutcome>& outcomes) {
  if (outcomes[0].error) {
    const auto& error = *outcomes[0].error;
    // A deadlock or serialization failure rolled the whole group back: safe to run again.
    if ((error.SqlState() == "40P01" || error.SqlState() == "40001") && ++group.attempts < 3) {
      spdlog::warn("vote group retry after {}", error.SqlState());
      return Applied::kRetry;
    }
    const auto failure = std::make_exception_ptr(error);
    for (auto& p : group.votes) p->error = failure;
    return Applied::kFailed;
  }
  const auto& result = *outcomes[0].result;
  for (int row = 0; row < result.Rows(); ++row) {
    auto& p = *group.votes[static_cast<std::size_t>(result.Int(row, 0) - 1)];
    p.status = std::string(result.Text(row, 1));
    p.votes_today = result.IsNull(row, 2) ? 0 : static_cast<int>(result.Int(row, 2));
    p.answer_seq = result.IsNull(row, 3) ? 0 : result.Int(row, 3);
  }
  if (outcomes[1].result) {
    for (auto& counted : StatsFromRows(*outcomes[1].result)) {
      auto stats = std::make_shared<domain::Stats>(std::move(counted));
      for (auto& p : group.votes) {
        if (p->status == "accepted" && p->poll_id == stats->poll_id) p->fresh = stats;
      }
    }
  } else {
    // The votes are committed and their voters will be answered: Cast() falls back to a plain
    // stats read.
    spdlog::warn("vote stats read after commit failed: {}", outcomes[1].error->what());
  }
  return Applied::kCommitted;
}

asio::awaitable<void> VoteService::Flush(int slot, asio::any_io_executor home) {
  // Up to kPipelineDepth groups are queued on the connection at once (libpq pipeline mode): the
  // next one starts the moment the last one commits, without a round trip in between. A group
  // goes out behind another only once parallel_min_ votes wait, so groups stay worth their
  // transaction.
  constexpr std::size_t kPipelineDepth = 2;
  auto& pool = queue_.writer_pool_ != nullptr ? *queue_.writer_pool_ : pg_;
  std::deque<Group> in_flight;  // sent, outcomes not read yet (oldest first)
  std::deque<Group> again;      // rolled back by a deadlock: to send again
  std::optional<storage::Pool::Lease> lease;
  // Every group in flight, and `extra` if any, fails with the current exception; the connection
  // is dropped.
  auto fail_all = [&](std::optional<Group> extra) {
    const auto failure = std::current_exception();
    if (extra) in_flight.push_back(std::move(*extra));
    for (auto& group : in_flight) {
      for (auto& p : group.votes) p->error = failure;
      asio::co_spawn(home, Finish(std::move(group.votes), false), asio::detached);
    }
    in_flight.clear();
    if (lease) (*lease).Discard();
    lease.reset();
  };
  for (;;) {
    while (in_flight.size() < kPipelineDepth) {
      std::optional<Group> next;
      if (!again.empty()) {
        next.emplace(std::move(again.front()));
        again.pop_front();
      } else {
        std::vector<std::shared_ptr<Pending>> batch;
        {
          std::lock_guard lock(queue_.mutex_);
          const bool worth = in_flight.empty() ? !queue_.pending_.empty() : queue_.pending_.size() >= parallel_min_;
          if (worth) {
            const auto take =
                std::min<std::size_t>(queue_.pending_.size(), static_cast<std::size_t>(config_.votes.batch_max));
            batch.assign(queue_.pending_.begin(), queue_.pending_.begin() + static_cast<std::ptrdiff_t>(take));
            queue_.pending_.erase(queue_.pending_.begin(),
                                  queue_.pending_.begin() + static_cast<std::ptrdiff_t>(take));
          }
        }
        if (batch.empty()) break;
        try {
          next.emplace(MakeGroup(batch, slot));
        } catch (const std::exception& e) {
          // Nothing of it was sent: its voters get 503 and the flusher goes on with the rest.
          spdlog::error("vote group could not be built: {}", e.what());
          const auto failure = std::make_exception_ptr(Unavailable("the vote could not be stored, try again"));
          for (auto& p : batch) p->error = failure;
          asio::co_spawn(home, Finish(std::move(batch), false), asio::detached);
          continue;
        }
      }
      try {
        if (!lease) {
          auto acquired = co_await pool.Acquire();
          lease.emplace(std::move(acquired));
        }
        const auto statements = next->Statements();
        co_await (*lease)->SendEach(statements);
        in_flight.push_back(std::move(*next));
      } catch (const std::exception&) {
        // A connection lost while sending: what is in flight may or may not have committed, and
        // a rerun would answer 409 to stored votes. Those voters get 503.
        fail_all(std::move(next));
      }
    }
    if (in_flight.empty()) {
      std::lock_guard lock(queue_.mutex_);
      if (queue_.pending_.empty() || (slot > 0 && queue_.pending_.size() < parallel_min_)) {
        queue_.busy_[static_cast<std::size_t>(slot)] = false;
        if (lease) {
          try {
            (*lease)->EndPipeline();
          } catch (const std::exception&) {
            (*lease).Discard();
          }
        }
        co_return;
      }
      continue;
    }
    try {
      auto outcomes = co_await (*lease)->ReceiveEach(2);
      auto group = std::move(in_flight.front());
      in_flight.pop_front();
      const auto applied = Apply(group, outcomes);
      if (applied == Applied::kRetry) {
        again.push_back(std::move(group));
      } else {
        // The next group commits while this one moves the stats cache and answers its voters
        // (on `home`: the stats cache belongs to this service's thread).
        asio::co_spawn(home, Finish(std::move(group.votes), applied == Applied::kCommitted), asio::detached);
      }
    } catch (const std::exception&) {
      fail_all(std::nullopt);
    }
  }
}

asio::awaitable<void> VoteService::Finish(std::vector<std::shared_ptr<Pending>> batch, bool committed) {
  if (committed) {
    // The cache moves forward before any voter of the group is answered: nobody reads fewer
    // votes than a vote already answered 200. One round trip for all polls of the group.
    std::vector<const domain::Stats*> fresh;
    for (const auto& p : batch) {
      if (p->fresh && std::find(fresh.begin(), fresh.end(), p->fresh.get()) == fresh.end()) {
        fresh.push_back(p->fresh.get());
      }
    }
    co_await stats_.PutMany(fresh);
    for (const auto& p : batch) {
      if (p->status == "accepted") listener_.OnAnswered(p->user_id, p->poll_id, p->answer_seq);
    }
  }
  // Each voter is woken on its own event loop (a timer is not safe to touch from another).
  for (auto& p : batch) {
    asio::post(p->executor, [p] { p->done.cancel(); });
  }
  if (!committed && !batch.empty()) {
    std::vector<std::int64_t> polls;
    for (const auto& p : batch) polls.push_back(p->poll_id);
    std::sort(polls.begin(), polls.end());
    // Such a group may have committed: its polls' counts are re-read once the database answers.
    stats_.MarkBehind(polls);
  }
}


asio::awaitable<void> VoteService::Skip(std::int64_t user_id, std::int64_t poll_id) {
  auto params = storage::MakeParams(user_id, poll_id);
  auto result = co_await pg_.Execute(sql::kSkipPoll, params);
  if (!result.Bool(0, 0)) throw http::NotFound("poll_not_found", "no poll with that id");
  if (result.Bool(0, 1)) throw http::Conflict("already_voted", "you have already voted on this poll");
  metrics_.Skip().Increment();
  // A repeated skip wrote nothing and has no number of its own.
  listener_.OnAnswered(user_id, poll_id, result.IsNull(0, 2) ? 0 : result.Int(0, 2));
}

}  // namespace vote::services
