#pragma once

#include <boost/json.hpp>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "http/errors.hpp"

namespace vote::domain {

// A poll as stored; immutable once created.
struct Poll {
  std::int64_t id = 0;
  std::string title;
  std::vector<std::string> options;
  std::vector<std::string> tags;
  std::int64_t creator_id = 0;
  std::string created_at;  // RFC 3339, UTC
  // The poll as a feed shows it (unanswered: myVote null, no stats), serialized once: polls
  // never change, and the feed sends the same few polls to everyone. Null until WithFeedJson.
  std::shared_ptr<const std::string> feed_json;
};

// The poll with feed_json filled in.
Poll WithFeedJson(Poll poll);

struct NewPoll {
  std::string title;
  std::vector<std::string> options;
  std::vector<std::string> tags;
};

// Per-option vote counts of one poll.
struct Stats {
  std::int64_t poll_id = 0;
  std::vector<std::string> options;
  std::vector<std::int64_t> votes;
  std::int64_t Total() const;
};

// Applies the poll rules of the API contract: trims, lower-cases tags, merges duplicate tags,
// refuses everything else with validation_failed details.
NewPoll ValidateNewPoll(const boost::json::object& body);
// A tag as stored: 1-32 characters of a-z, 0-9 and '-' (lower-cased and trimmed first).
bool IsTag(std::string_view text);

boost::json::object ToJson(const Poll& poll);
// A poll with the caller's answer: myVote and, once answered, stats.
boost::json::object ToJson(const Poll& poll, std::optional<int> my_vote, const Stats* stats);
boost::json::object ToJson(const Stats& stats);

}  // namespace vote::domain
