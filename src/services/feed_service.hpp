#pragma once

#include <boost/asio/awaitable.hpp>

#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "config/config.hpp"
#include "domain/cursor.hpp"
#include "domain/poll.hpp"
#include "metrics/metrics.hpp"
#include "storage/pg.hpp"

namespace vote::services {

namespace asio = boost::asio;

struct FeedQuery {
  std::int64_t user_id = 0;
  std::optional<std::string> tag;     // already normalised (trimmed, lower-case)
  std::optional<std::string> text;    // q
  int limit = 10;
  std::optional<std::string> cursor;  // as received; validated by the service
  std::optional<int> page;            // seed-era offset paging, 1-based
};

// Polls are shared with the poll cache (they never change): a page copies pointers, not polls.
using PollPtr = std::shared_ptr<const domain::Poll>;

struct FeedPage {
  std::vector<PollPtr> polls;
  std::optional<std::string> next_cursor;
};

class FeedState;  // process-wide: poll index, answered sets, poll details (thread-safe)

// The feed: newest unseen polls for a user, filtered by tag and/or words.
// One instance per event-loop thread, sharing one FeedState.
class FeedService {
 public:
  FeedService(storage::Pool& pg, FeedState& state, const config::FeedConfig& config, metrics::Metrics& metrics,
              std::string cursor_key);

  // Throws ApiError 400 invalid_cursor for a cursor the server did not issue.
  asio::awaitable<FeedPage> Page(const FeedQuery& query);
  // Poll details by id (cache first); unknown ids are left out.
  asio::awaitable<std::vector<PollPtr>> Polls(const std::vector<std::int64_t>& ids);
  // Loads polls created since the last call (by any instance) into the index; called
  // periodically and at start.
  asio::awaitable<void> Refresh();

 private:
  // The page's ids, newest first, one more than the limit when more follow: picked from the
  // in-memory index, or (SqlIds) by the database for text search and ids beyond the index.
  asio::awaitable<std::vector<std::int64_t>> IndexIds(const FeedQuery& query, std::optional<std::int64_t> before,
                                                      std::size_t offset);
  asio::awaitable<std::vector<std::int64_t>> SqlIds(const FeedQuery& query, std::optional<std::int64_t> before,
                                                    std::size_t offset);

  // The user's stored answer sequence and, unless it equals `known_seq` (the set the ids were
  // picked from is then exact), which of `ids` the user has voted on or skipped. Checks that
  // arrive while one is running are grouped into one query (see RunChecks).
  struct CheckResult {
    std::int64_t stored_seq = 0;
    std::vector<std::int64_t> hits;
    std::int64_t newest_poll = 0;  // the highest poll id stored when the check ran
  };
  asio::awaitable<CheckResult> AnsweredAmong(std::int64_t user_id, std::int64_t known_seq,
                                             const std::vector<std::int64_t>& ids);
  asio::awaitable<void> RunChecks();

  struct Check;
  storage::Pool& pg_;
  FeedState& state_;
  metrics::Metrics& metrics_;
  domain::CursorCodec cursor_codec_;  // keyed by cursor_key; the key itself is not kept
  std::deque<std::shared_ptr<Check>> checks_;
  bool checking_ = false;
};

// Process-wide feed state. The app creates one and hands it to every FeedService; events and
// local writes keep it current.
class FeedState {
 public:
  explicit FeedState(const config::FeedConfig& config);
  ~FeedState();

  void AddPoll(const domain::Poll& poll);  // index + details cache
  void AddPollIndex(std::int64_t id, const std::vector<std::string>& tags);
  // A vote or skip by `user_id` on `poll_id`, from this or another instance; `seq` is its place
  // in the user's answer sequence (0 when unknown).
  void MarkAnswered(std::int64_t user_id, std::int64_t poll_id, std::int64_t seq);

  struct Impl;
  Impl& impl() { return *impl_; }

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace vote::services
