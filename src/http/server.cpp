#include "http/server.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/http.hpp>
#include <spdlog/spdlog.h>

#include <netinet/in.h>
#include <sys/socket.h>

#include "http/errors.hpp"

namespace vote::http {
namespace {

constexpr auto kUseTuple = asio::as_tuple(asio::use_awaitable);
// Read-buffer room beyond the largest header and body: a read may run past a message's end.
constexpr std::size_t kBufferSlack = 16384;

// An answer from the transport itself (the request never reached the pipeline); it still
// carries X-Request-ID, echoed when the headers were read far enough to have one.
Response PlainError(Status status, std::string code, std::string message, std::string_view sent_request_id) {
  auto response = ErrorResponse(ApiError(status, std::move(code), std::move(message)));
  response.set("X-Request-ID", RequestIdFor(sent_request_id));
  response.keep_alive(false);
  return response;
}

std::runtime_error CannotListen(const tcp::endpoint& endpoint, const boost::system::error_code& ec) {
  return std::runtime_error("cannot listen on " + endpoint.address().to_string() + ":" +
                            std::to_string(endpoint.port()) + ": " + ec.message());
}

}  // namespace

Server::Server(asio::io_context& ioc, ServerOptions options, RequestHandler handler, UpgradeHandler upgrade)
    : ioc_(ioc),
      options_(options),
      handler_(std::move(handler)),
      upgrade_(std::move(upgrade)),
      acceptor_(ioc),
      sweep_timer_(ioc) {}

void EnsurePortFree(const tcp::endpoint& endpoint) {
  if (endpoint.port() == 0) return;
  // A bind without SO_REUSEPORT fails while any socket listens on the port (SO_REUSEADDR only
  // passes over connections of a closed listener in TIME_WAIT).
  tcp::acceptor probe(asio::system_executor{});
  probe.open(endpoint.protocol());
  probe.set_option(asio::socket_base::reuse_address(true));
  boost::system::error_code ec;
  probe.bind(endpoint, ec);
  if (ec == asio::error::address_in_use) {
    throw std::runtime_error("port " + std::to_string(endpoint.port()) + " on " + endpoint.address().to_string() +
                             " is already in use (another server?)");
  }
  if (ec) {
    throw CannotListen(endpoint, ec);
  }
}

unsigned short Server::Listen(const tcp::endpoint& endpoint) {
  acceptor_.open(endpoint.protocol());
  acceptor_.set_option(asio::socket_base::reuse_address(true));
  int one = 1;
  if (::setsockopt(acceptor_.native_handle(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0) {
    throw std::runtime_error("SO_REUSEPORT is not available");
  }
  boost::system::error_code ec;
  acceptor_.bind(endpoint, ec);
  if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    throw CannotListen(endpoint, ec);
  }
  return acceptor_.local_endpoint().port();
}

void Server::Start() {
  asio::co_spawn(ioc_, Accept(), asio::detached);
  asio::co_spawn(ioc_, Sweep(), asio::detached);
}

asio::awaitable<void> Server::Accept() {
  while (acceptor_.is_open()) {
    auto [ec, socket] = co_await acceptor_.async_accept(kUseTuple);
    if (ec) {
      if (ec == asio::error::operation_aborted || !acceptor_.is_open()) co_return;
      // Out of descriptors and the like: log, breathe, keep serving the connections we have.
      spdlog::warn("accept failed: {}", ec.message());
      asio::steady_timer pause(ioc_, std::chrono::milliseconds(50));
      co_await pause.async_wait(kUseTuple);
      continue;
    }
    socket.set_option(tcp::no_delay(true), ec);
    sessions_.emplace_front(std::move(socket));
    ++connections_;
    asio::co_spawn(ioc_, Serve(sessions_.begin()), asio::detached);
  }
}

void Server::Close(Session& session) {
  boost::system::error_code ec;
  session.socket.shutdown(tcp::socket::shutdown_both, ec);
  session.socket.close(ec);
}

asio::awaitable<void> Server::Serve(std::list<Session>::iterator it) {
  namespace bh = boost::beast::http;
  Session& session = *it;
  // Bounded: a header, a chunk header or chunk extensions that never end overflow it (400).
  boost::beast::flat_buffer buffer(options_.max_header_bytes + options_.max_body_bytes + kBufferSlack);
  auto peer_ec = boost::system::error_code{};
  const auto peer = session.socket.remote_endpoint(peer_ec);
  const std::string client_address = peer_ec ? std::string() : peer.address().to_string();

  for (;;) {
    session.phase = Session::Phase::kWaiting;
    session.since = std::chrono::steady_clock::now();
    session.got_bytes = false;
    if (draining_) break;

    bh::request_parser<bh::string_body> parser;
    parser.body_limit(options_.max_body_bytes);
    parser.header_limit(options_.max_header_bytes);

    auto [ec, n] = co_await bh::async_read_header(session.socket, buffer, parser, kUseTuple);
    std::optional<Response> early;
    if (!ec) {
      session.phase = Session::Phase::kReading;
      // read_timeout counts from the request's first byte, when the sweep saw it arrive.
      if (!session.got_bytes) session.since = std::chrono::steady_clock::now();
      if (parser.get().count(bh::field::transfer_encoding) > 0 && !parser.chunked()) {
        // Beast would read such a request as bodiless and its body as the next request (RFC 9112
        // 6.3: without chunked as the final coding the length is unknowable; 400 and close).
        ec = bh::error::bad_transfer_encoding;
      } else {
        if (parser.get()[bh::field::expect] == "100-continue" && !parser.is_done()) {
          bh::response<bh::empty_body> go_on{Status::continue_, 11};
          auto [wec, wn] = co_await bh::async_write(session.socket, go_on, kUseTuple);
          if (wec) break;
        }
        const auto header_fields = std::distance(parser.get().begin(), parser.get().end());
        std::tie(ec, n) = co_await bh::async_read(session.socket, buffer, parser, kUseTuple);
        // Fields after the body (chunked trailers) would join the headers, where an
        // Authorization among them would be believed: such requests are refused.
        if (!ec && std::distance(parser.get().begin(), parser.get().end()) != header_fields) {
          early = PlainError(Status::bad_request, "bad_request", "trailer fields are not accepted",
                             std::string_view(parser.get()["X-Request-ID"]));
        }
      }
    }
    if (ec == bh::error::end_of_stream || ec == asio::error::eof || ec == asio::error::operation_aborted ||
        ec == asio::error::connection_reset || ec == asio::error::bad_descriptor) {
      break;
    }
    const std::string_view sent_id =
        parser.is_header_done() ? std::string_view(parser.get()["X-Request-ID"]) : std::string_view();
    if (ec == bh::error::body_limit) {
      early = PlainError(Status::payload_too_large, "payload_too_large", "the request body is larger than allowed",
                         sent_id);
    } else if (ec == bh::error::header_limit) {
      early = PlainError(Status::request_header_fields_too_large, "headers_too_large",
                         "the request headers are too large", sent_id);
    } else if (ec == bh::error::buffer_overflow) {
      early = PlainError(Status::bad_request, "bad_request", "the request framing is larger than allowed", sent_id);
    } else if (ec) {
      if (!session.socket.is_open() || (parser.got_some() == false && buffer.size() == 0)) break;
      early = PlainError(Status::bad_request, "bad_request", "the request is not valid HTTP", sent_id);
    }
    if (early) {
      session.phase = Session::Phase::kWriting;
      session.since = std::chrono::steady_clock::now();
      co_await bh::async_write(session.socket, *early, kUseTuple);
      break;
    }

    Request request;
    request.message = parser.release();
    request.client_address = client_address;
    session.phase = Session::Phase::kHandling;
    Response response;
    try {
      response = co_await handler_(request);
    } catch (const std::exception& e) {
      spdlog::error("unhandled error in request pipeline: {}", e.what());
      response = InternalErrorResponse();
    }
    const bool upgrade = response.result() == Status::switching_protocols;
    if (upgrade && upgrade_) {
      // The WebSocket session takes the socket and writes its own handshake answer.
      session.upgraded = true;
      upgrade_(std::move(request), std::move(session.socket), std::move(buffer));
      break;
    }
    response.keep_alive(request.message.keep_alive() && !draining_);
    if (request.message.method() == bh::verb::head) {
      // HEAD: the headers of the GET answer, Content-Length included, without its body.
      const auto length = response.body().size();
      response.body().clear();
      response.content_length(length);
    }
    session.phase = Session::Phase::kWriting;
    session.since = std::chrono::steady_clock::now();
    auto [wec, wn] = co_await bh::async_write(session.socket, response, kUseTuple);
    if (wec || !response.keep_alive()) break;
  }
  if (!session.upgraded) Close(session);
  sessions_.erase(it);
  --connections_;
}

asio::awaitable<void> Server::Sweep() {
  // One timer per thread instead of one per operation: cheap, and precise enough (1/4 s).
  const auto tick = std::min<std::chrono::milliseconds>(
      std::chrono::milliseconds(250), std::min(options_.idle_timeout, options_.read_timeout));
  for (;;) {
    sweep_timer_.expires_after(tick);
    auto [ec] = co_await sweep_timer_.async_wait(kUseTuple);
    if (ec) co_return;
    const auto now = std::chrono::steady_clock::now();
    boost::system::error_code avail_ec;
    for (auto& session : sessions_) {
      switch (session.phase) {
        case Session::Phase::kWaiting:
          if (session.socket.is_open() && session.socket.available(avail_ec) > 0 && !session.got_bytes) {
            // The next request has begun arriving: from here it must complete within read_timeout.
            session.got_bytes = true;
            session.since = now;
          }
          if (now - session.since > (session.got_bytes ? options_.read_timeout : options_.idle_timeout)) {
            Close(session);
          }
          break;
        case Session::Phase::kReading:
        case Session::Phase::kWriting:
          if (now - session.since > options_.read_timeout) Close(session);
          break;
        case Session::Phase::kHandling:
          break;
      }
    }
    if (draining_ && !acceptor_.is_open() && sessions_.empty()) co_return;
  }
}

void Server::BeginShutdown() {
  draining_ = true;
  boost::system::error_code ec;
  acceptor_.close(ec);
  for (auto& session : sessions_) {
    if (session.phase == Session::Phase::kWaiting && !session.got_bytes) Close(session);
  }
}

void Server::ForceClose() {
  for (auto& session : sessions_) Close(session);
  sweep_timer_.cancel();
}

}  // namespace vote::http
