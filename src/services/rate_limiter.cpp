#include "services/rate_limiter.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>

namespace vote::services {
namespace {

using std::chrono::milliseconds;

// Idle entries are dropped this often, so memory follows the active clients only.
constexpr auto kPurgeInterval = std::chrono::seconds(10);

std::int64_t CeilDiv(std::int64_t a, std::int64_t b) {
  const std::int64_t q = a / b;
  return (a % b != 0 && (a > 0) == (b > 0)) ? q + 1 : q;
}

std::int64_t UnixMillis(domain::TimePoint t) {
  return std::chrono::duration_cast<milliseconds>(t.time_since_epoch()).count();
}

// Sliding-window log: one sorted set per limit, one member per counted request, scored by its
// time in ms. KEYS are the sets (address first, then user); ARGV holds limit and window (ms) for
// each. The request is added to every set only when all limits allow it, so a refused request
// changes nothing. Time comes from the Redis server, so instances with skewed clocks agree (Redis
// 7 replicates a script's effects, so TIME before writes is allowed).
// Returns {allowed, index of the limit described, remaining, ms when its window frees a request,
// now in ms}: the first limit that refused, or the last one.
const std::string& Script() {
  static const std::string script = R"lua(
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local counts = {}
for i = 1, #KEYS do
  local limit = tonumber(ARGV[2 * i - 1])
  local window = tonumber(ARGV[2 * i])
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now - window)
  local count = redis.call('ZCARD', KEYS[i])
  if count >= limit then
    local oldest = redis.call('ZRANGE', KEYS[i], 0, 0, 'WITHSCORES')
    local frees = now + window
    if oldest[2] then frees = tonumber(oldest[2]) + window end
    return {0, i, 0, frees, now}
  end
  counts[i] = count
end
for i = 1, #KEYS do
  -- Within one millisecond the count only grows, so the member is unique in its set.
  redis.call('ZADD', KEYS[i], now, string.format('%d-%d', now, counts[i]))
  redis.call('PEXPIRE', KEYS[i], ARGV[2 * i])
end
local n = #KEYS
local oldest = redis.call('ZRANGE', KEYS[n], 0, 0, 'WITHSCORES')
return {1, n, tonumber(ARGV[2 * n - 1]) - counts[n] - 1, tonumber(oldest[2]) + tonumber(ARGV[2 * n]), now}
)lua";
  return script;
}

RateDecision Decide(const LocalRateLimiter::Limit& limit, bool allowed, std::int64_t count, std::int64_t frees_ms,
                    std::int64_t now_ms) {
  RateDecision d;
  d.allowed = allowed;
  d.kind = limit.kind;
  d.limit = limit.limit;
  d.remaining = static_cast<int>(std::max<std::int64_t>(0, limit.limit - count));
  d.reset_unix = CeilDiv(frees_ms, 1000);
  if (!allowed) d.retry_after_seconds = static_cast<int>(std::max<std::int64_t>(1, CeilDiv(frees_ms - now_ms, 1000)));
  return d;
}

RateDecision FromReply(const cache::Reply& reply, const std::vector<LocalRateLimiter::Limit>& limits) {
  const auto& e = reply.elements;
  const bool well_formed = reply.type == cache::Reply::Type::kArray && e.size() == 5 &&
                           std::all_of(e.begin(), e.end(), [](const cache::Reply& r) {
                             return r.type == cache::Reply::Type::kInteger;
                           }) &&
                           e[1].integer >= 1 && e[1].integer <= static_cast<long long>(limits.size());
  if (!well_formed) throw cache::RedisError("rate limit script: unexpected reply");
  const auto& limit = limits[static_cast<std::size_t>(e[1].integer - 1)];
  const bool allowed = e[0].integer == 1;
  // The script reports what remains; Decide takes the count that uses it up.
  return Decide(limit, allowed, limit.limit - e[2].integer, e[3].integer, e[4].integer);
}

std::string RedisKey(const LocalRateLimiter::Limit& limit) {
  if (limit.kind == "user") return "rate:user:" + limit.key + ":api";
  return "rate:" + limit.kind + ":" + limit.key;
}

}  // namespace

struct LocalRateLimiter::Entry {
  std::vector<domain::TimePoint> times;  // counted requests, oldest first
  milliseconds window{0};
};

LocalRateLimiter::LocalRateLimiter(domain::Clock clock) : clock_(std::move(clock)) {}

RateDecision LocalRateLimiter::Check(const std::string& kind, const std::string& key, int limit,
                                     milliseconds window) {
  const std::vector<Limit> limits{{kind, key, limit, window}};
  return Check(limits);
}

RateDecision LocalRateLimiter::Check(const std::vector<Limit>& limits) {
  if (limits.empty()) return {};
  const auto now = clock_();
  const std::lock_guard lock(mutex_);

  const auto tick = std::chrono::steady_clock::now();
  if (tick - last_purge_ >= kPurgeInterval) {
    last_purge_ = tick;
    std::erase_if(entries_, [&](const auto& item) {
      const Entry& e = *item.second;
      return e.times.empty() || e.times.back() + e.window <= now;
    });
  }

  std::vector<Entry*> counted;
  counted.reserve(limits.size());
  for (const auto& limit : limits) {
    auto& slot = entries_[limit.kind + ':' + limit.key];
    if (!slot) slot = std::make_shared<Entry>();
    Entry& e = *slot;
    e.window = limit.window;
    // A request made at t counts during [t, t + window).
    e.times.erase(e.times.begin(), std::upper_bound(e.times.begin(), e.times.end(), now - limit.window));
    if (static_cast<int>(e.times.size()) >= limit.limit) {
      const auto frees = e.times.empty() ? now + limit.window : e.times.front() + limit.window;
      return Decide(limit, false, limit.limit, UnixMillis(frees), UnixMillis(now));
    }
    counted.push_back(&e);
  }
  for (auto* e : counted) e->times.insert(std::upper_bound(e->times.begin(), e->times.end(), now), now);

  const auto& last = limits.back();
  const Entry& e = *counted.back();
  return Decide(last, true, static_cast<std::int64_t>(e.times.size()), UnixMillis(e.times.front() + last.window),
                UnixMillis(now));
}

bool LocalRateLimiter::Engage(bool on, prometheus::Gauge& gauge) {
  const std::lock_guard lock(mutex_);
  engaged_ += on ? 1 : -1;
  const bool changed = on ? engaged_ == 1 : engaged_ == 0;
  if (changed) gauge.Set(on ? 1 : 0);
  return changed;
}

RateLimiter::RateLimiter(cache::Redis& redis, LocalRateLimiter& fallback, const config::RateLimitConfig& config,
                         metrics::Metrics& metrics, domain::Clock clock)
    : redis_(redis), fallback_(fallback), config_(config), metrics_(metrics), clock_(std::move(clock)) {}

asio::awaitable<RateDecision> RateLimiter::Check(const std::string& address, std::optional<std::int64_t> user_id) {
  std::vector<LocalRateLimiter::Limit> limits;
  limits.push_back({"ip", address, config_.ip_per_second, config_.ip_window});
  if (user_id) limits.push_back({"user", std::to_string(*user_id), config_.user_per_minute, config_.user_window});
  std::vector<std::string> keys;
  std::vector<std::string> args;
  for (const auto& limit : limits) {
    keys.push_back(RedisKey(limit));
    args.push_back(std::to_string(limit.limit));
    args.push_back(std::to_string(limit.window.count()));
  }

  std::optional<RateDecision> decision;
  std::string failure;
  try {
    const auto reply = co_await redis_.Eval(Script(), std::move(keys), std::move(args));
    decision = FromReply(reply, limits);
  } catch (const cache::RedisError& e) {
    failure = e.what();
  }

  if (decision) {
    if (degraded_.exchange(false) && fallback_.Engage(false, metrics_.RateLimitFallback())) {
      spdlog::info("rate limits: Redis answers again; limits are shared across instances again");
    }
  } else {
    if (!degraded_.exchange(true) && fallback_.Engage(true, metrics_.RateLimitFallback())) {
      spdlog::warn("rate limits: Redis unavailable ({}); enforcing them per instance until it returns", failure);
    }
    decision = fallback_.Check(limits);
  }
  if (!decision->allowed) metrics_.RateLimited(decision->kind).Increment();
  co_return *decision;
}

}  // namespace vote::services
