#include "http/errors.hpp"
#include "api/handlers.hpp"

namespace vote::api {

namespace json = boost::json;

awaitable<Response> Healthz(Request&, Services&) {
  co_return http::JsonResponse(http::Status::ok, json::object{{"status", "ok"}});
}

awaitable<Response> Readyz(Request&, Services& s) {
  const auto report = co_await s.readiness.Check();
  auto word = [](bool up) { return up ? "ok" : "down"; };
  const char* status = !report.postgres ? "unavailable" : (report.redis && report.rabbitmq ? "ok" : "degraded");
  json::object body{{"status", status},
                    {"checks", json::object{{"postgres", word(report.postgres)},
                                            {"redis", word(report.redis)},
                                            {"rabbitmq", word(report.rabbitmq)}}}};
  co_return http::JsonResponse(report.postgres ? http::Status::ok : http::Status::service_unavailable, body);
}

awaitable<Response> MetricsText(Request&, Services& s) {
  Response response{http::Status::ok, 11};
  response.set(http::beast_http::field::content_type, "text/plain; version=0.0.4; charset=utf-8");
  response.body() = s.readiness.MetricsText();
  response.prepare_payload();
  co_return response;
}

}  // namespace vote::api

#include <boost/beast/websocket/rfc6455.hpp>

#include <algorithm>
#include <cctype>

namespace vote::api {

awaitable<Response> WebSocketUpgrade(Request& req, Services&) {
  if (!boost::beast::websocket::is_upgrade(req.message)) {
    throw http::ApiError(http::Status::upgrade_required, "upgrade_required", "this endpoint speaks WebSocket only");
  }
  // Checked here, so a handshake that cannot succeed is answered in the API's error shape
  // rather than by the WebSocket layer's own plain-text 400 (RFC 6455 4.2.1, 4.4).
  if (req.Header("Sec-WebSocket-Version") != "13") {
    throw std::move(http::ApiError(http::Status::upgrade_required, "upgrade_required",
                                   "only WebSocket version 13 is spoken here"))
        .WithHeader("Sec-WebSocket-Version", "13");
  }
  const auto key = req.Header("Sec-WebSocket-Key");
  const bool key_ok = key.size() == 24 && key.ends_with("==") &&
                      std::all_of(key.begin(), key.end() - 2, [](unsigned char c) {
                        return std::isalnum(c) != 0 || c == '+' || c == '/';
                      });
  if (!key_ok) throw http::BadRequest("bad_request", "Sec-WebSocket-Key must be 16 bytes in base64");
  co_return http::EmptyResponse(http::Status::switching_protocols);
}

awaitable<Response> IssueWsTicket(Request& req, Services& s) {
  services::WsTicket issued;
  try {
    issued = co_await s.tickets.Issue(req.User());
  } catch (const cache::RedisError&) {
    throw std::move(http::ApiError(http::Status::service_unavailable, "unavailable",
                                   "live updates are unavailable for a moment, try again"))
        .WithHeader("Retry-After", "1");
  }
  co_return http::JsonResponse(http::Status::created,
                               json::object{{"ticket", issued.ticket}, {"expiresAt", domain::Rfc3339(issued.expires_at)}});
}

}  // namespace vote::api
