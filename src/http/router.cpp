#include "http/router.hpp"

namespace vote::http {
namespace {

std::vector<std::string_view> Split(std::string_view path) {
  std::vector<std::string_view> parts;
  std::size_t start = 0;
  while (start <= path.size()) {
    auto end = path.find('/', start);
    if (end == std::string_view::npos) end = path.size();
    if (end > start) parts.push_back(path.substr(start, end - start));
    start = end + 1;
  }
  return parts;
}

bool IsCapture(std::string_view segment) {
  return segment.size() > 2 && segment.front() == '{' && segment.back() == '}';
}

}  // namespace

void Router::Add(Route route) {
  std::vector<std::string> segments;
  for (auto part : Split(route.pattern)) segments.emplace_back(part);
  routes_.push_back({std::move(route), std::move(segments)});
}

Match Router::Find(beast_http::verb method, std::string_view path) const {
  Match match;
  // A trailing slash is the same resource; an empty segment elsewhere matches nothing.
  const auto parts = Split(path);
  for (const auto& compiled : routes_) {
    if (compiled.segments.size() != parts.size()) continue;
    std::vector<std::pair<std::string, std::string>> params;
    bool ok = true;
    for (std::size_t i = 0; i < parts.size() && ok; ++i) {
      const auto& segment = compiled.segments[i];
      if (IsCapture(segment)) {
        params.emplace_back(segment.substr(1, segment.size() - 2), std::string(parts[i]));
      } else {
        ok = segment == parts[i];
      }
    }
    if (!ok) continue;
    match.pattern = compiled.route.pattern;
    if (compiled.route.method == method ||
        (method == beast_http::verb::head && compiled.route.method == beast_http::verb::get)) {
      match.route = &compiled.route;
      match.params = std::move(params);
      match.allowed.clear();
      return match;
    }
    match.allowed.emplace_back(beast_http::to_string(compiled.route.method));
  }
  return match;
}

}  // namespace vote::http
