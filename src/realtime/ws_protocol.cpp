#include "realtime/ws_protocol.hpp"

#include <limits>
#include <optional>
#include <unordered_set>
#include "http/types.hpp"

namespace vote::realtime {
namespace {

namespace json = boost::json;

constexpr std::string_view kBadIds = "pollIds must be an array of positive integers";

// A JSON number that is a positive 64-bit integer. 1.0 and 1e3 are refused: ids are integers.
std::optional<std::int64_t> PositiveId(const json::value& value) {
  if (value.is_int64() && value.get_int64() > 0) return value.get_int64();
  if (value.is_uint64() && value.get_uint64() <= static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
    return static_cast<std::int64_t>(value.get_uint64());
  }
  return std::nullopt;
}

json::array ToArray(const std::vector<std::int64_t>& ids) {
  json::array array;
  array.reserve(ids.size());
  for (const auto id : ids) array.emplace_back(id);
  return array;
}

}  // namespace

std::variant<ClientMessage, BadMessage> ParseClientMessage(std::string_view text) {
  json::parse_options options;
  options.max_depth = 8;
  boost::system::error_code ec;
  const auto value = json::parse(text, ec, {}, options);
  if (ec || !value.is_object()) return BadMessage{"the message must be a JSON object"};
  const auto& object = value.get_object();

  const auto* type = object.if_contains("type");
  if (type == nullptr || !type->is_string()) return BadMessage{"the message has no type"};
  ClientMessage message;
  if (type->get_string() == "subscribe") {
    message.action = ClientAction::kSubscribe;
  } else if (type->get_string() == "unsubscribe") {
    message.action = ClientAction::kUnsubscribe;
  } else {
    return BadMessage{"unknown message type"};
  }

  const auto* ids = object.if_contains("pollIds");
  if (ids == nullptr || !ids->is_array()) return BadMessage{std::string(kBadIds)};
  const auto& array = ids->get_array();
  // Checked before the ids are looked at, so a huge array costs no more than its parse.
  if (array.size() > kMaxSubscriptions) {
    return BadMessage{"at most " + std::to_string(kMaxSubscriptions) + " pollIds per message"};
  }
  std::unordered_set<std::int64_t> seen;
  message.poll_ids.reserve(array.size());
  for (const auto& element : array) {
    const auto id = PositiveId(element);
    if (!id) return BadMessage{std::string(kBadIds)};
    if (seen.insert(*id).second) message.poll_ids.push_back(*id);
  }
  return message;
}

std::string AckMessage(ClientAction action, const std::vector<std::int64_t>& poll_ids) {
  return json::serialize(json::object{
      {"type", action == ClientAction::kSubscribe ? "subscribed" : "unsubscribed"},
      {"pollIds", ToArray(poll_ids)},
  });
}

std::string StatsMessage(const json::object& stats) {
  return http::SerializeJson(json::object{{"type", "stats"}, {"stats", stats}});
}

std::string PollCreatedMessage(const json::object& poll) {
  return http::SerializeJson(json::object{{"type", "poll_created"}, {"poll", poll}});
}

std::string BadMessageError(std::string_view reason) {
  return json::serialize(json::object{
      {"type", "error"},
      {"error", json::object{{"code", "bad_message"}, {"message", reason}}},
  });
}

}  // namespace vote::realtime
