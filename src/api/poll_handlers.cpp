#include <charconv>

#include "api/handlers.hpp"
#include "domain/text.hpp"
#include "http/errors.hpp"

namespace vote::api {
namespace {

namespace json = boost::json;

std::optional<int> ParseInt(const std::string& text) {
  int value = 0;
  const auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc{} || ptr != text.data() + text.size()) return std::nullopt;
  return value;
}

int OptionIndex(const json::object& body) {
  const auto* value = body.if_contains("optionIndex");
  if (value != nullptr && value->is_int64() && value->as_int64() >= 0 && value->as_int64() <= 1000) {
    return static_cast<int>(value->as_int64());
  }
  if (value != nullptr && value->is_int64()) return -1;  // out of range: the poll's rules answer it
  throw http::BadRequest("invalid_option", "optionIndex must be an integer index of one of the options");
}

services::FeedQuery ParseFeedQuery(const Request& req) {
  services::FeedQuery query;
  query.user_id = req.User();
  std::vector<http::FieldError> errors;
  if (auto limit = req.Query("limit")) {
    const auto value = ParseInt(*limit);
    if (!value || *value < 1 || *value > 50) {
      errors.push_back({"limit", "must be an integer from 1 to 50"});
    } else {
      query.limit = *value;
    }
  }
  if (auto page = req.Query("page")) {
    const auto value = ParseInt(*page);
    if (!value || *value < 1 || *value > 100000) {
      errors.push_back({"page", "must be a positive integer"});
    } else {
      query.page = *value;
    }
  }
  if (auto tag = req.Query("tag")) {
    auto normalized = domain::AsciiLower(domain::Trim(*tag));
    if (!domain::IsTag(normalized) && !normalized.empty()) {
      errors.push_back({"tag", "must be 1-32 characters of a-z, 0-9 and '-'"});
    } else if (!normalized.empty()) {
      query.tag = std::move(normalized);
    }
  }
  if (auto text = req.Query("q")) {
    auto trimmed = domain::Trim(*text);
    if (trimmed.size() > 200) {
      errors.push_back({"q", "must be at most 200 characters"});
    } else if (domain::Utf8Length(trimmed) < 0 || domain::HasControlCharacters(trimmed)) {
      errors.push_back({"q", "must be UTF-8 text without control characters"});
    } else if (!trimmed.empty()) {
      query.text = std::move(trimmed);
    }
  }
  if (auto cursor = req.Query("cursor")) {
    if (!cursor->empty()) query.cursor = std::move(*cursor);
  }
  if (!errors.empty()) throw http::ValidationFailed(std::move(errors));
  return query;
}

json::object VoteJson(const services::VoteResult& result) {
  return {{"pollId", result.poll_id},
          {"optionIndex", result.option_index},
          {"stats", domain::ToJson(result.stats)},
          {"votesRemainingToday", result.votes_remaining_today}};
}

// Replays the stored answer for a repeated Idempotency-Key, or runs `handle` and stores its
// answer (success or a 4xx the rules gave). A key reused for another request is refused.
template <typename Handle>
awaitable<Response> Idempotent(Request& req, Services& s, Handle handle) {
  const std::string key(req.Header("Idempotency-Key"));
  if (key.empty()) co_return co_await handle();
  if (key.size() > 255) throw http::BadRequest("invalid_idempotency_key", "Idempotency-Key must be at most 255 characters");
  const auto user = req.User();
  const std::string route = std::string(req.message.method_string()) + " " + std::string(req.Path());
  if (auto stored = co_await s.idempotency.Find(user, key)) {
    if (stored->route != route) {
      throw http::ApiError(http::Status::unprocessable_entity, "idempotency_key_reused",
                           "this Idempotency-Key was used for another request");
    }
    Response replay{static_cast<http::Status>(stored->status), 11};
    replay.set(http::beast_http::field::content_type, "application/json");
    replay.set("Idempotent-Replayed", "true");
    // Only the daily vote limit answers a handler's 429 (rate limits answer before it), and its
    // Retry-After is part of the answer: counted from now, as for a fresh refusal.
    if (replay.result() == http::Status::too_many_requests) {
      replay.set(http::beast_http::field::retry_after, std::to_string(s.votes.SecondsToLimitReset()));
    }
    replay.body() = stored->body;
    replay.prepare_payload();
    co_return replay;
  }
  Response response;
  try {
    response = co_await handle();
  } catch (const http::ApiError& e) {
    response = http::ErrorResponse(e);
  }
  const auto status = static_cast<int>(response.result_int());
  if (status < 500) {
    services::StoredAnswer answer{route, status, response.body()};
    co_await s.idempotency.Store(user, key, answer);
  }
  co_return response;
}

}  // namespace

awaitable<Response> CreatePoll(Request& req, Services& s) {
  auto poll = domain::ValidateNewPoll(req.JsonBody());
  const auto created = co_await s.polls.Create(req.User(), std::move(poll));
  auto response = http::JsonResponse(http::Status::created, domain::ToJson(created, std::nullopt, nullptr));
  response.set(http::beast_http::field::location, "/api/polls/" + std::to_string(created.id));
  co_return response;
}

awaitable<Response> Feed(Request& req, Services& s) {
  const auto query = ParseFeedQuery(req);
  const auto page = co_await s.feed.Page(query);
  // Feed polls are unanswered by definition (myVote null, no stats yet), so each one's JSON is
  // the same for everyone and was serialized once when it was cached.
  std::string body = R"({"polls":[)";
  for (std::size_t i = 0; i < page.polls.size(); ++i) {
    if (i > 0) body += ',';
    const auto& poll = *page.polls[i];
    body += poll.feed_json ? *poll.feed_json : http::SerializeJson(domain::ToJson(poll, std::nullopt, nullptr));
  }
  body += R"(],"nextCursor":)";
  body += page.next_cursor ? json::serialize(json::string(*page.next_cursor)) : std::string("null");
  body += '}';
  Response response{http::Status::ok, 11};
  response.set(http::beast_http::field::content_type, "application/json");
  response.body() = std::move(body);
  response.prepare_payload();
  co_return response;
}

awaitable<Response> HotPolls(Request& req, Services& s) {
  int limit = 10;
  if (auto text = req.Query("limit")) {
    const auto value = ParseInt(*text);
    if (!value || *value < 1 || *value > 50) {
      throw http::ValidationFailed({{"limit", "must be an integer from 1 to 50"}});
    }
    limit = *value;
  }
  const auto polls = co_await s.polls.Hot(limit);
  json::array items;
  for (const auto& poll : polls) items.push_back(domain::ToJson(poll));
  co_return http::JsonResponse(http::Status::ok, json::object{{"polls", std::move(items)}});
}

namespace {

awaitable<Response> MyList(Request& req, Services& s, services::MyList list) {
  int limit = 20;
  if (auto text = req.Query("limit")) {
    const auto value = ParseInt(*text);
    if (!value || *value < 1 || *value > 50) throw http::ValidationFailed({{"limit", "must be an integer from 1 to 50"}});
    limit = *value;
  }
  auto cursor = req.Query("cursor");
  if (cursor && cursor->empty()) cursor.reset();
  const auto page = co_await s.polls.Mine(req.User(), list, limit, cursor);
  json::array items;
  for (const auto& view : page.polls) {
    items.push_back(domain::ToJson(view.poll, view.my_vote, view.stats ? &*view.stats : nullptr));
  }
  co_return http::JsonResponse(http::Status::ok,
                               json::object{{"polls", std::move(items)},
                                            {"nextCursor", page.next_cursor ? json::value(*page.next_cursor)
                                                                            : json::value(nullptr)}});
}

}  // namespace

awaitable<Response> MyPolls(Request& req, Services& s) { return MyList(req, s, services::MyList::kCreated); }
awaitable<Response> MyVotes(Request& req, Services& s) { return MyList(req, s, services::MyList::kVoted); }

awaitable<Response> GetPoll(Request& req, Services& s) {
  const auto view = co_await s.polls.Get(req.User(), req.PathId("id", "poll_not_found"));
  const auto body = domain::ToJson(view.poll, view.my_vote, view.stats ? &*view.stats : nullptr);
  co_return http::JsonResponse(http::Status::ok, body);
}

awaitable<Response> CastVote(Request& req, Services& s) {
  const auto poll_id = req.PathId("id", "poll_not_found");
  const auto option = OptionIndex(req.JsonBody());
  auto handle = [&]() -> awaitable<Response> {
    const auto result = co_await s.votes.Cast(req.User(), poll_id, option);
    co_return http::JsonResponse(http::Status::ok, VoteJson(result));
  };
  co_return co_await Idempotent(req, s, std::move(handle));
}

awaitable<Response> SkipPoll(Request& req, Services& s) {
  const auto poll_id = req.PathId("id", "poll_not_found");
  req.JsonBody(true);  // `{}` or empty; anything else must still be well-formed JSON
  auto handle = [&]() -> awaitable<Response> {
    co_await s.votes.Skip(req.User(), poll_id);
    co_return http::JsonResponse(http::Status::ok, json::object{{"pollId", poll_id}, {"skipped", true}});
  };
  co_return co_await Idempotent(req, s, std::move(handle));
}

awaitable<Response> PollStats(Request& req, Services& s) {
  const auto stats = co_await s.polls.Stats(req.PathId("id", "poll_not_found"));
  co_return http::JsonResponse(http::Status::ok, domain::ToJson(stats));
}

}  // namespace vote::api
