#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.hpp"

struct amqp_connection_state_t_;
typedef struct amqp_frame_t_ amqp_frame_t;

namespace vote::events::amqp {

// The socket failed or the broker closed the channel or the connection; the Connection that
// threw is unusable and is dropped by its owner.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Arguments of a queue of the topology.
struct QueueArgs {
  std::optional<std::int32_t> message_ttl_ms;
  std::optional<std::int32_t> max_length;
  std::string dead_letter_exchange;  // empty: none
};

// What this project sets on a message besides the body, which is always persistent JSON.
struct Properties {
  std::string message_id;
  std::string type;
  std::optional<std::int64_t> timestamp;  // seconds since the epoch
  int attempts = 0;                       // header x-attempts; omitted when 0
};

struct Delivery {
  std::uint64_t tag = 0;
  std::string routing_key;
  std::string body;
  Properties properties;
};

// The broker's answer to one message published with confirms.
enum class Confirm { kPending, kAck, kNack };

// One blocking librabbitmq connection with one channel. librabbitmq is not thread-safe: each
// thread owns its connections. Every wait is bounded (connect, login and RPCs by a few seconds,
// reads by the caller's timeout), so the owning thread can notice a stop request.
class Connection {
 public:
  // Connects, logs in and opens the channel. `name` shows in the management UI. Throws Error.
  Connection(const config::RabbitmqConfig& config, const std::string& name);
  // Closes politely when the connection is healthy, otherwise just drops the socket.
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Idempotent declarations. One that exists with other settings (PRECONDITION_FAILED) is
  // logged and kept, so a changed definition cannot keep the service down; the channel is
  // reopened, which is why they come before SelectConfirms and Consume.
  void DeclareExchange(const std::string& name, const std::string& type);
  void DeclareQueue(const std::string& name, const QueueArgs& args);
  // A server-named, non-durable, exclusive, auto-delete queue; returns its name.
  std::string DeclareExclusiveQueue();
  void Bind(const std::string& queue, const std::string& exchange, const std::string& key);

  // Puts the channel in confirm mode: Publish then returns each message's sequence number.
  void SelectConfirms();
  // Sends one persistent application/json message; returns its sequence number (0 without
  // confirms). The exchange "" with the queue name as key delivers straight to that queue.
  std::uint64_t Publish(const std::string& exchange, const std::string& key, const Properties& props,
                        std::string_view body);
  // Records acks and nacks of the messages numbered first .. first + states.size() - 1 until
  // none is pending (true) or the deadline passes (false).
  bool WaitConfirms(std::uint64_t first, std::vector<Confirm>& states,
                    std::chrono::steady_clock::time_point deadline);

  // Starts consuming with manual acks and at most `prefetch` unacknowledged deliveries.
  void Consume(const std::string& queue, int prefetch);
  // The next delivery, or nothing once `timeout` passed (or a non-delivery frame was handled).
  std::optional<Delivery> Next(std::chrono::milliseconds timeout);
  void Ack(std::uint64_t tag);
  void Reject(std::uint64_t tag, bool requeue);

  // Sends due heartbeats and reads what the broker sent meanwhile, without blocking. For
  // connections that publish only: Next does the same for consumers.
  void Poll();

 private:
  struct Destroy {
    void operator()(amqp_connection_state_t_* conn) const;
  };

  void Open(const config::RabbitmqConfig& config, const std::string& name);
  void Check(const char* what);
  void CheckDeclare(const char* what, const std::string& name);
  void HandleFrame(const amqp_frame_t& frame);
  [[noreturn]] void Fail(const std::string& message);

  std::unique_ptr<amqp_connection_state_t_, Destroy> conn_;
  bool broken_ = false;
  std::uint64_t next_seq_ = 0;  // 0: no confirms
};

}  // namespace vote::events::amqp
