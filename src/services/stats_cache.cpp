#include "services/stats_cache.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>

namespace vote::services {
namespace {

namespace json = boost::json;

// For each KEYS[i]: sets it to ARGV[2i-1] unless the cached total (the number before '|') is
// already >= ARGV[2i]. ARGV[#ARGV] is the time to live in milliseconds.
constexpr const char* kPutIfFresher = R"lua(
local ttl = ARGV[#ARGV]
for i, key in ipairs(KEYS) do
  local current = redis.call('GET', key)
  local total = current and tonumber(string.match(current, '^(%d+)|'))
  if not total or total < tonumber(ARGV[2 * i]) then
    redis.call('SET', key, ARGV[2 * i - 1], 'PX', ttl)
  end
end
return 1
)lua";

std::string Key(std::int64_t poll_id) { return "poll:stats:" + std::to_string(poll_id); }

std::string Encode(const domain::Stats& stats) {
  json::array options(stats.options.begin(), stats.options.end());
  json::array votes(stats.votes.begin(), stats.votes.end());
  return std::to_string(stats.Total()) + "|" +
         json::serialize(json::object{{"o", std::move(options)}, {"v", std::move(votes)}});
}

std::optional<domain::Stats> Decode(std::int64_t poll_id, const std::string& text) {
  const auto bar = text.find('|');
  if (bar == std::string::npos) return std::nullopt;
  boost::system::error_code ec;
  auto value = json::parse(std::string_view(text).substr(bar + 1), ec);
  if (ec || !value.is_object()) return std::nullopt;
  domain::Stats stats;
  stats.poll_id = poll_id;
  try {
    for (const auto& o : value.at("o").as_array()) stats.options.emplace_back(o.as_string());
    for (const auto& v : value.at("v").as_array()) stats.votes.push_back(v.as_int64());
  } catch (const std::exception&) {
    return std::nullopt;
  }
  if (stats.options.size() != stats.votes.size()) return std::nullopt;
  return stats;
}

}  // namespace

std::vector<domain::Stats> StatsFromRows(const storage::Result& counts) {
  std::vector<domain::Stats> out;
  for (int row = 0; row < counts.Rows(); ++row) {
    domain::Stats stats;
    stats.poll_id = counts.Int(row, 0);
    stats.options = counts.TextArray(row, 1);
    stats.votes = counts.IntArray(row, 2);
    out.push_back(std::move(stats));
  }
  return out;
}

void StatsCache::MarkBehind(const std::vector<std::int64_t>& poll_ids) {
  for (const auto id : poll_ids) {
    if (behind_.size() >= kMaxBehind) break;
    behind_.insert(id);
  }
}

asio::awaitable<void> StatsCache::CatchUp() {
  if (behind_.empty() || !redis_.Connected()) co_return;
  std::vector<std::int64_t> polls(behind_.begin(), behind_.end());
  behind_.clear();
  try {
    auto params = storage::MakeParams(polls);
    auto result = co_await pg_.Execute(sql::kPollsStats, params);
    const auto stats = StatsFromRows(result);
    std::vector<const domain::Stats*> fresh;
    for (const auto& s : stats) fresh.push_back(&s);
    co_await PutMany(fresh);  // marks them behind again if Redis still fails
  } catch (const storage::PgError&) {
    MarkBehind(polls);  // the database is away: next time
  }
}

StatsCache::StatsCache(storage::Pool& pg, cache::Redis& redis, const config::RedisConfig& config,
                       metrics::Metrics& metrics)
    : pg_(pg), redis_(redis), config_(config), metrics_(metrics) {}

asio::awaitable<std::optional<domain::Stats>> StatsCache::Get(std::int64_t poll_id) {
  if (redis_.Connected()) {
    try {
      std::vector<std::string> args{"GET", Key(poll_id)};
      auto reply = co_await redis_.Command(std::move(args));
      if (reply.type == cache::Reply::Type::kString) {
        if (auto stats = Decode(poll_id, reply.str)) {
          metrics_.Cache("stats", true).Increment();
          co_return stats;
        }
      }
    } catch (const cache::RedisError&) {
      // Served from the database below.
    }
  }
  metrics_.Cache("stats", false).Increment();
  auto params = storage::MakeParams(poll_id);
  auto result = co_await pg_.Execute(sql::kPollStats, params);
  if (result.Rows() != 1) co_return std::nullopt;
  domain::Stats stats;
  stats.poll_id = poll_id;
  stats.options = result.TextArray(0, 0);
  stats.votes = result.IntArray(0, 1);
  co_await Put(stats);
  co_return stats;
}

asio::awaitable<void> StatsCache::Put(const domain::Stats& stats) {
  std::vector<const domain::Stats*> one{&stats};
  co_await PutMany(one);
}

asio::awaitable<void> StatsCache::PutMany(const std::vector<const domain::Stats*>& many) {
  if (many.empty()) co_return;
  // A write that does not happen leaves the entry behind (a frozen Redis keeps its data):
  // remember the polls for CatchUp.
  auto mark_behind = [this, &many] {
    std::vector<std::int64_t> polls;
    for (const auto* stats : many) polls.push_back(stats->poll_id);
    MarkBehind(polls);
  };
  if (!redis_.Connected()) {
    mark_behind();
    co_return;
  }
  std::vector<std::string> keys;
  std::vector<std::string> args;
  for (const auto* stats : many) {
    keys.push_back(Key(stats->poll_id));
    args.push_back(Encode(*stats));
    args.push_back(std::to_string(stats->Total()));
  }
  args.push_back(std::to_string(config_.stats_ttl.count()));
  try {
    co_await redis_.Eval(kPutIfFresher, std::move(keys), std::move(args));
  } catch (const cache::RedisError& e) {
    spdlog::debug("stats cache write skipped: {}", e.what());
    mark_behind();
  }
}

}  // namespace vote::services
