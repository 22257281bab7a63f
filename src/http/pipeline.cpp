#include "http/pipeline.hpp"

#include <boost/json.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <charconv>
#include <chrono>

#include "cache/redis.hpp"
#include "http/errors.hpp"
#include "storage/pg.hpp"

namespace vote::http {
namespace {

namespace json = boost::json;

// Verified tokens remembered per event-loop thread: about 300 bytes each, so 3 MB per thread.
constexpr std::size_t kVerifiedTokens = 10000;
// Users known to exist per event-loop thread (8 bytes each); forgotten all at once past this.
constexpr std::size_t kKnownUsers = 100000;

// A userId sent by seed-era clients must name the caller: number or numeric string.
void CheckActingUser(const Request& request, std::int64_t user_id) {
  auto differs = [user_id](const json::value& v) {
    if (v.is_int64()) return v.as_int64() != user_id;
    if (v.is_uint64()) return true;
    if (v.is_string()) {
      const auto s = std::string_view(v.as_string());
      std::int64_t parsed = 0;
      const auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), parsed);
      return ec != std::errc{} || ptr != s.data() + s.size() || parsed != user_id;
    }
    return !v.is_null();
  };
  if (auto query = request.Query("userId")) {
    if (differs(json::value(*query))) throw Forbidden("userId does not match the authenticated user");
  }
  // Parsed whenever there is a body: a key may be escaped ("user\u0049d" is "userId").
  const auto& body = request.message.body();
  if (body.empty()) return;
  boost::system::error_code ec;
  auto value = json::parse(body, ec);
  if (ec || !value.is_object()) return;  // the handler reports malformed bodies
  if (const auto* id = value.as_object().if_contains("userId"); id != nullptr && differs(*id)) {
    throw Forbidden("userId does not match the authenticated user");
  }
}

void SetRateHeaders(Response& response, const services::RateDecision& rate) {
  response.set("X-RateLimit-Limit", std::to_string(rate.limit));
  response.set("X-RateLimit-Remaining", std::to_string(rate.remaining));
  response.set("X-RateLimit-Reset", std::to_string(rate.reset_unix));
}

}  // namespace

std::string BearerToken(const Request& request, bool allow_query) {
  const auto header = request.Header("Authorization");
  constexpr std::string_view kPrefix = "Bearer ";
  if (header.size() > kPrefix.size() &&
      std::equal(kPrefix.begin(), kPrefix.end(), header.begin(),
                 [](char a, char b) { return std::tolower(static_cast<unsigned char>(a)) ==
                                             std::tolower(static_cast<unsigned char>(b)); })) {
    return std::string(header.substr(kPrefix.size()));
  }
  if (allow_query) {
    if (auto token = request.Query("token")) return *token;
  }
  return {};
}

std::string ClientAddress(const Request& request, const std::vector<std::string>& trusted) {
  auto is_trusted = [&trusted](std::string_view address) {
    return std::find(trusted.begin(), trusted.end(), address) != trusted.end();
  };
  std::string address = request.client_address;
  if (!is_trusted(address)) return address;
  // Walk X-Forwarded-For from the right; the first hop we do not trust is the client.
  std::string_view forwarded = request.Header("X-Forwarded-For");
  while (!forwarded.empty()) {
    const auto comma = forwarded.rfind(',');
    auto hop = comma == std::string_view::npos ? forwarded : forwarded.substr(comma + 1);
    forwarded = comma == std::string_view::npos ? std::string_view() : forwarded.substr(0, comma);
    while (!hop.empty() && hop.front() == ' ') hop.remove_prefix(1);
    while (!hop.empty() && hop.back() == ' ') hop.remove_suffix(1);
    if (hop.empty()) continue;
    address = std::string(hop);
    if (!is_trusted(address)) break;
  }
  return address;
}

Pipeline::Pipeline(const Router& router, const domain::TokenCodec& tokens, services::RateLimiter& limiter,
                   services::WsTickets& tickets, const StaticSite& site, UserExists user_exists,
                   metrics::Metrics& metrics, const config::Config& config)
    : router_(router),
      tokens_(tokens, kVerifiedTokens),
      limiter_(limiter),
      tickets_(tickets),
      site_(site),
      user_exists_(std::move(user_exists)),
      metrics_(metrics),
      config_(config) {}

boost::asio::awaitable<std::optional<std::int64_t>> Pipeline::Authenticate(const Request& request,
                                                                           bool is_websocket) {
  // Browsers open WebSockets with a one-time ticket (POST /api/ws/ticket); a long-lived token in
  // the URL is accepted only in development and tests, where no proxy keeps logs.
  if (is_websocket) {
    if (auto ticket = request.Query("ticket")) co_return co_await tickets_.Redeem(*ticket);
  }
  const bool allow_query = is_websocket && config_.server.env != "production";
  const auto user_id = tokens_.Verify(BearerToken(request, allow_query));
  // A well-signed token may name an account that does not exist (deleted, or a forged token
  // from a leaked key): such a caller is nobody, on every endpoint.
  if (!user_id || known_users_.contains(*user_id)) co_return user_id;
  if (!co_await user_exists_(*user_id)) co_return std::nullopt;
  if (known_users_.size() >= kKnownUsers) known_users_.clear();
  known_users_.insert(*user_id);
  co_return user_id;
}

std::string_view Pipeline::AllowedOrigin(const Request& request) const {
  const auto origin = request.Header("Origin");
  if (origin.empty() || !request.Path().starts_with("/api/")) return {};
  const auto& allowed = config_.server.cors_origins;
  return std::find(allowed.begin(), allowed.end(), origin) != allowed.end() ? origin : std::string_view();
}

boost::asio::awaitable<Response> Pipeline::Dispatch(Request& request, std::optional<services::RateDecision>& rate) {
  const auto method = request.message.method();
  if (method == beast_http::verb::options && !AllowedOrigin(request).empty() &&
      !request.Header("Access-Control-Request-Method").empty()) {
    request.route = "preflight";
    auto response = EmptyResponse(Status::no_content);
    response.set("Access-Control-Allow-Methods", "GET, POST, PATCH, OPTIONS");
    response.set("Access-Control-Allow-Headers", "Authorization, Content-Type, Idempotency-Key, X-Request-ID");
    response.set("Access-Control-Max-Age", "600");
    co_return response;
  }
  auto match = router_.Find(method, request.Path());
  if (match.pattern.empty() && (method == beast_http::verb::get || method == beast_http::verb::head) &&
      !request.Path().starts_with("/api/")) {
    if (auto file = site_.Serve(request)) {
      request.route = "static";
      co_return std::move(*file);
    }
  }
  request.route = match.pattern.empty() ? "unmatched" : match.pattern;
  request.path_params = std::move(match.params);
  request.client_address = ClientAddress(request, config_.server.trusted_proxies);

  const bool is_websocket = request.route == "/api/ws";
  const bool wants_user =
      match.route != nullptr && (match.route->access == Access::kAuthenticated || is_websocket);
  if (wants_user) request.user_id = co_await Authenticate(request, is_websocket);

  // Every /api/ request counts, including refused ones (bad token, unknown path): that is
  // where brute force and scanning come from. A request without a valid token counts against
  // its address only.
  if (request.Path().starts_with("/api/") && config_.ratelimit.enabled) {
    rate = co_await limiter_.Check(request.client_address, request.user_id);
    if (!rate->allowed) {
      throw std::move(ApiError(Status::too_many_requests, "rate_limited", "too many requests, slow down"))
          .WithHeader("Retry-After", std::to_string(rate->retry_after_seconds));
    }
  }
  if (match.route == nullptr) {
    if (match.pattern.empty()) throw NotFound("not_found", "no such endpoint");
    std::sort(match.allowed.begin(), match.allowed.end());
    match.allowed.erase(std::unique(match.allowed.begin(), match.allowed.end()), match.allowed.end());
    std::string allow;
    for (const auto& m : match.allowed) allow += (allow.empty() ? "" : ", ") + m;
    throw std::move(ApiError(Status::method_not_allowed, "method_not_allowed", "method not allowed for this endpoint"))
        .WithHeader("Allow", allow);
  }
  if (wants_user && !request.user_id) throw Unauthorized("missing, invalid or expired token");
  if (request.user_id) CheckActingUser(request, *request.user_id);
  co_return co_await match.route->handler(request);
}

boost::asio::awaitable<Response> Pipeline::Handle(Request& request) {
  const auto started = std::chrono::steady_clock::now();
  metrics_.InFlight().Increment();
  request.request_id = RequestIdFor(request.Header("X-Request-ID"));

  std::optional<services::RateDecision> rate;
  Response response;
  try {
    response = co_await Dispatch(request, rate);
  } catch (const ApiError& e) {
    response = ErrorResponse(e);
  } catch (const storage::PgError& e) {
    // Details go to the log only; the client learns nothing about the database.
    spdlog::error("request {} failed: database error {}: {}", request.request_id, e.SqlState(), e.what());
    if (e.IsTransient()) {
      if (e.SqlState() == storage::kPoolExhausted) metrics_.Shed("pg_pool").Increment();
      response = ErrorResponse(ApiError(Status::service_unavailable, "unavailable", "service temporarily unavailable")
                                   .WithHeader("Retry-After", "1"));
    } else {
      response = InternalErrorResponse();
    }
  } catch (const std::exception& e) {
    spdlog::error("request {} failed: {}", request.request_id, e.what());
    response = InternalErrorResponse();
  }
  response.set("X-Request-ID", request.request_id);
  if (rate) SetRateHeaders(response, *rate);
  SetSecurityHeaders(response);
  if (const auto origin = AllowedOrigin(request); !origin.empty()) {
    response.set("Access-Control-Allow-Origin", origin);
    response.set("Access-Control-Expose-Headers",
                 "X-Request-ID, X-RateLimit-Limit, X-RateLimit-Remaining, X-RateLimit-Reset, Retry-After, Location");
    response.set(beast_http::field::vary, "Origin");
  }

  const auto seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  metrics_.InFlight().Decrement();
  const auto status = static_cast<int>(response.result_int());
  const std::string method(request.message.method_string());
  metrics_.ObserveRequest(method, request.route.empty() ? "unmatched" : request.route, status, seconds);
  if (config_.server.access_log) {
    json::object line{{"type", "access"},
                      {"request_id", request.request_id},
                      {"method", method},
                      {"route", request.route},
                      {"status", status},
                      {"duration_ms", seconds * 1000.0},
                      {"client", request.client_address}};
    if (request.user_id) line["user_id"] = *request.user_id;
    // The access logger's pattern supplies the braces, time and level around these fields.
    const auto text = SerializeJson(line);
    spdlog::get("access")->info(std::string_view(text).substr(1, text.size() - 2));
  }
  co_return response;
}

}  // namespace vote::http
