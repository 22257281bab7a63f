#pragma once

#include <boost/json.hpp>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace vote::realtime {

// A connection may follow at most this many polls; a message may name at most this many.
inline constexpr std::size_t kMaxSubscriptions = 1000;

enum class ClientAction { kSubscribe, kUnsubscribe };

// A well-formed client message: the ids are positive, distinct and in the order sent.
struct ClientMessage {
  ClientAction action;
  std::vector<std::int64_t> poll_ids;
};

// Why a client message was refused; sent back as a `bad_message` error.
struct BadMessage {
  std::string reason;
};

// Parses `{"type":"subscribe"|"unsubscribe","pollIds":[...]}`; anything else is a BadMessage.
std::variant<ClientMessage, BadMessage> ParseClientMessage(std::string_view text);

// Server messages, serialized once and shared by every recipient.
std::string AckMessage(ClientAction action, const std::vector<std::int64_t>& poll_ids);
std::string StatsMessage(const boost::json::object& stats);
std::string PollCreatedMessage(const boost::json::object& poll);
std::string BadMessageError(std::string_view reason);

}  // namespace vote::realtime
