#include "http/static_site.hpp"

#include <sodium.h>
#include <spdlog/spdlog.h>

#include <array>
#include <fstream>
#include <sstream>
#include <string_view>

namespace vote::http {
namespace {

namespace fs = std::filesystem;

constexpr std::string_view kContentSecurityPolicy =
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "base-uri 'none'; frame-ancestors 'none'; form-action 'self'; object-src 'none'";

std::string_view ContentType(const fs::path& path) {
  static constexpr std::array<std::pair<std::string_view, std::string_view>, 12> kTypes{{
      {".html", "text/html; charset=utf-8"},
      {".js", "text/javascript; charset=utf-8"},
      {".mjs", "text/javascript; charset=utf-8"},
      {".css", "text/css; charset=utf-8"},
      {".json", "application/json"},
      {".map", "application/json"},
      {".webmanifest", "application/manifest+json"},
      {".svg", "image/svg+xml"},
      {".png", "image/png"},
      {".ico", "image/x-icon"},
      {".txt", "text/plain; charset=utf-8"},
      {".woff2", "font/woff2"},
  }};
  const auto ext = path.extension().string();
  for (const auto& [known, type] : kTypes) {
    if (ext == known) return type;
  }
  return "application/octet-stream";
}

std::string ReadFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return std::move(out).str();
}

std::string StrongETag(std::string_view content) {
  std::array<unsigned char, 16> digest{};
  crypto_generichash(digest.data(), digest.size(), reinterpret_cast<const unsigned char*>(content.data()),
                     content.size(), nullptr, 0);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string tag = "\"";
  for (const auto byte : digest) {
    tag += kHex[byte >> 4];
    tag += kHex[byte & 0x0F];
  }
  return tag + "\"";
}

// Whether Accept-Encoding allows `coding` (present, and not with q=0).
bool Accepts(std::string_view accept_encoding, std::string_view coding) {
  while (!accept_encoding.empty()) {
    const auto comma = accept_encoding.find(',');
    auto item = accept_encoding.substr(0, comma);
    accept_encoding = comma == std::string_view::npos ? std::string_view() : accept_encoding.substr(comma + 1);
    while (!item.empty() && item.front() == ' ') item.remove_prefix(1);
    const auto semi = item.find(';');
    auto name = item.substr(0, semi);
    while (!name.empty() && name.back() == ' ') name.remove_suffix(1);
    if (name != coding) continue;
    if (semi == std::string_view::npos) return true;
    auto params = item.substr(semi + 1);
    while (!params.empty() && params.front() == ' ') params.remove_prefix(1);
    return !(params.starts_with("q=0") && params.find_first_not_of("q=0.", 0) == std::string_view::npos);
  }
  return false;
}

// A path that tries to step out of the root, or that no file name can be.
bool Suspicious(std::string_view path) {
  return path.find("..") != std::string_view::npos || path.find('\\') != std::string_view::npos ||
         path.find('%') != std::string_view::npos || path.find('\0') != std::string_view::npos ||
         path.find("//") != std::string_view::npos;
}

bool IsAppRoute(std::string_view path) {
  const auto last = path.substr(path.rfind('/') + 1);
  return last.find('.') == std::string_view::npos;
}

bool ETagMatches(std::string_view if_none_match, std::string_view etag) {
  if (if_none_match == "*") return true;
  return if_none_match.find(etag) != std::string_view::npos;
}

}  // namespace

void SetSecurityHeaders(Response& response) {
  response.set("X-Content-Type-Options", "nosniff");
  response.set("Referrer-Policy", "no-referrer");
  response.set("X-Frame-Options", "DENY");
}

StaticSite::StaticSite(const fs::path& root) {
  std::error_code ec;
  if (!fs::is_directory(root, ec)) {
    spdlog::warn("web client: {} is not a directory; / answers 404 (build it with `make build`)", root.string());
    return;
  }
  for (const auto& entry : fs::recursive_directory_iterator(root, fs::directory_options::none, ec)) {
    if (!entry.is_regular_file()) continue;
    const auto& path = entry.path();
    const auto ext = path.extension();
    if (ext == ".gz" || ext == ".br") continue;  // attached to the file they compress
    const auto relative = fs::relative(path, root).generic_string();
    const auto url = "/" + relative;
    File file;
    file.content_type = std::string(ContentType(path));
    file.identity = ReadFile(path);
    file.etag = StrongETag(file.identity);
    if (fs::exists(path.string() + ".gz")) file.gzip = ReadFile(path.string() + ".gz");
    if (fs::exists(path.string() + ".br")) file.brotli = ReadFile(path.string() + ".br");
    file.immutable = relative.starts_with("assets/");
    files_.emplace(url, std::move(file));
  }
  spdlog::info("web client: {} files from {}", files_.size(), root.string());
}

std::optional<Response> StaticSite::Serve(const Request& request) const {
  const auto path = request.Path();
  if (files_.empty() || Suspicious(path)) return std::nullopt;
  if (const auto it = files_.find(std::string(path == "/" ? "/index.html" : path)); it != files_.end()) {
    return Answer(request, it->second);
  }
  if (IsAppRoute(path)) {
    if (const auto index = files_.find("/index.html"); index != files_.end()) return Answer(request, index->second);
  }
  return std::nullopt;
}

Response StaticSite::Answer(const Request& request, const File& file) const {
  const auto accept = request.Header("Accept-Encoding");
  const std::string* body = &file.identity;
  std::string_view encoding;
  if (!file.brotli.empty() && Accepts(accept, "br")) {
    body = &file.brotli;
    encoding = "br";
  } else if (!file.gzip.empty() && Accepts(accept, "gzip")) {
    body = &file.gzip;
    encoding = "gzip";
  }
  // Each encoding is its own representation: its strong validator differs.
  std::string etag = file.etag;
  if (!encoding.empty()) etag.insert(etag.size() - 1, "-" + std::string(encoding));

  const bool not_modified = ETagMatches(request.Header("If-None-Match"), etag);
  Response response{not_modified ? Status::not_modified : Status::ok, 11};
  response.set(beast_http::field::etag, etag);
  response.set(beast_http::field::cache_control,
               file.immutable ? "public, max-age=31536000, immutable" : "no-cache");
  response.set(beast_http::field::vary, "Accept-Encoding");
  response.set(beast_http::field::content_type, file.content_type);
  response.set("Content-Security-Policy", kContentSecurityPolicy);
  SetSecurityHeaders(response);
  if (!not_modified) {
    if (!encoding.empty()) response.set(beast_http::field::content_encoding, encoding);
    response.body() = *body;
    response.prepare_payload();
  }
  return response;
}

}  // namespace vote::http
