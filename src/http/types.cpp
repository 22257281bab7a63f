#include "http/types.hpp"

#include <boost/json/basic_parser_impl.hpp>
#include <boost/url/parse.hpp>
#include <boost/url/parse_query.hpp>

#include <algorithm>
#include <charconv>
#include <random>
#include <unordered_set>

#include "http/errors.hpp"

namespace vote::http {

std::string_view Request::Path() const {
  const auto target = Target();
  return target.substr(0, target.find('?'));
}

namespace {

// The key of the first parameter of a query that is not valid (a bad %-escape, a character a
// query may not hold), as far as it can be told.
std::string BadParameter(std::string_view query) {
  while (!query.empty()) {
    const auto amp = query.find('&');
    const auto piece = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    // A copy: Boost.URL 1.81's parse_query reads its argument up to a NUL when it is valid.
    const std::string terminated(piece);
    if (boost::urls::parse_query(terminated)) continue;
    const auto key = piece.substr(0, piece.find('='));
    const bool printable = !key.empty() && key.size() <= 32 && std::all_of(key.begin(), key.end(), [](char c) {
      return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '_' || c == '-';
    });
    return printable ? std::string(key) : "query";
  }
  return "query";
}

}  // namespace

std::optional<std::string> Request::Query(std::string_view name) const {
  // A query that does not parse, or names a parameter twice, is refused rather than read as
  // absent or as one of its values.
  auto url = boost::urls::parse_origin_form(Target());
  if (!url) {
    const auto target = Target();
    const auto mark = target.find('?');
    const auto query = mark == std::string_view::npos ? std::string_view() : target.substr(mark + 1);
    throw ValidationFailed({{BadParameter(query), "is not a valid query parameter"}});
  }
  auto params = url->params();
  auto it = params.find(name);
  if (it == params.end()) return std::nullopt;
  if (params.count(name) > 1) throw ValidationFailed({{std::string(name), "must be given at most once"}});
  return std::string((*it).value);
}

std::string_view Request::Header(std::string_view name) const {
  auto it = message.find(name);
  if (it == message.end()) return {};
  return it->value();
}

std::int64_t Request::PathId(std::string_view name, std::string_view not_found_code) const {
  for (const auto& [key, value] : path_params) {
    if (key != name) continue;
    std::int64_t id = 0;
    const auto [ptr, ec] = std::from_chars(value.data(), value.data() + value.size(), id);
    if (ec != std::errc{} || ptr != value.data() + value.size() || id <= 0) break;
    return id;
  }
  throw NotFound(std::string(not_found_code), "no such resource");
}

namespace {

// Finds an object that names one key twice (after unescaping: "user\u0049d" is "userId").
// Boost.JSON keeps the last value of a repeated key; two readers of one body could then
// disagree on what it says, so such bodies are refused.
class DuplicateKeyCheck {
 public:
  static constexpr std::size_t max_array_size = -1;
  static constexpr std::size_t max_object_size = -1;
  static constexpr std::size_t max_string_size = -1;
  static constexpr std::size_t max_key_size = -1;

  bool on_document_begin(boost::system::error_code&) { return true; }
  bool on_document_end(boost::system::error_code&) { return true; }
  bool on_array_begin(boost::system::error_code&) { return true; }
  bool on_array_end(std::size_t, boost::system::error_code&) { return true; }
  bool on_object_begin(boost::system::error_code&) {
    keys_.emplace_back();
    return true;
  }
  bool on_object_end(std::size_t, boost::system::error_code&) {
    keys_.pop_back();
    return true;
  }
  bool on_string_part(json::string_view, std::size_t, boost::system::error_code&) { return true; }
  bool on_string(json::string_view, std::size_t, boost::system::error_code&) { return true; }
  bool on_key_part(json::string_view s, std::size_t, boost::system::error_code&) {
    key_.append(s.data(), s.size());
    return true;
  }
  bool on_key(json::string_view s, std::size_t, boost::system::error_code& ec) {
    key_.append(s.data(), s.size());
    const bool fresh = keys_.back().insert(std::move(key_)).second;
    key_.clear();
    if (!fresh) {
      duplicate = true;
      ec = json::error::syntax;
    }
    return fresh;
  }
  bool on_number_part(json::string_view, boost::system::error_code&) { return true; }
  bool on_int64(std::int64_t, json::string_view, boost::system::error_code&) { return true; }
  bool on_uint64(std::uint64_t, json::string_view, boost::system::error_code&) { return true; }
  bool on_double(double, json::string_view, boost::system::error_code&) { return true; }
  bool on_bool(bool, boost::system::error_code&) { return true; }
  bool on_null(boost::system::error_code&) { return true; }
  bool on_comment_part(json::string_view, boost::system::error_code&) { return true; }
  bool on_comment(json::string_view, boost::system::error_code&) { return true; }

  bool duplicate = false;

 private:
  std::vector<std::unordered_set<std::string>> keys_;
  std::string key_;
};

bool HasDuplicateKeys(std::string_view body, const json::parse_options& options) {
  json::basic_parser<DuplicateKeyCheck> parser(options);
  boost::system::error_code ec;
  parser.write_some(false, body.data(), body.size(), ec);
  return parser.handler().duplicate;
}

}  // namespace

json::object Request::JsonBody(bool allow_empty) const {
  const auto& body = message.body();
  if (body.find_first_not_of(" \t\r\n") == std::string::npos) {
    if (allow_empty) return {};
    throw BadRequest("invalid_json", "the request body must be a JSON object");
  }
  boost::system::error_code ec;
  json::parse_options options;
  options.max_depth = 32;
  auto value = json::parse(body, ec, {}, options);
  if (ec) throw BadRequest("invalid_json", "the request body is not valid JSON");
  if (!value.is_object()) throw BadRequest("invalid_json", "the request body must be a JSON object");
  if (HasDuplicateKeys(body, options)) throw BadRequest("invalid_json", "the request body names a key twice");
  return std::move(value.as_object());
}

std::int64_t Request::User() const {
  if (!user_id) throw Unauthorized("authentication required");
  return *user_id;
}

namespace {

// Boost.JSON 1.81 prints doubles in exponent form (100.0 -> "1E2"); percentages read better as
// plain decimals, so doubles are printed here and everything else is left to Boost.JSON.
void Serialize(const json::value& value, std::string& out) {
  switch (value.kind()) {
    case json::kind::object: {
      out += '{';
      bool first = true;
      for (const auto& [key, item] : value.get_object()) {
        if (!first) out += ',';
        first = false;
        out += json::serialize(json::string_view(key));
        out += ':';
        Serialize(item, out);
      }
      out += '}';
      break;
    }
    case json::kind::array: {
      out += '[';
      bool first = true;
      for (const auto& item : value.get_array()) {
        if (!first) out += ',';
        first = false;
        Serialize(item, out);
      }
      out += ']';
      break;
    }
    case json::kind::double_: {
      char buffer[32];
      std::snprintf(buffer, sizeof buffer, "%.15g", value.get_double());
      out += buffer;
      break;
    }
    default:
      out += json::serialize(value);
  }
}

std::string NewRequestId() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  static constexpr char kHex[] = "0123456789abcdef";
  std::string id(32, '0');
  for (int half = 0; half < 2; ++half) {
    auto bits = rng();
    for (int i = 0; i < 16; ++i, bits >>= 4) id[static_cast<std::size_t>(half * 16 + i)] = kHex[bits & 0xf];
  }
  return id;
}

bool IsSaneRequestId(std::string_view id) {
  return !id.empty() && id.size() <= 128 &&
         std::all_of(id.begin(), id.end(), [](char ch) { return ch > 0x20 && ch < 0x7f && ch != '"' && ch != '\\'; });
}

}  // namespace

std::string RequestIdFor(std::string_view sent) {
  if (IsSaneRequestId(sent)) return std::string(sent);
  return NewRequestId();
}

std::string SerializeJson(const json::value& value) {
  std::string out;
  out.reserve(256);
  Serialize(value, out);
  return out;
}

Response JsonResponse(Status status, const json::value& body) {
  Response response{status, 11};
  response.set(beast_http::field::content_type, "application/json");
  response.body() = SerializeJson(body);
  response.prepare_payload();
  return response;
}

Response EmptyResponse(Status status) {
  Response response{status, 11};
  response.prepare_payload();
  return response;
}

}  // namespace vote::http
