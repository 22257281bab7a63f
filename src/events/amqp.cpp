#include "events/amqp.hpp"

#include <amqp.h>
#include <amqp_tcp_socket.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <algorithm>

namespace vote::events::amqp {

namespace {

using Clock = std::chrono::steady_clock;

constexpr amqp_channel_t kChannel = 1;
constexpr int kFrameMax = 131072;
// librabbitmq answers heartbeats only inside its calls; every owner calls Next or Poll at least
// every few hundred milliseconds, so a dead broker is noticed within about two intervals.
constexpr int kHeartbeatSeconds = 10;
// Connect, login and every RPC (declare, bind, qos, consume, close).
constexpr std::chrono::seconds kIoTimeout{5};
// Writes to a peer that stopped acknowledging fail after this instead of blocking for minutes.
constexpr unsigned kTcpUserTimeoutMs = 30000;

amqp_bytes_t Bytes(std::string_view s) { return {s.size(), const_cast<char*>(s.data())}; }

std::string ToString(amqp_bytes_t b) {
  return b.len == 0 ? std::string() : std::string(static_cast<const char*>(b.bytes), b.len);
}

timeval ToTimeval(std::chrono::microseconds d) {
  d = std::max(d, std::chrono::microseconds::zero());
  timeval tv{};
  tv.tv_sec = static_cast<decltype(tv.tv_sec)>(d.count() / 1000000);
  tv.tv_usec = static_cast<decltype(tv.tv_usec)>(d.count() % 1000000);
  return tv;
}

amqp_table_entry_t IntEntry(const char* key, std::int32_t value) {
  amqp_table_entry_t e{};
  e.key = amqp_cstring_bytes(key);
  e.value.kind = AMQP_FIELD_KIND_I32;
  e.value.value.i32 = value;
  return e;
}

amqp_table_entry_t StringEntry(const char* key, const std::string& value) {
  amqp_table_entry_t e{};
  e.key = amqp_cstring_bytes(key);
  e.value.kind = AMQP_FIELD_KIND_UTF8;
  e.value.value.bytes = Bytes(value);
  return e;
}

amqp_table_entry_t BoolEntry(const char* key, bool value) {
  amqp_table_entry_t e{};
  e.key = amqp_cstring_bytes(key);
  e.value.kind = AMQP_FIELD_KIND_BOOLEAN;
  e.value.value.boolean = value ? 1 : 0;
  return e;
}

std::optional<std::int64_t> IntValue(const amqp_field_value_t& v) {
  switch (v.kind) {
    case AMQP_FIELD_KIND_I8: return v.value.i8;
    case AMQP_FIELD_KIND_U8: return v.value.u8;
    case AMQP_FIELD_KIND_I16: return v.value.i16;
    case AMQP_FIELD_KIND_U16: return v.value.u16;
    case AMQP_FIELD_KIND_I32: return v.value.i32;
    case AMQP_FIELD_KIND_U32: return v.value.u32;
    case AMQP_FIELD_KIND_I64: return v.value.i64;
    case AMQP_FIELD_KIND_U64: return static_cast<std::int64_t>(v.value.u64);
    default: return std::nullopt;
  }
}

std::string CloseReason(std::uint16_t code, amqp_bytes_t text) {
  return std::to_string(code) + " " + ToString(text);
}

std::string Describe(const amqp_rpc_reply_t& reply) {
  switch (reply.reply_type) {
    case AMQP_RESPONSE_NORMAL:
      return "ok";
    case AMQP_RESPONSE_NONE:
      return "no reply";
    case AMQP_RESPONSE_LIBRARY_EXCEPTION:
      return amqp_error_string2(reply.library_error);
    case AMQP_RESPONSE_SERVER_EXCEPTION:
      if (reply.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
        const auto* m = static_cast<const amqp_channel_close_t*>(reply.reply.decoded);
        return "channel closed by the broker: " + CloseReason(m->reply_code, m->reply_text);
      }
      if (reply.reply.id == AMQP_CONNECTION_CLOSE_METHOD) {
        const auto* m = static_cast<const amqp_connection_close_t*>(reply.reply.decoded);
        return "connection closed by the broker: " + CloseReason(m->reply_code, m->reply_text);
      }
      return std::string("unexpected method ") + amqp_method_name(reply.reply.id);
  }
  return "unknown reply";
}

}  // namespace

void Connection::Destroy::operator()(amqp_connection_state_t_* conn) const { amqp_destroy_connection(conn); }

Connection::Connection(const config::RabbitmqConfig& config, const std::string& name)
    : conn_(amqp_new_connection()) {
  if (!conn_) {
    throw Error("cannot allocate an AMQP connection");
  }
  Open(config, name);
}

Connection::~Connection() {
  if (!broken_) {
    amqp_channel_close(conn_.get(), kChannel, AMQP_REPLY_SUCCESS);
    amqp_connection_close(conn_.get(), AMQP_REPLY_SUCCESS);
  }
}

void Connection::Open(const config::RabbitmqConfig& config, const std::string& name) {
  broken_ = true;  // until the channel is open, there is nothing to close politely
  amqp_socket_t* socket = amqp_tcp_socket_new(conn_.get());  // owned by the connection
  if (socket == nullptr) {
    throw Error("cannot create a socket");
  }
  timeval timeout = ToTimeval(kIoTimeout);
  const int rc = amqp_socket_open_noblock(socket, config.host.c_str(), config.port, &timeout);
  if (rc != AMQP_STATUS_OK) {
    throw Error("cannot connect to " + config.host + ":" + std::to_string(config.port) + ": " +
                amqp_error_string2(rc));
  }
  const int fd = amqp_get_sockfd(conn_.get());
  const unsigned user_timeout = kTcpUserTimeoutMs;
  setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &user_timeout, sizeof(user_timeout));
  amqp_set_handshake_timeout(conn_.get(), &timeout);
  amqp_set_rpc_timeout(conn_.get(), &timeout);

  // consumer_cancel_notify: a deleted queue ends our consumer visibly instead of silently.
  amqp_table_entry_t capabilities[] = {BoolEntry("consumer_cancel_notify", true),
                                       BoolEntry("connection.blocked", true)};
  amqp_table_entry_t props[2] = {StringEntry("connection_name", name), {}};
  props[1].key = amqp_cstring_bytes("capabilities");
  props[1].value.kind = AMQP_FIELD_KIND_TABLE;
  props[1].value.value.table = {2, capabilities};
  const amqp_table_t properties{2, props};
  const auto login = amqp_login_with_properties(conn_.get(), config.vhost.c_str(), 0, kFrameMax,
                                                kHeartbeatSeconds, &properties, AMQP_SASL_METHOD_PLAIN,
                                                config.user.c_str(), config.password.c_str());
  if (login.reply_type != AMQP_RESPONSE_NORMAL) {
    throw Error("login to " + config.host + ":" + std::to_string(config.port) + " as " + config.user +
                " failed: " + Describe(login));
  }
  broken_ = false;
  amqp_channel_open(conn_.get(), kChannel);
  Check("channel.open");
}

void Connection::Fail(const std::string& message) {
  broken_ = true;
  throw Error(message);
}

void Connection::Check(const char* what) {
  const auto reply = amqp_get_rpc_reply(conn_.get());
  if (reply.reply_type != AMQP_RESPONSE_NORMAL) {
    Fail(std::string(what) + ": " + Describe(reply));
  }
}

void Connection::CheckDeclare(const char* what, const std::string& name) {
  const auto reply = amqp_get_rpc_reply(conn_.get());
  if (reply.reply_type == AMQP_RESPONSE_NORMAL) {
    return;
  }
  const bool inequivalent =
      reply.reply_type == AMQP_RESPONSE_SERVER_EXCEPTION && reply.reply.id == AMQP_CHANNEL_CLOSE_METHOD &&
      static_cast<const amqp_channel_close_t*>(reply.reply.decoded)->reply_code == AMQP_PRECONDITION_FAILED;
  if (!inequivalent) {
    Fail(std::string(what) + " " + name + ": " + Describe(reply));
  }
  spdlog::warn("events: {} {} exists with other settings; keeping it as it is ({})", what, name, Describe(reply));
  amqp_channel_close_ok_t ok{};
  if (amqp_send_method(conn_.get(), kChannel, AMQP_CHANNEL_CLOSE_OK_METHOD, &ok) != AMQP_STATUS_OK) {
    Fail("channel.close-ok failed");
  }
  amqp_maybe_release_buffers_on_channel(conn_.get(), kChannel);
  amqp_channel_open(conn_.get(), kChannel);
  Check("channel.open");
}

void Connection::DeclareExchange(const std::string& name, const std::string& type) {
  amqp_exchange_declare(conn_.get(), kChannel, Bytes(name), Bytes(type), /*passive=*/0, /*durable=*/1,
                        /*auto_delete=*/0, /*internal=*/0, amqp_empty_table);
  CheckDeclare("exchange", name);
}

void Connection::DeclareQueue(const std::string& name, const QueueArgs& args) {
  std::vector<amqp_table_entry_t> entries;
  if (args.message_ttl_ms) {
    entries.push_back(IntEntry("x-message-ttl", *args.message_ttl_ms));
  }
  if (args.max_length) {
    entries.push_back(IntEntry("x-max-length", *args.max_length));
  }
  if (!args.dead_letter_exchange.empty()) {
    entries.push_back(StringEntry("x-dead-letter-exchange", args.dead_letter_exchange));
  }
  const amqp_table_t table{static_cast<int>(entries.size()), entries.data()};
  amqp_queue_declare(conn_.get(), kChannel, Bytes(name), /*passive=*/0, /*durable=*/1, /*exclusive=*/0,
                     /*auto_delete=*/0, table);
  CheckDeclare("queue", name);
}

std::string Connection::DeclareExclusiveQueue() {
  const auto* ok = amqp_queue_declare(conn_.get(), kChannel, amqp_empty_bytes, /*passive=*/0, /*durable=*/0,
                                      /*exclusive=*/1, /*auto_delete=*/1, amqp_empty_table);
  Check("queue.declare");
  return ToString(ok->queue);
}

void Connection::Bind(const std::string& queue, const std::string& exchange, const std::string& key) {
  amqp_queue_bind(conn_.get(), kChannel, Bytes(queue), Bytes(exchange), Bytes(key), amqp_empty_table);
  Check("queue.bind");
}

void Connection::SelectConfirms() {
  amqp_confirm_select(conn_.get(), kChannel);
  Check("confirm.select");
  next_seq_ = 1;
}

std::uint64_t Connection::Publish(const std::string& exchange, const std::string& key, const Properties& props,
                                  std::string_view body) {
  amqp_basic_properties_t p{};
  p._flags = AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_DELIVERY_MODE_FLAG;
  p.content_type = amqp_cstring_bytes("application/json");
  p.delivery_mode = AMQP_DELIVERY_PERSISTENT;
  if (!props.message_id.empty()) {
    p._flags |= AMQP_BASIC_MESSAGE_ID_FLAG;
    p.message_id = Bytes(props.message_id);
  }
  if (!props.type.empty()) {
    p._flags |= AMQP_BASIC_TYPE_FLAG;
    p.type = Bytes(props.type);
  }
  if (props.timestamp) {
    p._flags |= AMQP_BASIC_TIMESTAMP_FLAG;
    p.timestamp = static_cast<std::uint64_t>(*props.timestamp);
  }
  amqp_table_entry_t attempts = IntEntry("x-attempts", props.attempts);
  if (props.attempts > 0) {
    p._flags |= AMQP_BASIC_HEADERS_FLAG;
    p.headers = {1, &attempts};
  }
  const int rc = amqp_basic_publish(conn_.get(), kChannel, Bytes(exchange), Bytes(key), /*mandatory=*/0,
                                    /*immediate=*/0, &p, Bytes(body));
  if (rc != AMQP_STATUS_OK) {
    Fail(std::string("basic.publish: ") + amqp_error_string2(rc));
  }
  return next_seq_ == 0 ? 0 : next_seq_++;
}

bool Connection::WaitConfirms(std::uint64_t first, std::vector<Confirm>& states, Clock::time_point deadline) {
  auto pending = static_cast<std::size_t>(std::count(states.begin(), states.end(), Confirm::kPending));
  const std::uint64_t end = first + states.size();
  while (pending > 0) {
    const auto left = std::chrono::duration_cast<std::chrono::microseconds>(deadline - Clock::now());
    if (left.count() <= 0) {
      return false;
    }
    timeval tv = ToTimeval(left);
    amqp_frame_t frame;
    const int rc = amqp_simple_wait_frame_noblock(conn_.get(), &frame, &tv);
    if (rc == AMQP_STATUS_TIMEOUT) {
      return false;
    }
    if (rc != AMQP_STATUS_OK) {
      Fail(std::string("waiting for confirms: ") + amqp_error_string2(rc));
    }
    const bool confirm = frame.frame_type == AMQP_FRAME_METHOD && frame.channel == kChannel &&
                         (frame.payload.method.id == AMQP_BASIC_ACK_METHOD ||
                          frame.payload.method.id == AMQP_BASIC_NACK_METHOD);
    if (!confirm) {
      HandleFrame(frame);
      continue;
    }
    std::uint64_t tag = 0;
    bool multiple = false;
    Confirm result = Confirm::kAck;
    if (frame.payload.method.id == AMQP_BASIC_ACK_METHOD) {
      const auto* ack = static_cast<const amqp_basic_ack_t*>(frame.payload.method.decoded);
      tag = ack->delivery_tag;
      multiple = ack->multiple != 0;
    } else {
      const auto* nack = static_cast<const amqp_basic_nack_t*>(frame.payload.method.decoded);
      tag = nack->delivery_tag;
      multiple = nack->multiple != 0;
      result = Confirm::kNack;
    }
    // multiple=true settles every earlier message too.
    const std::uint64_t from = multiple ? first : tag;
    for (std::uint64_t t = std::max(from, first); t <= tag && t < end; ++t) {
      auto& state = states[t - first];
      if (state == Confirm::kPending) {
        state = result;
        --pending;
      }
    }
  }
  amqp_maybe_release_buffers(conn_.get());
  return true;
}

void Connection::Consume(const std::string& queue, int prefetch) {
  amqp_basic_qos(conn_.get(), kChannel, 0, static_cast<std::uint16_t>(std::clamp(prefetch, 1, 65535)), 0);
  Check("basic.qos");
  amqp_basic_consume(conn_.get(), kChannel, Bytes(queue), amqp_empty_bytes, /*no_local=*/0, /*no_ack=*/0,
                     /*exclusive=*/0, amqp_empty_table);
  Check("basic.consume");
}

std::optional<Delivery> Connection::Next(std::chrono::milliseconds timeout) {
  amqp_maybe_release_buffers(conn_.get());
  amqp_envelope_t envelope;
  const timeval tv = ToTimeval(timeout);
  const auto reply = amqp_consume_message(conn_.get(), &envelope, &tv, 0);
  if (reply.reply_type == AMQP_RESPONSE_NORMAL) {
    Delivery d;
    d.tag = envelope.delivery_tag;
    d.routing_key = ToString(envelope.routing_key);
    d.body = ToString(envelope.message.body);
    const auto& p = envelope.message.properties;
    if (p._flags & AMQP_BASIC_MESSAGE_ID_FLAG) {
      d.properties.message_id = ToString(p.message_id);
    }
    if (p._flags & AMQP_BASIC_TYPE_FLAG) {
      d.properties.type = ToString(p.type);
    }
    if (p._flags & AMQP_BASIC_TIMESTAMP_FLAG) {
      d.properties.timestamp = static_cast<std::int64_t>(p.timestamp);
    }
    if (p._flags & AMQP_BASIC_HEADERS_FLAG) {
      for (int i = 0; i < p.headers.num_entries; ++i) {
        const auto& entry = p.headers.entries[i];
        if (ToString(entry.key) == "x-attempts") {
          const auto attempts = IntValue(entry.value).value_or(0);
          d.properties.attempts = static_cast<int>(std::clamp<std::int64_t>(attempts, 0, 1000));
        }
      }
    }
    amqp_destroy_envelope(&envelope);
    return d;
  }
  if (reply.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION) {
    if (reply.library_error == AMQP_STATUS_TIMEOUT) {
      return std::nullopt;
    }
    if (reply.library_error == AMQP_STATUS_UNEXPECTED_STATE) {
      // Not a delivery: librabbitmq put that one frame back for us. Read only it: a delivery
      // behind it must stay for amqp_consume_message.
      timeval immediately{};
      amqp_frame_t frame;
      const int rc = amqp_simple_wait_frame_noblock(conn_.get(), &frame, &immediately);
      if (rc == AMQP_STATUS_OK) {
        HandleFrame(frame);
        return std::nullopt;
      }
      Fail(std::string("read: ") + amqp_error_string2(rc));
    }
  }
  Fail("consume: " + Describe(reply));
}

void Connection::Ack(std::uint64_t tag) {
  const int rc = amqp_basic_ack(conn_.get(), kChannel, tag, /*multiple=*/0);
  if (rc != AMQP_STATUS_OK) {
    Fail(std::string("basic.ack: ") + amqp_error_string2(rc));
  }
}

void Connection::Reject(std::uint64_t tag, bool requeue) {
  const int rc = amqp_basic_reject(conn_.get(), kChannel, tag, requeue ? 1 : 0);
  if (rc != AMQP_STATUS_OK) {
    Fail(std::string("basic.reject: ") + amqp_error_string2(rc));
  }
}

void Connection::Poll() {
  // Bounded, so that a flood of frames cannot keep the caller here.
  for (int i = 0; i < 64; ++i) {
    timeval immediately{};
    amqp_frame_t frame;
    const int rc = amqp_simple_wait_frame_noblock(conn_.get(), &frame, &immediately);
    if (rc == AMQP_STATUS_TIMEOUT) {
      break;
    }
    if (rc != AMQP_STATUS_OK) {
      Fail(std::string("read: ") + amqp_error_string2(rc));
    }
    HandleFrame(frame);
  }
  amqp_maybe_release_buffers(conn_.get());
}

void Connection::HandleFrame(const amqp_frame_t& frame) {
  if (frame.frame_type != AMQP_FRAME_METHOD) {
    return;  // the header or body of a returned message; we never publish as mandatory
  }
  switch (frame.payload.method.id) {
    case AMQP_CHANNEL_CLOSE_METHOD: {
      const auto* m = static_cast<const amqp_channel_close_t*>(frame.payload.method.decoded);
      Fail("channel closed by the broker: " + CloseReason(m->reply_code, m->reply_text));
    }
    case AMQP_CONNECTION_CLOSE_METHOD: {
      const auto* m = static_cast<const amqp_connection_close_t*>(frame.payload.method.decoded);
      const std::string reason = CloseReason(m->reply_code, m->reply_text);
      amqp_connection_close_ok_t ok{};
      amqp_send_method(conn_.get(), 0, AMQP_CONNECTION_CLOSE_OK_METHOD, &ok);
      Fail("connection closed by the broker: " + reason);
    }
    case AMQP_BASIC_CANCEL_METHOD:
      Fail("the broker cancelled the consumer (queue deleted?)");
    case AMQP_CONNECTION_BLOCKED_METHOD: {
      const auto* m = static_cast<const amqp_connection_blocked_t*>(frame.payload.method.decoded);
      spdlog::warn("events: the broker blocks publishing ({})", ToString(m->reason));
      break;
    }
    case AMQP_CONNECTION_UNBLOCKED_METHOD:
      spdlog::info("events: the broker accepts publishing again");
      break;
    default:
      break;
  }
}

}  // namespace vote::events::amqp
