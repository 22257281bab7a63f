#pragma once

#include "config/config.hpp"
#include "services/auth_service.hpp"
#include "services/feed_service.hpp"
#include "services/idempotency.hpp"
#include "services/poll_service.hpp"
#include "services/vote_service.hpp"
#include "services/ws_tickets.hpp"

namespace vote::api {

// The checks /readyz runs; implemented by the app, which owns the clients.
struct Readiness {
  virtual ~Readiness() = default;
  struct Report {
    bool postgres = false;
    bool redis = false;
    bool rabbitmq = false;
  };
  virtual boost::asio::awaitable<Report> Check() = 0;
  virtual std::string MetricsText() = 0;
};

// What the handlers of one event-loop thread call.
struct Services {
  const config::Config& config;
  services::AuthService& auth;
  services::PollService& polls;
  services::VoteService& votes;
  services::FeedService& feed;
  services::IdempotencyStore& idempotency;
  services::WsTickets& tickets;
  Readiness& readiness;
};

}  // namespace vote::api
