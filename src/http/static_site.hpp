#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <unordered_map>

#include "http/types.hpp"

namespace vote::http {

// The web client's built files (server.web_root), read into memory once at start: a few hundred
// KB, answered without touching the disk. Only files found under the root at start exist, so no
// request can name a path outside it. Precompressed `x.gz` / `x.br` beside a file are sent
// instead of it when the client accepts them.
class StaticSite {
 public:
  // An empty site (every lookup misses) when `root` does not exist.
  explicit StaticSite(const std::filesystem::path& root);

  // The answer to a GET or HEAD outside /api/: the file, 304 for a matching If-None-Match, the
  // app's index.html for an app route (a last segment without a dot), or nothing (the caller
  // answers 404). Security headers are set on every answer.
  std::optional<Response> Serve(const Request& request) const;
  std::size_t Files() const { return files_.size(); }

 private:
  struct File {
    std::string content_type;
    std::string etag;  // strong, of the identity content; encodings add a suffix
    std::string identity;
    std::string gzip;
    std::string brotli;
    bool immutable = false;  // hashed asset names under /assets/: cached for a year
  };
  Response Answer(const Request& request, const File& file) const;

  std::unordered_map<std::string, File> files_;  // by URL path, e.g. "/assets/index-4f3a.js"
};

// Headers every answer of the server carries: no sniffing, no referrer, no framing.
void SetSecurityHeaders(Response& response);

}  // namespace vote::http
