#include "metrics/metrics.hpp"

#include <prometheus/text_serializer.h>

#include <chrono>
#include <fstream>
#include <sstream>
#include <unistd.h>

namespace vote::metrics {
namespace {

using prometheus::BuildCounter;
using prometheus::BuildGauge;
using prometheus::BuildHistogram;

// Resident memory and open descriptors, read at scrape time from /proc.
void AppendProcessMetrics(std::string& out) {
  std::ifstream statm("/proc/self/statm");
  long pages_total = 0;
  long pages_resident = 0;
  statm >> pages_total >> pages_resident;
  const long page = sysconf(_SC_PAGESIZE);
  std::ifstream stat("/proc/self/stat");
  std::string token;
  double cpu_ticks = 0;
  for (int field = 1; stat >> token; ++field) {
    if (field == 14 || field == 15) cpu_ticks += std::stod(token);
    if (field == 15) break;
  }
  std::ostringstream s;
  s << "# HELP process_resident_memory_bytes Resident memory size in bytes.\n"
    << "# TYPE process_resident_memory_bytes gauge\n"
    << "process_resident_memory_bytes " << pages_resident * page << "\n"
    << "# HELP process_virtual_memory_bytes Virtual memory size in bytes.\n"
    << "# TYPE process_virtual_memory_bytes gauge\n"
    << "process_virtual_memory_bytes " << pages_total * page << "\n"
    << "# HELP process_cpu_seconds_total Total user and system CPU time in seconds.\n"
    << "# TYPE process_cpu_seconds_total counter\n"
    << "process_cpu_seconds_total " << cpu_ticks / static_cast<double>(sysconf(_SC_CLK_TCK)) << "\n";
  out += s.str();
}

}  // namespace

Metrics::Metrics()
    : registry_(std::make_shared<prometheus::Registry>()),
      http_requests_(BuildCounter().Name("http_requests_total").Help("HTTP requests by method, route template and status").Register(*registry_)),
      http_duration_(BuildHistogram().Name("http_request_duration_seconds").Help("HTTP request duration by route template").Register(*registry_)),
      in_flight_(BuildGauge().Name("http_requests_in_flight").Help("HTTP requests being handled").Register(*registry_).Add({})),
      registrations_(BuildCounter().Name("vote_registrations_total").Help("Registrations by outcome").Register(*registry_)),
      logins_(BuildCounter().Name("vote_logins_total").Help("Logins by outcome").Register(*registry_)),
      polls_created_(BuildCounter().Name("vote_polls_created_total").Help("Polls created").Register(*registry_).Add({})),
      votes_(BuildCounter().Name("vote_votes_total").Help("Votes by outcome").Register(*registry_)),
      skips_(BuildCounter().Name("vote_skips_total").Help("Skips stored").Register(*registry_).Add({})),
      cache_(BuildCounter().Name("vote_cache_requests_total").Help("Cache lookups by cache and result").Register(*registry_)),
      rate_limited_(BuildCounter().Name("vote_rate_limited_total").Help("Requests refused by a rate limit, by kind").Register(*registry_)),
      ratelimit_fallback_(BuildGauge().Name("vote_ratelimit_local_fallback").Help("1 while rate limits are enforced in-process because Redis is unreachable").Register(*registry_).Add({})),
      pools_(BuildGauge().Name("vote_pool_connections").Help("Client pool connections by pool and state").Register(*registry_)),
      dependency_up_(BuildGauge().Name("vote_dependency_up").Help("1 when the dependency answered its last check").Register(*registry_)),
      vote_batch_size_(BuildHistogram().Name("vote_vote_batch_size").Help("Votes committed per database transaction").Register(*registry_).Add({}, prometheus::Histogram::BucketBoundaries{1, 2, 4, 8, 16, 32, 64, 128})),
      events_(BuildCounter().Name("vote_events_total").Help("Outbox events by state (published, confirmed, failed)").Register(*registry_)),
      outbox_backlog_(BuildGauge().Name("vote_outbox_backlog").Help("Outbox events not yet confirmed by the broker").Register(*registry_).Add({})),
      outbox_oldest_age_(BuildGauge().Name("vote_outbox_oldest_age_seconds").Help("Age of the oldest unpublished outbox event").Register(*registry_).Add({})),
      events_consumed_(BuildCounter().Name("vote_events_consumed_total").Help("Events consumed by type").Register(*registry_)),
      consumer_lag_(BuildGauge().Name("vote_events_consumer_lag_seconds").Help("Seconds from an event's commit to its arrival at this instance (last event seen)").Register(*registry_).Add({})),
      ws_connections_(BuildGauge().Name("vote_websocket_connections").Help("Open WebSocket connections").Register(*registry_).Add({})),
      ws_messages_(BuildCounter().Name("vote_websocket_messages_total").Help("WebSocket messages by direction").Register(*registry_)),
      feed_index_polls_(BuildGauge().Name("vote_feed_index_polls").Help("Polls in this instance's feed index").Register(*registry_).Add({})),
      feed_cached_users_(BuildGauge().Name("vote_feed_cached_users").Help("Answered-poll sets held in memory").Register(*registry_).Add({})),
      load_shed_(BuildCounter().Name("vote_load_shed_total").Help("Requests turned away with 503 past a bound: vote_queue, vote_timeout, pg_pool").Register(*registry_)),
      // The known reasons exist at 0 from the start, so increase() sees the first shed request.
      shed_vote_queue_(load_shed_.Add({{"reason", "vote_queue"}})),
      shed_vote_timeout_(load_shed_.Add({{"reason", "vote_timeout"}})),
      shed_pg_pool_(load_shed_.Add({{"reason", "pg_pool"}})),
      feed_checks_(BuildCounter().Name("vote_feed_checks_total").Help("Feed checks against the database (one per pick of a page): current (answered set exact) or behind (ids checked)").Register(*registry_)),
      feed_check_current_(feed_checks_.Add({{"result", "current"}})),
      feed_check_behind_(feed_checks_.Add({{"result", "behind"}})),
      start_time_(BuildGauge().Name("process_start_time_seconds").Help("Start time of the process since the Unix epoch").Register(*registry_).Add({})) {
  for (std::size_t i = 0; i < caches_.size(); ++i) {
    static constexpr std::array<std::string_view, 3> kNames{"stats", "answered", "poll"};
    const std::string name(kNames[i]);
    caches_[i] = {kNames[i], &cache_.Add({{"cache", name}, {"result", "hit"}}),
                  &cache_.Add({{"cache", name}, {"result", "miss"}})};
  }
  start_time_.Set(static_cast<double>(
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count()));
}

namespace {

// Label values come from fixed sets only: a client inventing methods must not invent series.
std::string_view MethodLabel(std::string_view method) {
  static constexpr std::array<std::string_view, 7> kKnown{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"};
  for (const auto known : kKnown) {
    if (method == known) return known;
  }
  return "other";
}

}  // namespace

void Metrics::ObserveRequest(const std::string& raw_method, const std::string& route, int status, double seconds) {
  const std::string method(MethodLabel(raw_method));
  std::string key = method;
  key += ' ';
  key += route;
  key += ' ';
  key += std::to_string(status);
  std::pair<prometheus::Counter*, prometheus::Histogram*> found{};
  {
    std::lock_guard lock(requests_mutex_);
    if (const auto it = requests_.find(key); it != requests_.end()) found = it->second;
  }
  if (found.first == nullptr) {
    static const prometheus::Histogram::BucketBoundaries kBuckets{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                                                 0.05,   0.1,   0.25,   0.5,   1,    2.5};
    found = {&http_requests_.Add({{"method", method}, {"route", route}, {"status", std::to_string(status)}}),
             &http_duration_.Add({{"route", route}}, kBuckets)};
    std::lock_guard lock(requests_mutex_);
    requests_.emplace(std::move(key), found);
  }
  found.first->Increment();
  found.second->Observe(seconds);
}

std::string Metrics::Serialize() const {
  prometheus::TextSerializer serializer;
  auto text = serializer.Serialize(registry_->Collect());
  AppendProcessMetrics(text);
  return text;
}

}  // namespace vote::metrics
