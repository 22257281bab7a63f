#include "events/event_codec.hpp"

namespace vote::events {

std::string EncodeEvent(std::string_view id, std::string_view type, std::string_view at, std::string_view payload) {
  std::string body = R"({"id":)";
  body += boost::json::serialize(boost::json::string(id));
  body += R"(,"type":)";
  body += boost::json::serialize(boost::json::string(type));
  body += R"(,"at":)";
  body += at.empty() ? std::string_view("0") : at;
  body += R"(,"payload":)";
  body += payload;
  body += '}';
  return body;
}

namespace {

std::optional<Event> DecodeOne(boost::json::value& value, std::optional<std::int64_t>& at) {
  if (!value.is_object()) {
    return std::nullopt;
  }
  auto& object = value.as_object();
  const auto* id = object.if_contains("id");
  const auto* type = object.if_contains("type");
  auto* payload = object.if_contains("payload");
  if (id == nullptr || !id->is_string() || id->as_string().empty() || type == nullptr || !type->is_string() ||
      payload == nullptr || !payload->is_object()) {
    return std::nullopt;
  }
  if (const auto* when = object.if_contains("at"); when != nullptr && when->is_int64() && when->as_int64() > 0) {
    at = when->as_int64();
  }
  return Event{std::string(id->as_string()), std::string(type->as_string()), std::move(payload->as_object())};
}

}  // namespace

std::optional<std::vector<DecodedEvent>> DecodeEvents(std::string_view body) {
  boost::json::error_code ec;
  auto value = boost::json::parse(body, ec);
  if (ec || !value.is_object()) {
    return std::nullopt;
  }
  // A single event is read as an envelope of one.
  boost::json::array single;
  auto* items = &single;
  if (auto* events = value.as_object().if_contains("events")) {
    if (!events->is_array() || events->as_array().empty()) {
      return std::nullopt;
    }
    items = &events->as_array();
  } else {
    single.push_back(std::move(value));
  }
  std::vector<DecodedEvent> out;
  for (auto& item : *items) {
    std::optional<std::int64_t> at;
    auto event = DecodeOne(item, at);
    if (!event) {
      return std::nullopt;
    }
    out.push_back({std::move(*event), at});
  }
  return out;
}

std::optional<std::int64_t> PollId(const boost::json::object& payload) {
  const auto* v = payload.if_contains("pollId");
  if (v != nullptr && v->is_int64()) {
    return v->get_int64();
  }
  return std::nullopt;
}

}  // namespace vote::events
