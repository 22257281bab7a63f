#pragma once

#include <boost/json.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "events/event_bus.hpp"

namespace vote::events {

// One event on the broker: {"id","type","at","payload"}; "at" is when it was written (Unix
// seconds). The payload is already JSON (jsonb text).
std::string EncodeEvent(std::string_view id, std::string_view type, std::string_view at, std::string_view payload);

// A message carries one event, or an envelope {"events":[...]} of many: the relay packs the
// events of one batch and exchange into envelopes, because the broker's cost is per message
// (routing, persistence in every bound queue), not per byte.
struct DecodedEvent {
  Event event;
  std::optional<std::int64_t> at;
};
// Nothing when any part of the message is malformed (it is then dead-lettered).
std::optional<std::vector<DecodedEvent>> DecodeEvents(std::string_view body);

// The payload's pollId, when it is an integer.
std::optional<std::int64_t> PollId(const boost::json::object& payload);

}  // namespace vote::events
