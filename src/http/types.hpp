#pragma once

#include <boost/beast/http.hpp>
#include <boost/json.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace vote::http {

namespace beast_http = boost::beast::http;
namespace json = boost::json;
using Status = beast_http::status;
using BeastRequest = beast_http::request<beast_http::string_body>;
using Response = beast_http::response<beast_http::string_body>;

// A request as handlers see it: the parsed message plus what the middleware learned.
struct Request {
  BeastRequest message;
  std::string request_id;
  std::string client_address;
  std::string route;  // the matched template, e.g. /api/polls/{id}/vote
  std::vector<std::pair<std::string, std::string>> path_params;
  std::optional<std::int64_t> user_id;  // the token's subject, set by authentication

  std::string_view Target() const { return message.target(); }
  std::string_view Path() const;
  std::optional<std::string> Query(std::string_view name) const;
  std::string_view Header(std::string_view name) const;
  // The path parameter as a positive 64-bit id; a malformed one is a 404 of `not_found_code`.
  std::int64_t PathId(std::string_view name, std::string_view not_found_code) const;
  // The body as a JSON object; an empty body is `{}` when allowed. Malformed JSON: 400.
  json::object JsonBody(bool allow_empty = false) const;
  std::int64_t User() const;
};

// The id a response carries: the client's X-Request-ID when it is sane, a fresh one otherwise.
std::string RequestIdFor(std::string_view sent);

Response JsonResponse(Status status, const json::value& body);
std::string SerializeJson(const json::value& value);
Response EmptyResponse(Status status);

}  // namespace vote::http
