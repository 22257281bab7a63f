#pragma once

#include <chrono>
#include <cstdlib>
#include <stdexcept>
#include <cstdint>
#include <string>
#include <vector>

namespace vote::config {

using Duration = std::chrono::milliseconds;

struct ServerConfig {
  std::string host = "0.0.0.0";
  int port = 8080;
  std::string env = "development";
  int threads = 0;  // 0: one per core
  Duration idle_timeout{std::chrono::seconds(60)};
  Duration read_timeout{std::chrono::seconds(10)};
  Duration shutdown_timeout{std::chrono::seconds(10)};
  int max_body_bytes = 64 * 1024;
  int max_header_bytes = 16 * 1024;
  std::vector<std::string> trusted_proxies;
  std::string web_root = "web/dist";         // the web client's built files, served at /
  std::vector<std::string> cors_origins;     // origins of clients served elsewhere, e.g. https://app.example
  Duration ws_ticket_ttl{std::chrono::seconds(30)};
  Duration clock_offset{0};  // tests only: this instance's clock runs ahead by this much
  std::string log_level = "info";
  bool access_log = true;
  std::string port_file;  // written with the bound port once listening (tests bind port 0)
};

struct PostgresConfig {
  std::string host = "127.0.0.1";
  int port = 5432;
  std::string user = "postgres";
  std::string password = "postgres";
  std::string dbname = "vote";
  int max_connections = 16;  // per instance, split across event-loop threads
  Duration connect_timeout{std::chrono::seconds(5)};
  Duration statement_timeout{std::chrono::seconds(10)};
  Duration acquire_timeout{std::chrono::seconds(2)};  // a request waiting for a pooled connection
  int max_waiters = 256;                              // per pool; more waiting: 503
  std::string migrations_dir = "migrations";
};

struct RedisConfig {
  std::string host = "127.0.0.1";
  int port = 6379;
  std::string password;
  int db = 0;
  Duration connect_timeout{std::chrono::seconds(2)};
  Duration command_timeout{std::chrono::seconds(1)};
  Duration reconnect_interval{std::chrono::seconds(1)};
  Duration stats_ttl{std::chrono::hours(1)};
};

struct RabbitmqConfig {
  std::string host = "127.0.0.1";
  int port = 5672;
  std::string user = "guest";
  std::string password = "guest";
  std::string vhost = "/";
  int prefetch_count = 10;
  Duration reconnect_interval{std::chrono::seconds(5)};
  int max_retries = 3;
  int publish_batch = 500;
  Duration relay_interval{std::chrono::milliseconds(20)};
  bool consumers = true;  // run consumers inside `vote serve`
};

struct JwtConfig {
  std::string secret_key = "dev-secret-change-me";
  Duration token_duration{std::chrono::hours(24)};
  std::string issuer = "vote";
};

struct AuthConfig {
  std::uint64_t hash_opslimit = 2;              // crypto_pwhash_OPSLIMIT_INTERACTIVE
  std::uint64_t hash_memlimit = 64ull << 20;    // crypto_pwhash_MEMLIMIT_INTERACTIVE
  int hash_workers = 2;
  int hash_queue = 64;
};

struct RateLimitConfig {
  bool enabled = true;
  int user_per_minute = 100;
  int ip_per_second = 200;
  Duration user_window{std::chrono::minutes(1)};
  Duration ip_window{std::chrono::seconds(1)};
};

struct VotesConfig {
  int daily_limit = 100;
  int counter_shards = 16;
  int batch_max = 64;
  int batches_in_flight = 1;  // vote writers per instance; fewer means larger groups per commit
  int parallel_batch_min = 8;  // votes waiting before a group is queued behind one in flight
  Duration idempotency_ttl{std::chrono::hours(24)};
  Duration answer_timeout{std::chrono::seconds(10)};  // a voter waits this long for its group, then 503
  int max_queue = 10000;                               // votes waiting per instance; more: 503
};

struct FeedConfig {
  int user_cache_size = 100000;   // answered-sets kept in memory, LRU
  int poll_cache_size = 200000;   // poll details kept in memory, LRU
  Duration refresh_interval{std::chrono::seconds(1)};
};

struct Config {
  ServerConfig server;
  PostgresConfig postgres;
  RedisConfig redis;
  RabbitmqConfig rabbitmq;
  JwtConfig jwt;
  AuthConfig auth;
  RateLimitConfig ratelimit;
  VotesConfig votes;
  FeedConfig feed;
};

// Thrown for an unknown key or a value that does not parse; the message names the key.
struct ConfigError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Defaults, overlaid by the YAML file (when path is not empty), then by VOTE_<SECTION>_<KEY>.
// `environ_lookup` is injected so tests need not touch the process environment.
using EnvLookup = const char* (*)(const char*);
const char* ProcessEnvironment(const char* name);
Config Load(const std::string& path, EnvLookup env = &ProcessEnvironment);

// Throws ConfigError when a production deployment still uses a development secret.
void CheckProductionSecrets(const Config& config);

std::string PostgresConninfo(const PostgresConfig& pg);

}  // namespace vote::config
