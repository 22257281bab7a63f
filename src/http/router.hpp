#pragma once

#include <boost/asio/awaitable.hpp>

#include <functional>
#include <string>
#include <vector>

#include "http/types.hpp"

namespace vote::http {

using Handler = std::function<boost::asio::awaitable<Response>(Request&)>;

enum class Access { kPublic, kAuthenticated };

struct Route {
  beast_http::verb method;
  std::string pattern;  // segments; "{name}" captures one segment
  Access access;
  Handler handler;
};

// The outcome of matching a path: the route, or why none fits.
struct Match {
  const Route* route = nullptr;
  std::string pattern;                // the template that matched the path (even for 405)
  std::vector<std::string> allowed;   // methods for the path when the method did not match
  std::vector<std::pair<std::string, std::string>> params;
};

// Maps (method, path) to a handler by segment templates, without regexes or string keys.
class Router {
 public:
  void Add(Route route);
  Match Find(beast_http::verb method, std::string_view path) const;

 private:
  struct Compiled {
    Route route;
    std::vector<std::string> segments;
  };
  std::vector<Compiled> routes_;
};

}  // namespace vote::http
