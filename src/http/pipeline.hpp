#pragma once

#include <boost/asio/awaitable.hpp>

#include <functional>
#include <string>
#include <unordered_set>
#include <vector>

#include "config/config.hpp"
#include "domain/token.hpp"
#include "http/router.hpp"
#include "http/static_site.hpp"
#include "metrics/metrics.hpp"
#include "services/rate_limiter.hpp"
#include "services/ws_tickets.hpp"

namespace vote::http {

// The middleware every request passes through, in order: request id, CORS preflight, routing
// (the web client's files outside /api/, else 404/405), client address, authentication, rate
// limits, the acting-user rule, the handler, and one place that turns every error into the
// contract's error body; then security and CORS headers, metrics and the access log.
class Pipeline {
 public:
  // Whether a token's user still exists; asked once per user and thread.
  using UserExists = std::function<boost::asio::awaitable<bool>(std::int64_t)>;

  Pipeline(const Router& router, const domain::TokenCodec& tokens, services::RateLimiter& limiter,
           services::WsTickets& tickets, const StaticSite& site, UserExists user_exists,
           metrics::Metrics& metrics, const config::Config& config);

  boost::asio::awaitable<Response> Handle(Request& request);

 private:
  boost::asio::awaitable<Response> Dispatch(Request& request, std::optional<services::RateDecision>& rate);
  boost::asio::awaitable<std::optional<std::int64_t>> Authenticate(const Request& request, bool is_websocket);
  // The allow-listed Origin of a cross-origin /api/ request, or empty.
  std::string_view AllowedOrigin(const Request& request) const;

  const Router& router_;
  domain::VerifiedTokens tokens_;  // this thread's verified tokens
  services::RateLimiter& limiter_;
  services::WsTickets& tickets_;
  const StaticSite& site_;
  UserExists user_exists_;
  std::unordered_set<std::int64_t> known_users_;  // users found to exist, on this thread
  metrics::Metrics& metrics_;
  const config::Config& config_;
};

// The bearer token of a request: Authorization header, or ?token= for WebSocket upgrades.
std::string BearerToken(const Request& request, bool allow_query);
// The client's address: the socket peer, or X-Forwarded-For's last untrusted hop when the peer
// is a trusted proxy.
std::string ClientAddress(const Request& request, const std::vector<std::string>& trusted_proxies);

}  // namespace vote::http
