#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/json.hpp>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>

#include "http/types.hpp"
#include "metrics/metrics.hpp"

namespace vote::realtime {

namespace asio = boost::asio;

// WebSocket subscribers of one event-loop thread: subscribe/unsubscribe to polls, receive
// coalesced `stats` pushes and `poll_created` pushes. A client that stops reading is dropped
// once its bounded send queue is full.
class WsHub {
 public:
  // Current Stats JSON of a poll, or nothing when it does not exist.
  using StatsSource = std::function<asio::awaitable<std::optional<boost::json::object>>(std::int64_t)>;

  WsHub(asio::io_context& ioc, metrics::Metrics& metrics, StatsSource stats);
  ~WsHub();

  // Takes over a connection whose upgrade request was authenticated as `user_id`.
  void Accept(http::Request&& request, asio::ip::tcp::socket&& socket, boost::beast::flat_buffer&& buffer,
              std::int64_t user_id);
  // The counts of a poll changed (any instance): subscribers get a `stats` push, at most a few
  // per second per poll however many votes arrive.
  void OnVote(std::int64_t poll_id);
  void OnPollCreated(const boost::json::object& poll);
  // Closes every connection (going away).
  void Shutdown();
  std::size_t Connections() const;

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace vote::realtime
