// Bytes from the network: Beast's parser with the server's limits, then everything the server
// reads from a request before a handler runs (path, query parameters, route, static files, the
// JSON body). Nothing may crash, leak or read out of bounds; refusals are ApiErrors.
#include <boost/beast/http.hpp>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string_view>

#include "http/errors.hpp"
#include "http/router.hpp"
#include "http/static_site.hpp"

namespace {

namespace bh = boost::beast::http;
using vote::http::Access;

vote::http::Router& Routes() {
  static vote::http::Router router = [] {
    vote::http::Router r;
    auto none = [](vote::http::Request&) -> boost::asio::awaitable<vote::http::Response> { co_return vote::http::Response{}; };
    for (const char* pattern : {"/api/polls", "/api/polls/hot", "/api/polls/{id}", "/api/polls/{id}/vote",
                                "/api/polls/{id}/skip", "/api/polls/{id}/stats", "/api/users/me", "/api/ws"}) {
      r.Add({bh::verb::get, pattern, Access::kAuthenticated, none});
      r.Add({bh::verb::post, pattern, Access::kAuthenticated, none});
    }
    return r;
  }();
  return router;
}

const vote::http::StaticSite& Site() {
  static const vote::http::StaticSite site = [] {
    const auto root = std::filesystem::temp_directory_path() / "vote-fuzz-site";
    std::filesystem::create_directories(root / "assets");
    std::ofstream(root / "index.html") << "<!doctype html><title>fuzz</title>";
    std::ofstream(root / "assets" / "app-1.js") << "console.log(1)";
    return vote::http::StaticSite(root);
  }();
  return site;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  bh::request_parser<bh::string_body> parser;
  parser.body_limit(64 * 1024);
  parser.header_limit(16 * 1024);
  parser.eager(true);
  boost::beast::error_code ec;
  parser.put(boost::asio::buffer(data, size), ec);
  if (ec || !parser.is_done()) return 0;
  vote::http::Request request;
  request.message = parser.release();
  try {
    (void)request.Path();
    for (const char* name : {"limit", "tag", "q", "cursor", "userId", "ticket", "token"}) (void)request.Query(name);
  } catch (const vote::http::ApiError&) {
  }
  const auto match = Routes().Find(request.message.method(), request.Path());
  (void)match;
  (void)Site().Serve(request);
  try {
    (void)request.JsonBody(true);
  } catch (const vote::http::ApiError&) {
  }
  return 0;
}
