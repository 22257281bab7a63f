#include "services/poll_service.hpp"

#include "http/errors.hpp"

namespace vote::services {

PollService::PollService(storage::Pool& pg, FeedService& feed, StatsCache& stats, cache::Redis& redis,
                         PollCreatedListener& listener, metrics::Metrics& metrics, std::string_view cursor_secret)
    : pg_(pg),
      feed_(feed),
      stats_(stats),
      redis_(redis),
      listener_(listener),
      metrics_(metrics),
      cursor_codec_(cursor_secret) {}

asio::awaitable<domain::Poll> PollService::Create(std::int64_t creator_id, domain::NewPoll poll) {
  auto params = storage::MakeParams(poll.title, poll.options, poll.tags, creator_id);
  auto result = co_await pg_.Execute(sql::kInsertPoll, params);
  domain::Poll created{result.Int(0, 0),       std::string(result.Text(0, 1)), result.TextArray(0, 2),
                       result.TextArray(0, 3), result.Int(0, 4),               std::string(result.Text(0, 5)), nullptr};
  metrics_.PollCreated().Increment();
  listener_.OnPollCreated(created);
  co_return created;
}

asio::awaitable<PollView> PollService::Get(std::int64_t user_id, std::int64_t poll_id) {
  std::vector<std::int64_t> ids{poll_id};
  auto polls = co_await feed_.Polls(ids);
  if (polls.empty()) throw http::NotFound("poll_not_found", "no poll with that id");
  PollView view{*polls.front(), std::nullopt, std::nullopt};
  auto params = storage::MakeParams(user_id, poll_id);
  auto answer = co_await pg_.Execute(sql::kFindAnswer, params);
  if (!answer.IsNull(0, 0)) view.my_vote = static_cast<int>(answer.Int(0, 0));
  if (view.my_vote || answer.Bool(0, 1)) view.stats = co_await Stats(poll_id);
  co_return view;
}

asio::awaitable<PollPage> PollService::Mine(std::int64_t user_id, MyList list, int limit,
                                            const std::optional<std::string>& cursor) {
  // The binding's text names the list, so a cursor of one list is refused by the other (and by
  // the feed, whose q can never hold a control character).
  const domain::CursorBinding binding{user_id, std::nullopt,
                                      std::string(list == MyList::kCreated ? "\x01created" : "\x01voted")};
  std::int64_t before = std::numeric_limits<std::int64_t>::max();
  if (cursor) {
    const auto last = cursor_codec_.Decode(binding, *cursor);
    if (!last) throw http::BadRequest("invalid_cursor", "the cursor was not issued for this list");
    before = *last;
  }
  auto params = storage::MakeParams(user_id, before, limit + 1);
  auto rows = co_await pg_.Execute(list == MyList::kCreated ? sql::kMyPolls : sql::kMyVotes, params);
  std::vector<std::int64_t> ids;
  std::vector<std::optional<int>> votes;
  for (int row = 0; row < rows.Rows(); ++row) {
    ids.push_back(rows.Int(row, 0));
    votes.push_back(rows.IsNull(row, 1) ? std::nullopt : std::optional<int>(static_cast<int>(rows.Int(row, 1))));
  }
  PollPage page;
  const bool more = ids.size() > static_cast<std::size_t>(limit);
  if (more) {
    ids.resize(static_cast<std::size_t>(limit));
    page.next_cursor = cursor_codec_.Encode(binding, ids.back());
  }
  const auto polls = co_await feed_.Polls(ids);
  for (const auto& poll : polls) {
    const auto at = static_cast<std::size_t>(std::find(ids.begin(), ids.end(), poll->id) - ids.begin());
    // The author sees the counts of their own polls; a voter those of the polls voted on.
    auto counts = co_await stats_.Get(poll->id);
    page.polls.push_back(PollView{*poll, at < votes.size() ? votes[at] : std::nullopt, std::move(counts)});
  }
  co_return page;
}

asio::awaitable<domain::Stats> PollService::Stats(std::int64_t poll_id) {
  auto stats = co_await stats_.Get(poll_id);
  if (!stats) throw http::NotFound("poll_not_found", "no poll with that id");
  co_return std::move(*stats);
}

asio::awaitable<std::vector<domain::Poll>> PollService::Hot(int limit) {
  std::vector<std::int64_t> ids;
  if (redis_.Connected()) {
    try {
      std::vector<std::string> args{"ZREVRANGE", "poll:stats:hot", "0", std::to_string(limit - 1)};
      auto reply = co_await redis_.Command(std::move(args));
      for (const auto& e : reply.elements) ids.push_back(std::stoll(e.str));
    } catch (const cache::RedisError&) {
      // No analytics without Redis: an empty list is the honest answer.
    } catch (const std::logic_error&) {
    }
  }
  const auto found = co_await feed_.Polls(ids);
  std::vector<domain::Poll> polls;
  polls.reserve(found.size());
  for (const auto& poll : found) polls.push_back(*poll);
  co_return polls;
}

}  // namespace vote::services
