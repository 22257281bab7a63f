// The feed (GET /api/polls): how a page is chosen, and why it stays fast and exact.
//
// The obvious query (newest polls WHERE NOT EXISTS a vote or skip by this user, LIMIT n) walks
// the newest polls and probes votes/skips for each; a user who answered the newest 40k polls
// makes every page probe 40k rows. Instead, per instance:
//   - an index of every poll id (32-bit CRoaring bitmaps: all ids, and one per tag), loaded at
//     start by Refresh() and kept current by poll-created events (FeedState::AddPoll[Index])
//     plus a periodic catch-up Refresh() that re-reads the last kRefreshMargin ids, so polls
//     committed out of id order are not missed;
//   - each active user's answered (voted or skipped) set as a compressed bitmap, loaded once
//     from the database, updated by that user's votes and skips and by vote/skip events from
//     other instances (FeedState::MarkAnswered), kept in an LRU of user_cache_size users;
//   - poll details in an LRU of poll_cache_size polls.
// A page is the newest candidates (tag bitmap or all) below the cursor's id not in the answered
// set (domain::PickUnseen: a short walk, then set difference over growing id windows), limit+1
// of them to know whether another page follows. The in-memory set may lag (an event from
// another instance still in flight, a vote racing the load), so before answering, one indexed
// query (answered_among) checks the chosen ids against votes and skips; any hit joins the set
// and the page is picked again. A vote answered 200 is committed, so the very next feed call
// from any instance sees it in that check: the answer is exact. The cost of a page depends on
// the page size and on how far below the bound the unseen polls are, not on how many polls exist
// or how many the user answered; the database work is one primary-key probe per chosen id.
//
// Text search (q) runs in PostgreSQL (GIN index on polls.search, answered polls excluded in the
// query); its cost grows with the number of matches above the cursor. Ids beyond 2^32 - 1 do
// not fit the index: once one is seen, every page is answered by the same kind of SQL query.
//
// The cursor is the last id shown, MAC-protected and bound to the user and the filters
// (domain::CursorCodec); id order is creation order, so it stays right whatever the user
// answers between pages. page=N skips (N-1)*limit unseen polls below the cursor, if any.
//
// Locking: the index sits behind a shared_mutex (readers: page picks; writers: events,
// refresh); each user set has its own mutex, taken after the index lock; the two LRUs have one
// mutex each, never held while taking another lock. No lock is held across co_await.
#include "services/feed_service.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/steady_timer.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <limits>
#include <mutex>
#include <shared_mutex>
#include <unordered_map>
#include <unordered_set>
#include <utility>

#include "domain/answered_set.hpp"
#include "domain/feed_index.hpp"
#include "http/errors.hpp"

namespace vote::services {
namespace {

constexpr int kMaxLimit = 50;
// Offsets up to this many polls are checked against the database like the page itself, so
// page=N is exact too; deeper offsets (seed-era clients paging far) check only the page.
constexpr std::size_t kMaxCheckedOffset = 1000;
// Picks per page; each one after the first follows a hit in the database check.
constexpr int kMaxPickRounds = 3;
// A user's set that lags the stored answer sequence this long (events from other instances
// late or lost) is loaded again; until then every page is checked id by id.
constexpr std::chrono::milliseconds kReloadAfter{1000};
// Catch-up re-reads this many ids below the highest one it has seen: a poll whose transaction
// committed after a higher id's is still picked up.
constexpr std::int64_t kRefreshMargin = 1000;
constexpr int kRefreshBatch = 50000;
// After this many rows in one refresh (the start-up load), bitmaps are compressed again.
constexpr std::size_t kOptimizeAfter = 10000;

bool IsBlank(const std::string& text) {
  return std::all_of(text.begin(), text.end(), [](unsigned char c) { return std::isspace(c) != 0; });
}

std::vector<std::int64_t> Ids(const storage::Result& result) {
  std::vector<std::int64_t> ids;
  ids.reserve(static_cast<std::size_t>(result.Rows()));
  for (int row = 0; row < result.Rows(); ++row) {
    ids.push_back(result.Int(row, 0));
  }
  return ids;
}

// One user's answered polls (domain::AnsweredSet). `loaded` turns true once the database's set
// has been merged in; before that the entry only collects answers that arrive while the load
// runs. `reload` asks the next page to load it again (its events are late or lost).
struct UserAnswered {
  std::mutex mutex;
  domain::AnsweredSet set;
  std::atomic<bool> loaded{false};
  std::atomic<bool> reload{false};

  void Add(std::int64_t poll_id, std::int64_t seq) {
    std::lock_guard lock(mutex);
    set.Add(poll_id, seq);
  }
};

struct IndexedPoll {
  std::int64_t id = 0;
  std::vector<std::string> tags;
};

asio::awaitable<void> LoadAnswered(storage::Pool& pg, std::int64_t user_id, UserAnswered& user) {
  user.reload = false;
  auto params = storage::MakeParams(user_id);
  auto result = co_await pg.Execute(sql::kAnsweredPolls, params);
  const auto seq = result.Int(0, 0);
  auto ids = result.IntArray(0, 1);
  std::sort(ids.begin(), ids.end());
  {
    // Concurrent loads of one user merge: each holds everything committed before it started.
    std::lock_guard lock(user.mutex);
    user.set.Load(ids, seq);
    user.loaded = true;
  }
}

}  // namespace

struct FeedState::Impl {
  explicit Impl(const config::FeedConfig& config)
      : users(static_cast<std::size_t>(std::max(1, config.user_cache_size))),
        polls(static_cast<std::size_t>(std::max(1, config.poll_cache_size))) {}

  // Index.
  void AddToIndex(const std::vector<IndexedPoll>& batch) {
    bool overflow = false;
    {
      std::unique_lock lock(index_mutex);
      for (const auto& poll : batch) {
        overflow |= !index.Add(poll.id, poll.tags);
      }
    }
    if (overflow && !overflowed.exchange(true)) {
      spdlog::warn("feed: a poll id above {} does not fit the index; the feed now runs on SQL",
                   domain::kMaxIndexedPollId);
    }
  }
  void OptimizeIndex() {
    std::unique_lock lock(index_mutex);
    index.Optimize();
  }
  std::uint64_t IndexSize() const {
    std::shared_lock lock(index_mutex);
    return index.Size();
  }
  bool Indexed(std::int64_t poll_id) const {
    if (!domain::Indexable(poll_id)) return false;
    std::shared_lock lock(index_mutex);
    return index.Candidates(std::nullopt)->contains(static_cast<std::uint32_t>(poll_id));
  }
  // The newest poll this instance has indexed (from its refreshes, its own writes and events).
  std::int64_t NewestIndexed() const {
    std::shared_lock lock(index_mutex);
    const Roaring* all = index.Candidates(std::nullopt);
    return all->isEmpty() ? 0 : static_cast<std::int64_t>(all->maximum());
  }
  // The unseen ids, and how far the user's set was complete when they were picked.
  std::pair<std::vector<std::int64_t>, std::int64_t> Pick(UserAnswered& user, const std::optional<std::string>& tag,
                                                          std::optional<std::int64_t> before, std::size_t skip,
                                                          std::size_t count) const {
    std::shared_lock index_lock(index_mutex);
    const Roaring* candidates = index.Candidates(tag);
    std::lock_guard user_lock(user.mutex);
    if (candidates == nullptr) return {{}, user.set.CompleteThrough()};
    return {domain::PickUnseen(*candidates, user.set.Polls(), before, skip, count), user.set.CompleteThrough()};
  }

  // Users. A miss inserts an entry that is not loaded yet, so answers arriving during the
  // load are kept.
  std::shared_ptr<UserAnswered> User(std::int64_t user_id) {
    std::lock_guard lock(users_mutex);
    if (auto* found = users.Get(user_id)) return *found;
    return users.Put(user_id, std::make_shared<UserAnswered>());
  }
  std::shared_ptr<UserAnswered> CachedUser(std::int64_t user_id) {
    std::lock_guard lock(users_mutex);
    auto* found = users.Peek(user_id);
    return found != nullptr ? *found : nullptr;
  }
  std::size_t CachedUsers() {
    std::lock_guard lock(users_mutex);
    return users.Size();
  }

  // Poll details.
  // The cached polls, one per id (null where not cached).
  std::vector<PollPtr> FindPolls(const std::vector<std::int64_t>& ids) {
    std::vector<PollPtr> found(ids.size());
    std::lock_guard lock(polls_mutex);
    for (std::size_t i = 0; i < ids.size(); ++i) {
      if (auto* poll = polls.Get(ids[i])) found[i] = *poll;
    }
    return found;
  }
  void StorePoll(std::shared_ptr<const domain::Poll> poll) {
    const auto id = poll->id;
    std::lock_guard lock(polls_mutex);
    polls.Put(id, std::move(poll));
  }

  mutable std::shared_mutex index_mutex;
  domain::PollIndex index;
  std::atomic<bool> overflowed{false};
  std::atomic<std::int64_t> refreshed_up_to{0};  // highest id Refresh() has read

  std::mutex users_mutex;
  domain::LruCache<std::int64_t, std::shared_ptr<UserAnswered>> users;

  std::mutex polls_mutex;
  domain::LruCache<std::int64_t, std::shared_ptr<const domain::Poll>> polls;
};

FeedState::FeedState(const config::FeedConfig& config) : impl_(std::make_unique<Impl>(config)) {}

FeedState::~FeedState() = default;

void FeedState::AddPoll(const domain::Poll& poll) {
  AddPollIndex(poll.id, poll.tags);
  impl_->StorePoll(std::make_shared<const domain::Poll>(domain::WithFeedJson(poll)));
}

void FeedState::AddPollIndex(std::int64_t id, const std::vector<std::string>& tags) {
  impl_->AddToIndex({IndexedPoll{id, tags}});
}

void FeedState::MarkAnswered(std::int64_t user_id, std::int64_t poll_id, std::int64_t seq) {
  // A user not in memory is loaded from the database, answer included, when next needed.
  if (auto user = impl_->CachedUser(user_id)) user->Add(poll_id, seq);
}

// The cache sizes in `config` belong to FeedState; the service itself has no settings.
FeedService::FeedService(storage::Pool& pg, FeedState& state, const config::FeedConfig& config,
                         metrics::Metrics& metrics, std::string cursor_key)
    : pg_(pg), state_(state), metrics_(metrics), cursor_codec_(cursor_key) {}

asio::awaitable<FeedPage> FeedService::Page(const FeedQuery& query) {
  FeedQuery q = query;
  q.limit = std::clamp(q.limit, 1, kMaxLimit);
  if (q.text && IsBlank(*q.text)) q.text.reset();
  // An empty cursor is a client with nothing to pass back, not a forged one.
  if (q.cursor && q.cursor->empty()) q.cursor.reset();

  const domain::CursorBinding binding{q.user_id, q.tag, q.text};
  std::optional<std::int64_t> before;
  if (q.cursor) {
    before = cursor_codec_.Decode(binding, *q.cursor);
    if (!before) throw http::BadRequest("invalid_cursor", "the cursor was not issued for this feed");
  }
  const auto limit = static_cast<std::size_t>(q.limit);
  const std::size_t offset = q.page && *q.page > 1 ? static_cast<std::size_t>(*q.page - 1) * limit : 0;

  std::vector<std::int64_t> ids;
  if (q.text || state_.impl().overflowed.load()) {
    ids = co_await SqlIds(q, before, offset);
  } else {
    ids = co_await IndexIds(q, before, offset);
  }
  const bool more = ids.size() > limit;
  if (more) ids.resize(limit);

  FeedPage page;
  page.polls = co_await Polls(ids);
  if (more) page.next_cursor = cursor_codec_.Encode(binding, ids.back());
  co_return page;
}

asio::awaitable<std::vector<std::int64_t>> FeedService::IndexIds(const FeedQuery& query,
                                                                 std::optional<std::int64_t> before,
                                                                 std::size_t offset) {
  auto& impl = state_.impl();
  // The cursor's poll was shown, so it exists. If this instance has not indexed it, the cursor
  // comes from an instance that knows newer polls than we do (their events or our refresh are
  // still on the way): catch up now, or the polls between our newest and the cursor would be
  // skipped for good.
  if (before && !impl.Indexed(*before)) co_await Refresh();
  const auto user = impl.User(query.user_id);
  const bool hit = user->loaded.load();
  metrics_.Cache("answered", hit).Increment();
  if (!hit || user->reload.load()) {
    metrics_.FeedCachedUsers().Set(static_cast<double>(impl.CachedUsers()));
    co_await LoadAnswered(pg_, query.user_id, *user);
  }

  const std::size_t want = static_cast<std::size_t>(query.limit) + 1;
  const bool check_offset = offset <= kMaxCheckedOffset;
  const std::size_t skip = check_offset ? 0 : offset;
  const std::size_t count = check_offset ? offset + want : want;
  std::vector<std::int64_t> ids;
  bool caught_up = false;
  for (int round = 1;; ++round) {
    auto picked = impl.Pick(*user, query.tag, before, skip, count);
    ids = std::move(picked.first);
    // The check runs for an empty pick too: it also says which poll is the newest stored.
    const auto check = co_await AnsweredAmong(query.user_id, picked.second, ids);
    // Read-your-writes across instances: a poll created through another instance a moment ago
    // may not have reached this index yet (its event is in flight). The check names the newest
    // stored poll; if this index lacks it, catch up now and pick again, so no correctness rests
    // on an event arriving in time.
    if (!caught_up && check.newest_poll > impl.NewestIndexed()) {
      caught_up = true;
      co_await Refresh();
      continue;
    }
    if (ids.empty()) break;
    metrics_.FeedCheck(check.stored_seq == picked.second).Increment();
    {
      std::lock_guard lock(user->mutex);
      user->set.AddPolls(check.hits);
      if (user->set.Observe(check.stored_seq, picked.second, std::chrono::steady_clock::now(), kReloadAfter)) {
        user->reload = true;
      }
    }
    if (check.hits.empty()) break;
    if (round == kMaxPickRounds) {
      // Still racing the user's answers: leave the answered ones out rather than loop on.
      const std::unordered_set<std::int64_t> drop(check.hits.begin(), check.hits.end());
      std::erase_if(ids, [&drop](std::int64_t id) { return drop.contains(id); });
      break;
    }
  }
  if (check_offset) ids.erase(ids.begin(), ids.begin() + static_cast<std::ptrdiff_t>(std::min(offset, ids.size())));
  co_return ids;
}

struct FeedService::Check {
  explicit Check(asio::any_io_executor ex) : done(ex, asio::steady_timer::time_point::max()) {}
  std::int64_t user_id = 0;
  std::int64_t known_seq = 0;
  std::vector<std::int64_t> ids;
  CheckResult result;
  std::exception_ptr error;
  asio::steady_timer done;  // cancelled when the group's answer is in
};

asio::awaitable<FeedService::CheckResult> FeedService::AnsweredAmong(std::int64_t user_id, std::int64_t known_seq,
                                                                     const std::vector<std::int64_t>& ids) {
  auto ex = co_await asio::this_coro::executor;
  auto check = std::make_shared<Check>(ex);
  check->user_id = user_id;
  check->known_seq = known_seq;
  check->ids = ids;
  checks_.push_back(check);
  if (!checking_) {
    checking_ = true;
    asio::co_spawn(ex, RunChecks(), asio::detached);
  }
  boost::system::error_code ec;
  co_await check->done.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  if (check->error) std::rethrow_exception(check->error);
  co_return std::move(check->result);
}

asio::awaitable<void> FeedService::RunChecks() {
  // Feed checks that arrive while one query runs wait and then go together in one: one
  // statement instead of one per request. Each query starts after every check it carries
  // arrived, so it sees every answer acknowledged before those requests: still exact.
  constexpr std::size_t kMaxGroup = 256;
  while (!checks_.empty()) {
    const auto take = std::min(checks_.size(), kMaxGroup);
    std::vector<std::shared_ptr<Check>> group(checks_.begin(), checks_.begin() + static_cast<std::ptrdiff_t>(take));
    checks_.erase(checks_.begin(), checks_.begin() + static_cast<std::ptrdiff_t>(take));
    std::vector<std::int64_t> users;
    std::vector<std::int64_t> known;
    std::vector<int> first;
    std::vector<int> last;
    std::vector<std::int64_t> polls;
    for (const auto& check : group) {
      users.push_back(check->user_id);
      known.push_back(check->known_seq);
      first.push_back(static_cast<int>(polls.size()) + 1);  // SQL arrays count from 1
      polls.insert(polls.end(), check->ids.begin(), check->ids.end());
      last.push_back(static_cast<int>(polls.size()));
    }
    try {
      auto params = storage::MakeParams(users, known, first, last, polls);
      auto result = co_await pg_.Execute(sql::kAnsweredAmongMany, params);
      for (int row = 0; row < result.Rows(); ++row) {
        const auto index = static_cast<std::size_t>(result.Int(row, 0) - 1);
        if (index >= group.size()) continue;
        auto& out = group[index]->result;
        out.stored_seq = result.Int(row, 1);
        if (!result.IsNull(row, 2)) out.hits.push_back(result.Int(row, 2));
        out.newest_poll = result.Int(row, 3);
      }
    } catch (const std::exception&) {
      for (auto& check : group) check->error = std::current_exception();
    }
    for (auto& check : group) check->done.cancel();
  }
  checking_ = false;
}

asio::awaitable<std::vector<std::int64_t>> FeedService::SqlIds(const FeedQuery& query,
                                                               std::optional<std::int64_t> before, std::size_t offset) {
  const std::int64_t bound = before.value_or(std::numeric_limits<std::int64_t>::max());
  const std::int64_t take = static_cast<std::int64_t>(query.limit) + 1;
  const auto skip = static_cast<std::int64_t>(offset);
  if (query.text) {
    auto params = storage::MakeParams(query.user_id, *query.text, query.tag, bound, take, skip);
    auto result = co_await pg_.Execute(sql::kSearchFeed, params);
    co_return Ids(result);
  }
  auto params = storage::MakeParams(query.user_id, query.tag, bound, take, skip);
  auto result = co_await pg_.Execute(sql::kUnseenFeed, params);
  co_return Ids(result);
}

asio::awaitable<std::vector<PollPtr>> FeedService::Polls(const std::vector<std::int64_t>& ids) {
  auto& impl = state_.impl();
  auto polls = impl.FindPolls(ids);
  std::vector<std::int64_t> missing;
  for (std::size_t i = 0; i < ids.size(); ++i) {
    if (!polls[i] && std::find(missing.begin(), missing.end(), ids[i]) == missing.end()) missing.push_back(ids[i]);
  }
  const auto misses = static_cast<std::size_t>(std::count(polls.begin(), polls.end(), nullptr));
  if (misses < ids.size()) metrics_.Cache("poll", true).Increment(static_cast<double>(ids.size() - misses));
  if (misses > 0) metrics_.Cache("poll", false).Increment(static_cast<double>(misses));
  if (!missing.empty()) {
    auto params = storage::MakeParams(missing);
    auto result = co_await pg_.Execute(sql::kFindPolls, params);
    for (int row = 0; row < result.Rows(); ++row) {
      auto poll = std::make_shared<const domain::Poll>(domain::WithFeedJson(
          domain::Poll{result.Int(row, 0), std::string(result.Text(row, 1)), result.TextArray(row, 2),
                       result.TextArray(row, 3), result.Int(row, 4), std::string(result.Text(row, 5)), nullptr}));
      for (std::size_t i = 0; i < ids.size(); ++i) {
        if (ids[i] == poll->id) polls[i] = poll;
      }
      impl.StorePoll(std::move(poll));
    }
    // Unknown ids are left out.
    std::erase(polls, nullptr);
  }
  co_return polls;
}

asio::awaitable<void> FeedService::Refresh() {
  auto& impl = state_.impl();
  std::int64_t since = std::max<std::int64_t>(0, impl.refreshed_up_to.load() - kRefreshMargin);
  std::size_t rows_read = 0;
  for (;;) {
    auto params = storage::MakeParams(since, kRefreshBatch);
    auto result = co_await pg_.Execute(sql::kPollIndexSince, params);
    const int rows = result.Rows();
    std::vector<IndexedPoll> batch;
    batch.reserve(static_cast<std::size_t>(rows));
    for (int row = 0; row < rows; ++row) {
      batch.push_back(IndexedPoll{result.Int(row, 0), result.TextArray(row, 1)});
    }
    impl.AddToIndex(batch);
    rows_read += batch.size();
    if (!batch.empty()) since = batch.back().id;
    if (rows < kRefreshBatch) break;
  }
  auto seen = impl.refreshed_up_to.load();
  while (since > seen && !impl.refreshed_up_to.compare_exchange_weak(seen, since)) {
  }
  if (rows_read >= kOptimizeAfter) {
    impl.OptimizeIndex();
    spdlog::info("feed: index holds {} polls", impl.IndexSize());
  }
  metrics_.FeedIndexPolls().Set(static_cast<double>(impl.IndexSize()));
  metrics_.FeedCachedUsers().Set(static_cast<double>(impl.CachedUsers()));
}

}  // namespace vote::services
