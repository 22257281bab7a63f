// Micro-benchmarks of the CPU work of one HTTP request, without sockets: what the server does
// between reading bytes and writing bytes for an empty route, route lookup alone, and the Stats
// JSON that every vote answer and WebSocket push carries. scripts/bench-http measures the same
// route over loopback against nginx.
#include <benchmark/benchmark.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/beast/core/buffers_range.hpp>
#include <boost/beast/http.hpp>

#include <array>
#include <string>
#include <string_view>

#include "domain/poll.hpp"
#include "http/router.hpp"
#include "http/types.hpp"

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bh = boost::beast::http;
namespace json = boost::json;
using vote::http::Access;
using verb = bh::verb;

// What wrk sends for `GET /healthz` (scripts/bench-http).
constexpr std::string_view kHealthzRequest =
    "GET /healthz HTTP/1.1\r\n"
    "Host: 127.0.0.1:8080\r\n"
    "\r\n";

// A browser-like request: more headers to parse, same route.
constexpr std::string_view kBrowserRequest =
    "GET /healthz HTTP/1.1\r\n"
    "Host: localhost:8080\r\n"
    "User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0\r\n"
    "Accept: application/json, text/plain, */*\r\n"
    "Accept-Language: en-US,en;q=0.5\r\n"
    "Accept-Encoding: gzip, deflate, br\r\n"
    "Authorization: Bearer eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NSIsImlzcyI6InZvdGUifQ.c2lnbmF0dXJl\r\n"
    "Connection: keep-alive\r\n"
    "\r\n";

vote::http::Handler OkHandler() {
  return [](vote::http::Request&) -> asio::awaitable<vote::http::Response> {
    co_return vote::http::JsonResponse(vote::http::Status::ok, json::object{{"status", "ok"}});
  };
}

// The route table of src/api/routes.cpp (same methods, templates and order; handlers are stubs,
// since MakeRouter needs every service). Keep the two in step.
vote::http::Router RealRouteTable() {
  vote::http::Router r;
  const auto h = OkHandler();
  r.Add({verb::get, "/healthz", Access::kPublic, h});
  r.Add({verb::get, "/readyz", Access::kPublic, h});
  r.Add({verb::get, "/metrics", Access::kPublic, h});
  r.Add({verb::post, "/api/auth/register", Access::kPublic, h});
  r.Add({verb::post, "/api/auth/login", Access::kPublic, h});
  r.Add({verb::get, "/api/users/me", Access::kAuthenticated, h});
  r.Add({verb::patch, "/api/users/me", Access::kAuthenticated, h});
  r.Add({verb::post, "/api/users/me/password", Access::kAuthenticated, h});
  r.Add({verb::post, "/api/polls", Access::kAuthenticated, h});
  r.Add({verb::get, "/api/polls", Access::kAuthenticated, h});
  r.Add({verb::get, "/api/polls/hot", Access::kAuthenticated, h});
  r.Add({verb::get, "/api/polls/{id}", Access::kAuthenticated, h});
  r.Add({verb::post, "/api/polls/{id}/vote", Access::kAuthenticated, h});
  r.Add({verb::post, "/api/polls/{id}/skip", Access::kAuthenticated, h});
  r.Add({verb::get, "/api/polls/{id}/stats", Access::kAuthenticated, h});
  r.Add({verb::get, "/api/ws", Access::kPublic, h});
  return r;
}

// Appends every buffer the serializer produces to `out`, as async_write would send them.
void Serialize(vote::http::Response& response, std::string& out) {
  bh::serializer<false, bh::string_body> sr{response};
  boost::system::error_code ec;
  do {
    sr.next(ec, [&sr, &out](boost::system::error_code& next_ec, const auto& buffers) {
      next_ec = {};
      for (const auto buffer : beast::buffers_range_ref(buffers)) {
        out.append(static_cast<const char*>(buffer.data()), buffer.size());
      }
      sr.consume(beast::buffer_bytes(buffers));
    });
  } while (!ec && !sr.is_done());
  if (ec) throw boost::system::system_error(ec);
}

// bytes -> parser -> Router::Find -> handler (co_await, as the server does) -> serializer -> bytes.
// The loop runs inside one coroutine so the handler is awaited exactly as in Server::Serve.
void RequestPath(benchmark::State& state, std::string_view raw) {
  vote::http::Router router;
  router.Add({verb::get, "/healthz", Access::kPublic, OkHandler()});
  std::string out;
  out.reserve(512);
  asio::io_context ioc{1};
  auto loop = [&]() -> asio::awaitable<void> {
    for (auto _ : state) {
      bh::request_parser<bh::string_body> parser;
      parser.body_limit(65536);
      parser.header_limit(16384);
      parser.eager(true);
      boost::system::error_code ec;
      parser.put(asio::buffer(raw.data(), raw.size()), ec);
      if (ec || !parser.is_done()) {
        state.SkipWithError("request did not parse");
        break;
      }
      vote::http::Request request;
      request.message = parser.release();
      const auto match = router.Find(request.message.method(), request.Path());
      if (match.route == nullptr) {
        state.SkipWithError("route not found");
        break;
      }
      request.route = match.pattern;
      auto response = co_await match.route->handler(request);
      response.keep_alive(request.message.keep_alive());
      out.clear();
      Serialize(response, out);
      benchmark::DoNotOptimize(out.data());
      benchmark::ClobberMemory();
    }
  };
  asio::co_spawn(ioc, loop(), asio::detached);
  ioc.run();
  state.SetItemsProcessed(state.iterations());
  state.counters["response_bytes"] = static_cast<double>(out.size());
}

void BM_RequestPathHealthz(benchmark::State& state) { RequestPath(state, kHealthzRequest); }
BENCHMARK(BM_RequestPathHealthz);

void BM_RequestPathHealthzBrowserHeaders(benchmark::State& state) { RequestPath(state, kBrowserRequest); }
BENCHMARK(BM_RequestPathHealthzBrowserHeaders);

struct Lookup {
  verb method;
  std::string_view path;
  const char* label;
};

constexpr std::array<Lookup, 6> kLookups{{
    {verb::get, "/healthz", "GET /healthz (first route)"},
    {verb::get, "/api/polls", "GET /api/polls (feed)"},
    {verb::post, "/api/polls/1234567/vote", "POST /api/polls/{id}/vote"},
    {verb::get, "/api/ws", "GET /api/ws (last route)"},
    {verb::delete_, "/api/polls/1234567", "DELETE /api/polls/{id} (405)"},
    {verb::get, "/api/nothing/here", "GET unknown (404)"},
}};

void BM_RouterFind(benchmark::State& state) {
  const auto router = RealRouteTable();
  const auto& lookup = kLookups[static_cast<std::size_t>(state.range(0))];
  for (auto _ : state) {
    auto match = router.Find(lookup.method, lookup.path);
    benchmark::DoNotOptimize(match);
  }
  state.SetLabel(lookup.label);
}
BENCHMARK(BM_RouterFind)->DenseRange(0, static_cast<int>(kLookups.size()) - 1);

vote::domain::Stats SampleStats(int options) {
  vote::domain::Stats stats;
  stats.poll_id = 123456;
  for (int i = 0; i < options; ++i) {
    stats.options.push_back("Option number " + std::to_string(i + 1));
    stats.votes.push_back(1000 + 337 * i);
  }
  return stats;
}

// domain::ToJson(Stats) alone: building the JSON value (percentages included).
void BM_StatsToJson(benchmark::State& state) {
  const auto stats = SampleStats(static_cast<int>(state.range(0)));
  for (auto _ : state) {
    auto value = vote::domain::ToJson(stats);
    benchmark::DoNotOptimize(value);
  }
}
BENCHMARK(BM_StatsToJson)->Arg(2)->Arg(4)->Arg(10);

// ToJson(Stats) plus SerializeJson: the text that a vote answer and a WebSocket push carry.
void BM_StatsToJsonSerialized(benchmark::State& state) {
  const auto stats = SampleStats(static_cast<int>(state.range(0)));
  std::size_t bytes = 0;
  for (auto _ : state) {
    const auto text = vote::http::SerializeJson(vote::domain::ToJson(stats));
    bytes = text.size();
    benchmark::DoNotOptimize(text.data());
  }
  state.counters["json_bytes"] = static_cast<double>(bytes);
}
BENCHMARK(BM_StatsToJsonSerialized)->Arg(2)->Arg(4)->Arg(10);

}  // namespace

BENCHMARK_MAIN();
