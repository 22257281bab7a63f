#include "config/config.hpp"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <charconv>
#include <functional>
#include <sstream>

namespace vote::config {
namespace {

// A settable field: (section, key) and a parser from its text form.
struct Field {
  std::string section;
  std::string key;
  std::function<void(const std::string&)> set;
};

template <typename Int>
Int ParseInt(const std::string& text) {
  Int value{};
  const auto* end = text.data() + text.size();
  const auto [ptr, ec] = std::from_chars(text.data(), end, value);
  if (ec != std::errc{} || ptr != end) {
    throw std::invalid_argument("not an integer");
  }
  return value;
}

bool ParseBool(const std::string& text) {
  if (text == "true" || text == "1" || text == "yes" || text == "on") return true;
  if (text == "false" || text == "0" || text == "no" || text == "off") return false;
  throw std::invalid_argument("not a boolean");
}

// "250ms", "5s", "10m", "24h"; a bare number is seconds.
Duration ParseDuration(const std::string& text) {
  std::size_t digits = 0;
  while (digits < text.size() && std::isdigit(static_cast<unsigned char>(text[digits]))) ++digits;
  if (digits == 0) throw std::invalid_argument("not a duration");
  const auto n = ParseInt<std::int64_t>(text.substr(0, digits));
  const auto unit = text.substr(digits);
  if (unit == "ms") return Duration(n);
  if (unit == "s" || unit.empty()) return std::chrono::seconds(n);
  if (unit == "m") return std::chrono::minutes(n);
  if (unit == "h") return std::chrono::hours(n);
  throw std::invalid_argument("unknown duration unit");
}

std::vector<std::string> ParseList(const std::string& text) {
  std::vector<std::string> items;
  std::stringstream in(text);
  for (std::string item; std::getline(in, item, ',');) {
    item.erase(0, item.find_first_not_of(" \t"));
    item.erase(item.find_last_not_of(" \t") + 1);
    if (!item.empty()) items.push_back(item);
  }
  return items;
}

void Bind(std::vector<Field>& out, std::string section, std::string key, std::string& v) {
  out.push_back({std::move(section), std::move(key), [&v](const std::string& t) { v = t; }});
}
void Bind(std::vector<Field>& out, std::string section, std::string key, int& v) {
  out.push_back({std::move(section), std::move(key), [&v](const std::string& t) { v = ParseInt<int>(t); }});
}
void Bind(std::vector<Field>& out, std::string section, std::string key, std::uint64_t& v) {
  out.push_back(
      {std::move(section), std::move(key), [&v](const std::string& t) { v = ParseInt<std::uint64_t>(t); }});
}
void Bind(std::vector<Field>& out, std::string section, std::string key, bool& v) {
  out.push_back({std::move(section), std::move(key), [&v](const std::string& t) { v = ParseBool(t); }});
}
void Bind(std::vector<Field>& out, std::string section, std::string key, Duration& v) {
  out.push_back({std::move(section), std::move(key), [&v](const std::string& t) { v = ParseDuration(t); }});
}
void Bind(std::vector<Field>& out, std::string section, std::string key, std::vector<std::string>& v) {
  out.push_back({std::move(section), std::move(key), [&v](const std::string& t) { v = ParseList(t); }});
}

std::vector<Field> Fields(Config& c) {
  std::vector<Field> f;
  Bind(f, "server", "host", c.server.host);
  Bind(f, "server", "port", c.server.port);
  Bind(f, "server", "env", c.server.env);
  Bind(f, "server", "threads", c.server.threads);
  Bind(f, "server", "idle_timeout", c.server.idle_timeout);
  Bind(f, "server", "read_timeout", c.server.read_timeout);
  Bind(f, "server", "shutdown_timeout", c.server.shutdown_timeout);
  Bind(f, "server", "max_body_bytes", c.server.max_body_bytes);
  Bind(f, "server", "max_header_bytes", c.server.max_header_bytes);
  Bind(f, "server", "trusted_proxies", c.server.trusted_proxies);
  Bind(f, "server", "web_root", c.server.web_root);
  Bind(f, "server", "cors_origins", c.server.cors_origins);
  Bind(f, "server", "ws_ticket_ttl", c.server.ws_ticket_ttl);
  Bind(f, "server", "clock_offset", c.server.clock_offset);
  Bind(f, "server", "log_level", c.server.log_level);
  Bind(f, "server", "access_log", c.server.access_log);
  Bind(f, "server", "port_file", c.server.port_file);
  Bind(f, "postgres", "host", c.postgres.host);
  Bind(f, "postgres", "port", c.postgres.port);
  Bind(f, "postgres", "user", c.postgres.user);
  Bind(f, "postgres", "password", c.postgres.password);
  Bind(f, "postgres", "dbname", c.postgres.dbname);
  Bind(f, "postgres", "max_connections", c.postgres.max_connections);
  Bind(f, "postgres", "connect_timeout", c.postgres.connect_timeout);
  Bind(f, "postgres", "statement_timeout", c.postgres.statement_timeout);
  Bind(f, "postgres", "acquire_timeout", c.postgres.acquire_timeout);
  Bind(f, "postgres", "max_waiters", c.postgres.max_waiters);
  Bind(f, "postgres", "migrations_dir", c.postgres.migrations_dir);
  Bind(f, "redis", "host", c.redis.host);
  Bind(f, "redis", "port", c.redis.port);
  Bind(f, "redis", "password", c.redis.password);
  Bind(f, "redis", "db", c.redis.db);
  Bind(f, "redis", "connect_timeout", c.redis.connect_timeout);
  Bind(f, "redis", "command_timeout", c.redis.command_timeout);
  Bind(f, "redis", "reconnect_interval", c.redis.reconnect_interval);
  Bind(f, "redis", "stats_ttl", c.redis.stats_ttl);
  Bind(f, "rabbitmq", "host", c.rabbitmq.host);
  Bind(f, "rabbitmq", "port", c.rabbitmq.port);
  Bind(f, "rabbitmq", "user", c.rabbitmq.user);
  Bind(f, "rabbitmq", "password", c.rabbitmq.password);
  Bind(f, "rabbitmq", "vhost", c.rabbitmq.vhost);
  Bind(f, "rabbitmq", "prefetch_count", c.rabbitmq.prefetch_count);
  Bind(f, "rabbitmq", "reconnect_interval", c.rabbitmq.reconnect_interval);
  Bind(f, "rabbitmq", "max_retries", c.rabbitmq.max_retries);
  Bind(f, "rabbitmq", "publish_batch", c.rabbitmq.publish_batch);
  Bind(f, "rabbitmq", "relay_interval", c.rabbitmq.relay_interval);
  Bind(f, "rabbitmq", "consumers", c.rabbitmq.consumers);
  Bind(f, "jwt", "secret_key", c.jwt.secret_key);
  Bind(f, "jwt", "token_duration", c.jwt.token_duration);
  Bind(f, "jwt", "issuer", c.jwt.issuer);
  Bind(f, "auth", "hash_opslimit", c.auth.hash_opslimit);
  Bind(f, "auth", "hash_memlimit", c.auth.hash_memlimit);
  Bind(f, "auth", "hash_workers", c.auth.hash_workers);
  Bind(f, "auth", "hash_queue", c.auth.hash_queue);
  Bind(f, "ratelimit", "enabled", c.ratelimit.enabled);
  Bind(f, "ratelimit", "user_per_minute", c.ratelimit.user_per_minute);
  Bind(f, "ratelimit", "ip_per_second", c.ratelimit.ip_per_second);
  Bind(f, "ratelimit", "user_window", c.ratelimit.user_window);
  Bind(f, "ratelimit", "ip_window", c.ratelimit.ip_window);
  Bind(f, "votes", "daily_limit", c.votes.daily_limit);
  Bind(f, "votes", "counter_shards", c.votes.counter_shards);
  Bind(f, "votes", "batch_max", c.votes.batch_max);
  Bind(f, "votes", "answer_timeout", c.votes.answer_timeout);
  Bind(f, "votes", "max_queue", c.votes.max_queue);
  Bind(f, "votes", "batches_in_flight", c.votes.batches_in_flight);
  Bind(f, "votes", "parallel_batch_min", c.votes.parallel_batch_min);
  Bind(f, "votes", "idempotency_ttl", c.votes.idempotency_ttl);
  Bind(f, "feed", "user_cache_size", c.feed.user_cache_size);
  Bind(f, "feed", "poll_cache_size", c.feed.poll_cache_size);
  Bind(f, "feed", "refresh_interval", c.feed.refresh_interval);
  return f;
}

std::string Upper(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char ch) { return std::toupper(ch); });
  return s;
}

void Apply(const Field& field, const std::string& value, const std::string& origin) {
  try {
    field.set(value);
  } catch (const std::exception& e) {
    throw ConfigError(origin + ": bad value '" + value + "' for " + field.section + "." + field.key + " (" +
                      e.what() + ")");
  }
}

std::string ScalarText(const YAML::Node& node) {
  if (node.IsSequence()) {
    std::string joined;
    for (const auto& item : node) {
      if (!joined.empty()) joined += ",";
      joined += item.as<std::string>();
    }
    return joined;
  }
  if (node.IsNull()) return "";
  return node.as<std::string>();
}

void Validate(const Config& c) {
  auto require = [](bool ok, const std::string& what) {
    if (!ok) throw ConfigError("bad value for " + what);
  };
  require(c.server.port >= 0 && c.server.port <= 65535, "server.port (0-65535)");
  require(c.server.threads >= 0 && c.server.threads <= 256, "server.threads (0-256)");
  require(c.server.env == "development" || c.server.env == "test" || c.server.env == "production",
          "server.env (development, test or production)");
  require(c.server.max_body_bytes > 0, "server.max_body_bytes (> 0)");
  require(c.postgres.max_connections >= 1, "postgres.max_connections (>= 1)");
  require(c.postgres.max_waiters >= 1, "postgres.max_waiters (>= 1)");
  require(c.votes.max_queue >= 1, "votes.max_queue (>= 1)");
  require(c.redis.db >= 0, "redis.db (>= 0)");
  require(c.jwt.token_duration.count() > 0, "jwt.token_duration (> 0)");
  require(!c.jwt.secret_key.empty(), "jwt.secret_key (not empty)");
  require(c.auth.hash_workers >= 1 && c.auth.hash_queue >= 1, "auth.hash_workers/hash_queue (>= 1)");
  require(c.ratelimit.user_per_minute >= 1, "ratelimit.user_per_minute (>= 1)");
  require(c.ratelimit.ip_per_second >= 1, "ratelimit.ip_per_second (>= 1)");
  require(c.votes.daily_limit >= 0, "votes.daily_limit (>= 0)");
  require(c.votes.counter_shards >= 1 && c.votes.counter_shards <= 1024, "votes.counter_shards (1-1024)");
  require(c.votes.batch_max >= 1, "votes.batch_max (>= 1)");
  require(c.votes.batches_in_flight >= 1, "votes.batches_in_flight (>= 1)");
  require(c.votes.parallel_batch_min >= 1, "votes.parallel_batch_min (>= 1)");
  require(c.feed.user_cache_size >= 1 && c.feed.poll_cache_size >= 1, "feed cache sizes (>= 1)");
}

}  // namespace

const char* ProcessEnvironment(const char* name) { return std::getenv(name); }

Config Load(const std::string& path, EnvLookup env) {
  Config config;
  auto fields = Fields(config);
  auto find = [&fields](const std::string& section, const std::string& key) -> const Field* {
    for (const auto& f : fields) {
      if (f.section == section && f.key == key) return &f;
    }
    return nullptr;
  };

  if (!path.empty()) {
    YAML::Node root;
    try {
      root = YAML::LoadFile(path);
    } catch (const YAML::Exception& e) {
      throw ConfigError("cannot read config file " + path + ": " + e.what());
    }
    if (root && !root.IsNull() && !root.IsMap()) throw ConfigError(path + ": top level must be a mapping");
    for (const auto& section : root) {
      const auto name = section.first.as<std::string>();
      if (!section.second.IsMap()) throw ConfigError(path + ": section " + name + " must be a mapping");
      for (const auto& item : section.second) {
        const auto key = item.first.as<std::string>();
        const auto* field = find(name, key);
        if (field == nullptr) throw ConfigError(path + ": unknown key " + name + "." + key);
        Apply(*field, ScalarText(item.second), path);
      }
    }
  }

  for (const auto& field : fields) {
    const auto var = "VOTE_" + Upper(field.section) + "_" + Upper(field.key);
    if (const char* value = env(var.c_str())) {
      Apply(field, value, "environment " + var);
    }
  }
  Validate(config);
  return config;
}

void CheckProductionSecrets(const Config& c) {
  if (c.server.env != "production") return;
  const Config defaults;
  if (c.server.clock_offset != defaults.server.clock_offset) {
    throw ConfigError("server.clock_offset: a clock that lies is for tests only, refused in production");
  }
  if (c.jwt.secret_key == defaults.jwt.secret_key || c.jwt.secret_key.size() < 32) {
    throw ConfigError("jwt.secret_key: the development default (or a key under 32 bytes) is refused in production");
  }
  if (c.postgres.password == defaults.postgres.password) {
    throw ConfigError("postgres.password: the development default is refused in production");
  }
  if (c.rabbitmq.password == defaults.rabbitmq.password) {
    throw ConfigError("rabbitmq.password: the development default is refused in production");
  }
}

std::string PostgresConninfo(const PostgresConfig& pg) {
  // Values are quoted so that spaces or quotes in a password cannot inject other keywords.
  auto quote = [](const std::string& v) {
    std::string out = "'";
    for (char ch : v) {
      if (ch == '\'' || ch == '\\') out += '\\';
      out += ch;
    }
    return out + "'";
  };
  return "host=" + quote(pg.host) + " port=" + std::to_string(pg.port) + " user=" + quote(pg.user) +
         " password=" + quote(pg.password) + " dbname=" + quote(pg.dbname) + " application_name=vote";
}

}  // namespace vote::config
