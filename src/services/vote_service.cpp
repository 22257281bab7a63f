#include "services/vote_service.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>

#include "http/errors.hpp"
#include "services/auth_service.hpp"

namespace vote::services {

struct VoteService::Pending {
  explicit Pending(asio::any_io_executor ex) : done(ex, asio::steady_timer::time_point::max()) {}
  std::int64_t user_id = 0;
  std::int64_t poll_id = 0;
  int option_index = 0;
  asio::steady_timer done;  // cancelled when the answer is in
  std::string status;
  int votes_today = 0;
  std::vector<std::int64_t> counts;
  std::shared_ptr<const domain::Stats> fresh;  // read after the commit; null if that read failed
  std::exception_ptr error;
};

int SecondsToUtcMidnight(domain::TimePoint now) {
  const auto midnight = std::chrono::floor<std::chrono::days>(now) + std::chrono::days(1);
  const auto seconds = std::chrono::ceil<std::chrono::seconds>(midnight - now).count();
  return static_cast<int>(std::max<std::int64_t>(1, seconds));
}

VoteService::VoteService(storage::Pool& pg, StatsCache& stats, FeedService& feed, AnswerListener& listener,
                         const config::Config& config, metrics::Metrics& metrics, domain::Clock clock, int shard_base)
    : pg_(pg),
      stats_(stats),
      feed_(feed),
      listener_(listener),
      config_(config),
      metrics_(metrics),
      clock_(std::move(clock)),
      shard_base_(shard_base),
      // Leave half of the thread's connections to reads.
      max_in_flight_(std::max(1, pg.Stats().size / 2)),
      slot_busy_(static_cast<std::size_t>(max_in_flight_), false) {}

int VoteService::SecondsToLimitReset() const { return SecondsToUtcMidnight(clock_()); }

asio::awaitable<VoteResult> VoteService::Cast(std::int64_t user_id, std::int64_t poll_id, int option_index) {
  auto ex = co_await asio::this_coro::executor;
  auto pending = std::make_shared<Pending>(ex);
  pending->user_id = user_id;
  pending->poll_id = poll_id;
  pending->option_index = option_index;
  queue_.push_back(pending);
  // Start a flusher when a slot is free; otherwise the running ones pick this vote up next.
  for (int slot = 0; slot < max_in_flight_; ++slot) {
    if (!slot_busy_[static_cast<std::size_t>(slot)]) {
      slot_busy_[static_cast<std::size_t>(slot)] = true;
      asio::co_spawn(ex, Flush(slot), asio::detached);
      break;
    }
  }
  boost::system::error_code ec;
  co_await pending->done.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  if (pending->error) std::rethrow_exception(pending->error);

  const auto& status = pending->status;
  if (status == "accepted") {
    metrics_.Vote("accepted").Increment();
    VoteResult result;
    result.poll_id = poll_id;
    result.option_index = option_index;
    result.votes_remaining_today = std::max(0, config_.votes.daily_limit - pending->votes_today);
    if (pending->fresh) {
      result.stats = *pending->fresh;
    } else {
      result.stats.poll_id = poll_id;
      result.stats.votes = std::move(pending->counts);
      std::vector<std::int64_t> ids{poll_id};
      auto polls = co_await feed_.Polls(ids);
      if (!polls.empty()) result.stats.options = polls.front().options;
      result.stats.options.resize(result.stats.votes.size());
    }
    // The cache moves forward before this voter is answered, so nobody reads fewer votes.
    co_await stats_.Put(result.stats);
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
  metrics_.Vote("limit").Increment();
  throw std::move(http::ApiError(http::Status::too_many_requests, "daily_vote_limit_reached",
                                 "you have reached today's vote limit"))
      .WithHeader("Retry-After", std::to_string(SecondsToLimitReset()));
}

asio::awaitable<void> VoteService::Flush(int slot) {
  while (!queue_.empty()) {
    std::vector<std::shared_ptr<Pending>> batch;
    const auto take = std::min<std::size_t>(queue_.size(), static_cast<std::size_t>(config_.votes.batch_max));
    batch.assign(queue_.begin(), queue_.begin() + static_cast<std::ptrdiff_t>(take));
    queue_.erase(queue_.begin(), queue_.begin() + static_cast<std::ptrdiff_t>(take));
    co_await RunBatch(batch, slot);
  }
  slot_busy_[static_cast<std::size_t>(slot)] = false;
}

asio::awaitable<void> VoteService::RunBatch(std::vector<std::shared_ptr<Pending>>& batch, int slot) {
  // Per-user locks are taken in user order in every batch, so batches cannot deadlock.
  std::stable_sort(batch.begin(), batch.end(), [](const auto& a, const auto& b) { return a->user_id < b->user_id; });
  std::vector<std::int64_t> users;
  std::vector<std::int64_t> polls;
  std::vector<int> options;
  for (const auto& p : batch) {
    users.push_back(p->user_id);
    polls.push_back(p->poll_id);
    options.push_back(p->option_index);
  }
  const int shard = (shard_base_ + slot) % config_.votes.counter_shards;
  auto params = storage::MakeParams(users, polls, options, UtcDay(clock_()), config_.votes.daily_limit, shard);
  metrics_.VoteBatchSize().Observe(static_cast<double>(batch.size()));

  std::exception_ptr failure;
  for (int attempt = 0; attempt < 3; ++attempt) {
    try {
      auto result = co_await pg_.Execute(sql::kCastVotes, params);
      for (int row = 0; row < result.Rows(); ++row) {
        auto& p = *batch[static_cast<std::size_t>(result.Int(row, 0) - 1)];
        p.status = std::string(result.Text(row, 1));
        p.votes_today = result.IsNull(row, 2) ? 0 : static_cast<int>(result.Int(row, 2));
        if (!result.IsNull(row, 3)) p.counts = result.IntArray(row, 3);
      }
      failure = nullptr;
      break;
    } catch (const storage::PgError& e) {
      failure = std::current_exception();
      // A deadlock or serialization failure rolled the whole batch back: safe to run again.
      // A connection lost mid-statement is not: the commit may have happened, and a rerun
      // would answer 409 to votes that were stored. Those voters get 503.
      if (e.SqlState() != "40P01" && e.SqlState() != "40001") break;
      spdlog::warn("vote batch retry after {}", e.SqlState());
    } catch (const std::exception&) {
      // Anything else still answers every voter of the batch.
      failure = std::current_exception();
      break;
    }
  }

  if (!failure) co_await ReadFreshStats(batch);
  for (const auto& p : batch) {
    if (!failure && p->status == "accepted") listener_.OnAnswered(p->user_id, p->poll_id);
  }
  for (auto& p : batch) {
    if (failure) p->error = failure;
    p->done.cancel();
  }
}

asio::awaitable<void> VoteService::ReadFreshStats(std::vector<std::shared_ptr<Pending>>& batch) {
  // The counts cast_votes() reads inside its transaction miss batches committing at the same
  // moment on other connections (other shards, other instances): two such batches could each
  // cache a total one short, forever. Read after the commit, the last batch to commit sees every
  // vote, and the cache keeps the highest total, so it ends at the stored counts.
  std::vector<std::int64_t> ids;
  for (const auto& p : batch) {
    if (p->status == "accepted" && std::find(ids.begin(), ids.end(), p->poll_id) == ids.end()) {
      ids.push_back(p->poll_id);
    }
  }
  if (ids.empty()) co_return;
  auto params = storage::MakeParams(ids);
  try {
    auto result = co_await pg_.Execute(sql::kPollsStats, params);
    for (int row = 0; row < result.Rows(); ++row) {
      auto stats = std::make_shared<domain::Stats>();
      stats->poll_id = result.Int(row, 0);
      stats->options = result.TextArray(row, 1);
      stats->votes = result.IntArray(row, 2);
      for (auto& p : batch) {
        if (p->status == "accepted" && p->poll_id == stats->poll_id) p->fresh = stats;
      }
    }
  } catch (const std::exception& e) {
    // The votes are committed and their voters must be answered: they fall back to the counts
    // read in the transaction.
    spdlog::warn("vote stats read after commit failed: {}", e.what());
  }
}

asio::awaitable<void> VoteService::Skip(std::int64_t user_id, std::int64_t poll_id) {
  auto params = storage::MakeParams(user_id, poll_id);
  auto result = co_await pg_.Execute(sql::kSkipPoll, params);
  if (!result.Bool(0, 0)) throw http::NotFound("poll_not_found", "no poll with that id");
  if (result.Bool(0, 1)) throw http::Conflict("already_voted", "you have already voted on this poll");
  metrics_.Skip().Increment();
  listener_.OnAnswered(user_id, poll_id);
}

}  // namespace vote::services
