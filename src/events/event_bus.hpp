#pragma once

#include <boost/json.hpp>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "config/config.hpp"
#include "metrics/metrics.hpp"

namespace vote::events {

// An event as carried on the broker: vote.cast, poll.skipped, poll.created.
struct Event {
  std::string id;    // unique (the outbox row's event_id); consumers drop duplicates by it
  std::string type;
  boost::json::object payload;
};

// RabbitMQ, kept off the event loop: librabbitmq is blocking, so it runs on its own threads.
// - the relay publishes outbox rows (read with its own blocking libpq connection, FOR UPDATE
//   SKIP LOCKED) with batched publisher confirms and deletes them only once confirmed;
// - the consumer reads this instance's exclusive queue (all vote and feed events) and hands
//   each event to `on_event` (on the consumer thread; the callee posts to its event loops);
// - the analytics consumer keeps poll:stats:hot in Redis.
// Both reconnect after a broker outage and resume where they stopped.
class EventBus {
 public:
  using Handler = std::function<void(const Event&)>;

  EventBus(const config::Config& config, metrics::Metrics& metrics);
  ~EventBus();

  // Declares the topology and starts the threads. `on_event` may be empty (no fan-out).
  void Start(Handler on_event);
  void Stop();
  // Wakes the relay after a local commit wrote outbox rows.
  void NotifyOutbox();
  // True while the publisher's connection to the broker is up.
  bool Connected() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace vote::events
