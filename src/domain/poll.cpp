#include "domain/poll.hpp"

#include <locale.h>
#include <wctype.h>

#include <algorithm>
#include <cctype>
#include <numeric>
#include <set>

#include "domain/text.hpp"

namespace vote::domain {
namespace {

namespace json = boost::json;
using http::FieldError;

bool IsTagChar(char ch) { return (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-'; }

// Reads a required string; records a detail and returns nothing when absent or not a string.
std::optional<std::string> StringField(const json::value* value, const std::string& field,
                                       std::vector<FieldError>& errors) {
  if (value == nullptr || !value->is_string()) {
    errors.push_back({field, "must be a string"});
    return std::nullopt;
  }
  return std::string(value->as_string());
}

// What "equal ignoring case" compares, beyond ASCII too ("Ä" and "ä" are one option): code
// points lower-cased with the C.UTF-8 locale's Unicode tables (ASCII only if it is missing).
// `text` is valid UTF-8 (checked by Utf8Length first).
std::u32string CaseKey(std::string_view text) {
  static const locale_t kUtf8 = newlocale(LC_CTYPE_MASK, "C.UTF-8", locale_t{});
  std::u32string key;
  for (std::size_t i = 0; i < text.size();) {
    const auto lead = static_cast<unsigned char>(text[i]);
    const std::size_t width = lead < 0x80 ? 1 : lead < 0xE0 ? 2 : lead < 0xF0 ? 3 : 4;
    auto cp = static_cast<char32_t>(width == 1 ? lead : lead & (0x3F >> (width - 1)));
    for (std::size_t k = 1; k < width && i + k < text.size(); ++k) {
      cp = (cp << 6) | (static_cast<unsigned char>(text[i + k]) & 0x3F);
    }
    i += width;
    if (kUtf8 != locale_t{}) {
      cp = static_cast<char32_t>(towlower_l(static_cast<wint_t>(cp), kUtf8));
    } else if (cp < 0x80) {
      cp = static_cast<char32_t>(std::tolower(static_cast<int>(cp)));
    }
    key.push_back(cp);
  }
  return key;
}

}  // namespace

bool IsTag(std::string_view text) {
  return !text.empty() && text.size() <= 32 && std::all_of(text.begin(), text.end(), IsTagChar);
}

std::int64_t Stats::Total() const { return std::accumulate(votes.begin(), votes.end(), std::int64_t{0}); }

NewPoll ValidateNewPoll(const json::object& body) {
  std::vector<FieldError> errors;
  NewPoll poll;

  if (auto title = StringField(body.if_contains("title"), "title", errors)) {
    poll.title = Trim(*title);
    const auto length = Utf8Length(poll.title);
    if (length < 1 || length > 200) {
      errors.push_back({"title", "must be 1-200 characters after trimming"});
    } else if (HasControlCharacters(poll.title)) {
      errors.push_back({"title", "must not contain control characters"});
    }
  }

  const auto* options = body.if_contains("options");
  if (options == nullptr || !options->is_array()) {
    errors.push_back({"options", "must be an array of 2-10 strings"});
  } else if (options->as_array().size() < 2 || options->as_array().size() > 10) {
    errors.push_back({"options", "must have 2-10 options"});
  } else {
    std::set<std::u32string> seen;
    for (std::size_t i = 0; i < options->as_array().size(); ++i) {
      const auto field = "options[" + std::to_string(i) + "]";
      auto text = StringField(&options->as_array()[i], field, errors);
      if (!text) continue;
      auto option = Trim(*text);
      const auto length = Utf8Length(option);
      if (length < 1 || length > 100) {
        errors.push_back({field, "must be 1-100 characters after trimming"});
      } else if (HasControlCharacters(option)) {
        errors.push_back({field, "must not contain control characters"});
      } else if (!seen.insert(CaseKey(option)).second) {
        errors.push_back({field, "duplicates another option (ignoring case)"});
      }
      poll.options.push_back(std::move(option));
    }
  }

  const auto* tags = body.if_contains("tags");
  if (tags == nullptr || !tags->is_array()) {
    errors.push_back({"tags", "must be an array of 1-5 tags"});
  } else if (tags->as_array().empty() || tags->as_array().size() > 5) {
    errors.push_back({"tags", "must have 1-5 tags"});
  } else {
    for (std::size_t i = 0; i < tags->as_array().size(); ++i) {
      const auto field = "tags[" + std::to_string(i) + "]";
      auto text = StringField(&tags->as_array()[i], field, errors);
      if (!text) continue;
      auto tag = AsciiLower(Trim(*text));
      if (!IsTag(tag)) {
        errors.push_back({field, "must be 1-32 characters of a-z, 0-9 and '-'"});
      } else if (std::find(poll.tags.begin(), poll.tags.end(), tag) == poll.tags.end()) {
        poll.tags.push_back(std::move(tag));
      }
    }
  }

  if (!errors.empty()) throw http::ValidationFailed(std::move(errors));
  return poll;
}

Poll WithFeedJson(Poll poll) {
  poll.feed_json = std::make_shared<const std::string>(http::SerializeJson(ToJson(poll, std::nullopt, nullptr)));
  return poll;
}

json::object ToJson(const Poll& poll) {
  json::array options(poll.options.begin(), poll.options.end());
  json::array tags(poll.tags.begin(), poll.tags.end());
  return {{"id", poll.id},           {"title", poll.title},         {"options", std::move(options)},
          {"tags", std::move(tags)}, {"createdAt", poll.created_at}, {"creatorId", poll.creator_id}};
}

json::object ToJson(const Poll& poll, std::optional<int> my_vote, const Stats* stats) {
  auto out = ToJson(poll);
  out["myVote"] = my_vote ? json::value(*my_vote) : json::value(nullptr);
  if (stats != nullptr) out["stats"] = ToJson(*stats);
  return out;
}

json::object ToJson(const Stats& stats) {
  const auto total = stats.Total();
  json::array options;
  for (std::size_t i = 0; i < stats.options.size(); ++i) {
    const auto votes = i < stats.votes.size() ? stats.votes[i] : 0;
    // One decimal, rounded half up; 0 when nobody voted.
    const double percentage =
        total == 0 ? 0.0 : static_cast<double>((votes * 1000 + total / 2) / total) / 10.0;
    options.push_back(json::object{{"index", static_cast<std::int64_t>(i)},
                                   {"text", stats.options[i]},
                                   {"votes", votes},
                                   {"percentage", percentage}});
  }
  return {{"pollId", stats.poll_id}, {"totalVotes", total}, {"options", std::move(options)}};
}

}  // namespace vote::domain
