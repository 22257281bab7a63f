#include "http/types.hpp"

#include <boost/url/parse.hpp>

#include <algorithm>
#include <charconv>
#include <random>

#include "http/errors.hpp"

namespace vote::http {

std::string_view Request::Path() const {
  const auto target = Target();
  return target.substr(0, target.find('?'));
}

std::optional<std::string> Request::Query(std::string_view name) const {
  auto url = boost::urls::parse_origin_form(Target());
  if (!url) return std::nullopt;
  auto params = url->params();
  auto it = params.find(name);
  if (it == params.end()) return std::nullopt;
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
