#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/flat_buffer.hpp>

#include <atomic>
#include <chrono>
#include <functional>
#include <list>

#include "http/types.hpp"

namespace vote::http {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

struct ServerOptions {
  std::chrono::milliseconds idle_timeout{std::chrono::seconds(60)};
  std::chrono::milliseconds read_timeout{std::chrono::seconds(10)};
  std::uint64_t max_body_bytes = 64 * 1024;
  std::uint32_t max_header_bytes = 16 * 1024;
};

// Turns a request into a response; never throws for expected failures.
using RequestHandler = std::function<asio::awaitable<Response>(Request&)>;
// Takes over a connection whose request was answered 101 (WebSocket).
using UpgradeHandler = std::function<void(Request&&, tcp::socket&&, boost::beast::flat_buffer&&)>;

// Throws when something already listens on `endpoint` (port 0: never). SO_REUSEPORT, which lets
// the threads of one process share their port, would also let a second process on the same
// port take half of its connections without a word; call this before the first Listen.
void EnsurePortFree(const tcp::endpoint& endpoint);

// One acceptor and its connections on one event-loop thread. Several servers (one per thread)
// share a port with SO_REUSEPORT, so the kernel spreads connections without locks.
class Server {
 public:
  Server(asio::io_context& ioc, ServerOptions options, RequestHandler handler, UpgradeHandler upgrade);

  // Binds (port 0 picks a free one) and returns the bound port.
  unsigned short Listen(const tcp::endpoint& endpoint);
  void Start();
  // Stops accepting, closes idle connections, lets in-flight requests finish and then closes them.
  void BeginShutdown();
  // Closes whatever is still open.
  void ForceClose();
  // Safe to call from any thread.
  std::size_t Connections() const { return connections_.load(); }

 private:
  struct Session {
    explicit Session(tcp::socket s) : socket(std::move(s)) {}
    tcp::socket socket;
    enum class Phase { kWaiting, kReading, kHandling, kWriting } phase = Phase::kWaiting;
    std::chrono::steady_clock::time_point since = std::chrono::steady_clock::now();
    bool got_bytes = false;
    bool upgraded = false;
  };

  asio::awaitable<void> Accept();
  asio::awaitable<void> Serve(std::list<Session>::iterator session);
  asio::awaitable<void> Sweep();
  void Close(Session& session);

  asio::io_context& ioc_;
  ServerOptions options_;
  RequestHandler handler_;
  UpgradeHandler upgrade_;
  tcp::acceptor acceptor_;
  asio::steady_timer sweep_timer_;
  std::list<Session> sessions_;
  bool draining_ = false;
  std::atomic<std::size_t> connections_{0};
};

}  // namespace vote::http
