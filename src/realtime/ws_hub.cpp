#include "realtime/ws_hub.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/websocket.hpp>
#include <spdlog/spdlog.h>

#include <chrono>
#include <deque>
#include <exception>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <variant>

#include "realtime/ws_protocol.hpp"

namespace vote::realtime {
namespace {

namespace beast = boost::beast;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;
using Message = std::shared_ptr<const std::string>;

constexpr auto kUseTuple = asio::as_tuple(asio::use_awaitable);
// At most one `stats` push per poll per window: five a second at most.
constexpr std::chrono::milliseconds kCoalesce{200};
// A poll whose lookup is still running is looked at again this soon.
constexpr std::chrono::milliseconds kRetryFetch{10};
// Stats lookups in flight per thread; further dirty polls wait for a later tick.
constexpr std::size_t kMaxFetches = 32;
// Messages waiting for one client; a client this far behind is dropped instead of buffered.
constexpr std::size_t kMaxQueued = 256;
constexpr std::size_t kMaxMessageBytes = 64 * 1024;
// A close handshake, or a write stuck behind a full TCP window, may take this long before the
// socket is simply closed.
constexpr std::chrono::seconds kCloseGrace{5};

// The completion of a detached coroutine: what ended it with an exception is logged, not lost.
auto LogFailure(const char* what) {
  return [what](std::exception_ptr error) {
    if (!error) return;
    try {
      std::rethrow_exception(error);
    } catch (const std::exception& e) {
      spdlog::error("{}: {}", what, e.what());
    }
  };
}

}  // namespace

struct WsHub::Impl {
  // One client. Only its reader (Session) and its writer do I/O on `ws`; the rest of the hub
  // queues messages and requests a close.
  struct Connection : std::enable_shared_from_this<Connection> {
    Connection(tcp::socket&& socket, beast::flat_buffer&& buffer, std::int64_t user)
        : ws(std::move(socket)),
          read_buffer(std::move(buffer)),
          wake(ws.get_executor()),
          deadline(ws.get_executor()),
          user_id(user) {}

    websocket::stream<tcp::socket> ws;
    beast::flat_buffer read_buffer;
    asio::steady_timer wake;      // the writer sleeps on it while the outbox is empty
    asio::steady_timer deadline;  // bounds a requested close
    std::deque<Message> outbox;
    std::optional<websocket::close_reason> close;  // requested; the writer sends it
    std::unordered_set<std::int64_t> polls;
    std::int64_t user_id;
    bool open = false;  // the handshake is done
    bool writer_waiting = false;
    bool finished = false;  // the reader ended: nothing more is sent
  };

  Impl(asio::io_context& context, metrics::Metrics& metrics, StatsSource source)
      : ioc(context),
        messages_in(metrics.WebSocketMessages("in")),
        messages_out(metrics.WebSocketMessages("out")),
        connections_gauge(metrics.WebSocketConnections()),
        stats(std::move(source)),
        tick(context) {}

  static asio::awaitable<void> Session(std::shared_ptr<Impl> self, std::shared_ptr<Connection> c,
                                       http::BeastRequest request);
  static asio::awaitable<void> Write(std::shared_ptr<Impl> self, std::shared_ptr<Connection> c);
  static asio::awaitable<void> Tick(std::shared_ptr<Impl> self);
  static asio::awaitable<void> Refresh(std::shared_ptr<Impl> self, std::int64_t poll_id);

  void Handle(Connection& c, std::string_view text);
  void Enqueue(Connection& c, const Message& message);
  void Reply(Connection& c, std::string text) { Enqueue(c, std::make_shared<const std::string>(std::move(text))); }
  void RequestClose(Connection& c, const websocket::close_reason& reason);
  void Forget(Connection& c);

  static void Wake(Connection& c) {
    if (c.writer_waiting) c.wake.cancel();
  }
  static void HardClose(Connection& c) {
    boost::system::error_code ignored;
    beast::get_lowest_layer(c.ws).close(ignored);
  }

  asio::io_context& ioc;
  prometheus::Counter& messages_in;
  prometheus::Counter& messages_out;
  prometheus::Gauge& connections_gauge;
  StatsSource stats;
  asio::steady_timer tick;
  std::unordered_set<std::shared_ptr<Connection>> connections;
  std::unordered_map<std::int64_t, std::unordered_set<Connection*>> subscribers;
  std::unordered_set<std::int64_t> dirty;     // polls whose counts changed since their last push
  std::unordered_map<std::int64_t, std::chrono::steady_clock::time_point> last_push;
  std::unordered_set<std::int64_t> fetching;  // polls whose stats are being looked up
  bool ticking = false;
  bool stopping = false;
};

asio::awaitable<void> WsHub::Impl::Session(std::shared_ptr<Impl> self, std::shared_ptr<Connection> c,
                                           http::BeastRequest request) {
  try {
    auto& ws = c->ws;
    ws.set_option(websocket::stream_base::timeout::suggested(beast::role_type::server));
    ws.read_message_max(kMaxMessageBytes);
    // The 101 names no server software or version (Beast adds its own unless one is set).
    ws.set_option(websocket::stream_base::decorator(
        [](websocket::response_type& response) { response.set(beast::http::field::server, "vote"); }));
    auto [accept_ec] = co_await ws.async_accept(request, kUseTuple);
    if (accept_ec) {
      spdlog::debug("websocket handshake failed: {}", accept_ec.message());
    } else {
      c->open = true;
      ws.text(true);
      asio::co_spawn(self->ioc, Write(self, c), LogFailure("websocket writer"));
      if (self->stopping) {
        const websocket::close_reason reason(websocket::close_code::going_away, "server shutting down");
        self->RequestClose(*c, reason);
      }
      for (;;) {
        auto [ec, n] = co_await ws.async_read(c->read_buffer, kUseTuple);
        if (ec) {
          spdlog::debug("websocket of user {} ended: {}", c->user_id, ec.message());
          break;
        }
        self->messages_in.Increment();
        const auto data = c->read_buffer.data();
        self->Handle(*c, std::string_view(static_cast<const char*>(data.data()), data.size()));
        c->read_buffer.consume(c->read_buffer.size());
      }
    }
  } catch (const std::exception& e) {
    spdlog::error("websocket session failed: {}", e.what());
  }
  self->Forget(*c);
}

asio::awaitable<void> WsHub::Impl::Write(std::shared_ptr<Impl> self, std::shared_ptr<Connection> c) {
  auto& ws = c->ws;
  while (!c->finished) {
    if (c->close) {
      const websocket::close_reason reason = *c->close;
      auto [ec] = co_await ws.async_close(reason, kUseTuple);
      if (ec) HardClose(*c);
      co_return;
    }
    if (c->outbox.empty()) {
      c->wake.expires_at(asio::steady_timer::time_point::max());
      c->writer_waiting = true;
      co_await c->wake.async_wait(kUseTuple);
      c->writer_waiting = false;
      continue;
    }
    const Message message = std::move(c->outbox.front());
    c->outbox.pop_front();
    auto [ec, n] = co_await ws.async_write(asio::buffer(*message), kUseTuple);
    if (ec) {
      // The connection is broken; closing the socket also ends the reader.
      HardClose(*c);
      co_return;
    }
    self->messages_out.Increment();
  }
}

asio::awaitable<void> WsHub::Impl::Tick(std::shared_ptr<Impl> self) {
  // Leading edge: a poll not pushed within kCoalesce is pushed at once; votes arriving after
  // that wait for the end of its window and ride together in one push.
  while (!self->dirty.empty() && !self->stopping) {
    const auto now = std::chrono::steady_clock::now();
    auto next = std::chrono::steady_clock::time_point::max();
    for (auto it = self->dirty.begin(); it != self->dirty.end();) {
      const auto poll_id = *it;
      if (!self->subscribers.contains(poll_id)) {
        self->last_push.erase(poll_id);
        it = self->dirty.erase(it);
        continue;
      }
      auto last = self->last_push.find(poll_id);
      const auto due = last == self->last_push.end() ? now : last->second + kCoalesce;
      // One lookup per poll at a time keeps pushes in order; the poll stays dirty meanwhile.
      if (due > now || self->fetching.contains(poll_id) || self->fetching.size() >= kMaxFetches) {
        next = std::min(next, std::max(due, now + kRetryFetch));
        ++it;
        continue;
      }
      it = self->dirty.erase(it);
      self->last_push[poll_id] = now;
      self->fetching.insert(poll_id);
      asio::co_spawn(self->ioc, Refresh(self, poll_id), LogFailure("websocket stats refresh"));
    }
    if (self->last_push.size() > 2 * self->subscribers.size() + 1024) {
      std::erase_if(self->last_push, [&](const auto& entry) { return !self->subscribers.contains(entry.first); });
    }
    if (self->dirty.empty()) break;
    self->tick.expires_at(next);
    auto [ec] = co_await self->tick.async_wait(kUseTuple);
    if (ec) break;
  }
  self->ticking = false;
}

asio::awaitable<void> WsHub::Impl::Refresh(std::shared_ptr<Impl> self, std::int64_t poll_id) {
  std::optional<boost::json::object> stats;
  try {
    stats = co_await self->stats(poll_id);
  } catch (const std::exception& e) {
    // Subscribers keep their last numbers; the next vote on the poll tries again.
    spdlog::warn("stats of poll {} for websocket push failed: {}", poll_id, e.what());
  }
  self->fetching.erase(poll_id);
  if (!stats || self->stopping) co_return;
  const auto it = self->subscribers.find(poll_id);
  if (it == self->subscribers.end()) co_return;
  const auto message = std::make_shared<const std::string>(StatsMessage(*stats));
  for (auto* c : it->second) self->Enqueue(*c, message);
}

void WsHub::Impl::Handle(Connection& c, std::string_view text) {
  auto parsed = ParseClientMessage(text);
  if (const auto* bad = std::get_if<BadMessage>(&parsed)) {
    Reply(c, BadMessageError(bad->reason));
    return;
  }
  const auto& message = std::get<ClientMessage>(parsed);
  if (message.action == ClientAction::kSubscribe) {
    std::size_t added = 0;
    for (const auto id : message.poll_ids) added += c.polls.contains(id) ? 0 : 1;
    if (c.polls.size() + added > kMaxSubscriptions) {
      Reply(c, BadMessageError("at most " + std::to_string(kMaxSubscriptions) + " polls per connection"));
      return;
    }
    for (const auto id : message.poll_ids) {
      if (c.polls.insert(id).second) subscribers[id].insert(&c);
    }
  } else {
    for (const auto id : message.poll_ids) {
      if (c.polls.erase(id) == 0) continue;
      const auto it = subscribers.find(id);
      it->second.erase(&c);
      if (it->second.empty()) subscribers.erase(it);
    }
  }
  // Queued after the subscription change, so it precedes every push it announces.
  Reply(c, AckMessage(message.action, message.poll_ids));
}

void WsHub::Impl::Enqueue(Connection& c, const Message& message) {
  if (c.finished || c.close) return;
  if (c.outbox.size() >= kMaxQueued) {
    spdlog::info("websocket of user {} dropped: {} messages unsent", c.user_id, c.outbox.size());
    RequestClose(c, websocket::close_reason(websocket::close_code::policy_error, "too slow"));
    return;
  }
  c.outbox.push_back(message);
  Wake(c);
}

void WsHub::Impl::RequestClose(Connection& c, const websocket::close_reason& reason) {
  if (c.finished || c.close) return;
  if (!c.open) {
    // Still in the handshake: there is no WebSocket to close politely.
    HardClose(c);
    return;
  }
  c.close = reason;
  c.outbox.clear();
  Wake(c);
  c.deadline.expires_after(kCloseGrace);
  c.deadline.async_wait([weak = std::weak_ptr<Connection>(c.shared_from_this())](boost::system::error_code ec) {
    if (ec) return;
    if (const auto conn = weak.lock()) HardClose(*conn);
  });
}

void WsHub::Impl::Forget(Connection& c) {
  for (const auto id : c.polls) {
    const auto it = subscribers.find(id);
    it->second.erase(&c);
    if (it->second.empty()) subscribers.erase(it);
  }
  c.polls.clear();
  c.outbox.clear();
  c.finished = true;
  c.wake.cancel();
  c.deadline.cancel();
  HardClose(c);
  connections.erase(c.shared_from_this());
  connections_gauge.Decrement();
}

WsHub::WsHub(asio::io_context& ioc, metrics::Metrics& metrics, StatsSource stats)
    : impl_(std::make_shared<Impl>(ioc, metrics, std::move(stats))) {}

WsHub::~WsHub() {
  // Coroutines may outlive the hub while the io_context runs; they must find nothing to do.
  impl_->stopping = true;
  impl_->tick.cancel();
  for (const auto& c : impl_->connections) Impl::HardClose(*c);
}

void WsHub::Accept(http::Request&& request, asio::ip::tcp::socket&& socket, boost::beast::flat_buffer&& buffer,
                   std::int64_t user_id) {
  boost::system::error_code ignored;
  if (impl_->stopping) {
    socket.close(ignored);
    return;
  }
  if (buffer.size() != 0) {
    // RFC 6455 4.1: a client sends nothing after its upgrade request until it has the answer.
    // Such early frames cannot be handed to a websocket::stream<tcp::socket> after accepting a
    // parsed request, and dropping them would corrupt the stream, so the client is refused.
    spdlog::debug("websocket of user {} refused: {} bytes sent before the handshake", user_id, buffer.size());
    socket.close(ignored);
    return;
  }
  auto c = std::make_shared<Impl::Connection>(std::move(socket), std::move(buffer), user_id);
  impl_->connections.insert(c);
  impl_->connections_gauge.Increment();
  asio::co_spawn(impl_->ioc, Impl::Session(impl_, std::move(c), std::move(request.message)),
                 LogFailure("websocket session"));
}

void WsHub::OnVote(std::int64_t poll_id) {
  if (impl_->stopping || !impl_->subscribers.contains(poll_id)) return;
  impl_->dirty.insert(poll_id);
  if (impl_->ticking) return;
  impl_->ticking = true;
  asio::co_spawn(impl_->ioc, Impl::Tick(impl_), LogFailure("websocket stats tick"));
}

void WsHub::OnPollCreated(const boost::json::object& poll) {
  if (impl_->stopping || impl_->connections.empty()) return;
  const auto message = std::make_shared<const std::string>(PollCreatedMessage(poll));
  for (const auto& c : impl_->connections) impl_->Enqueue(*c, message);
}

void WsHub::Shutdown() {
  impl_->stopping = true;
  impl_->tick.cancel();
  impl_->dirty.clear();
  const websocket::close_reason reason(websocket::close_code::going_away, "server shutting down");
  for (const auto& c : impl_->connections) impl_->RequestClose(*c, reason);
}

std::size_t WsHub::Connections() const { return impl_->connections.size(); }

}  // namespace vote::realtime
