#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>

#include <chrono>
#include <string>
#include <vector>

#include "cache/redis.hpp"
#include "metrics/metrics.hpp"
#include "services/rate_limiter.hpp"

namespace vote::services {
namespace {

using namespace std::chrono_literals;

// 2023-11-14T22:13:20.250Z: a quarter second past a whole second, so rounding shows.
constexpr std::int64_t kStartMs = 1'700'000'000'250;

class LocalRateLimiterTest : public ::testing::Test {
 protected:
  void Advance(std::chrono::milliseconds by) { now_ += by; }
  RateDecision Check(const std::string& key, int limit = 3, std::chrono::milliseconds window = 1s) {
    return limiter_.Check("ip", key, limit, window);
  }

  domain::TimePoint now_{std::chrono::milliseconds(kStartMs)};
  LocalRateLimiter limiter_{[this] { return now_; }};
};

TEST_F(LocalRateLimiterTest, AllowsExactlyTheLimitThenRefuses) {
  for (int remaining : {2, 1, 0}) {
    const auto d = Check("a");
    EXPECT_TRUE(d.allowed);
    EXPECT_EQ(d.kind, "ip");
    EXPECT_EQ(d.limit, 3);
    EXPECT_EQ(d.remaining, remaining);
    EXPECT_EQ(d.retry_after_seconds, 0);
  }
  const auto refused = Check("a");
  EXPECT_FALSE(refused.allowed);
  EXPECT_EQ(refused.kind, "ip");
  EXPECT_EQ(refused.remaining, 0);
}

TEST_F(LocalRateLimiterTest, SlidingWindowFreesRequestsAsTheyAge) {
  EXPECT_TRUE(Check("a").allowed);  // t = 0
  Advance(400ms);
  EXPECT_TRUE(Check("a").allowed);  // t = 400
  Advance(400ms);
  EXPECT_TRUE(Check("a").allowed);  // t = 800
  Advance(199ms);
  EXPECT_FALSE(Check("a").allowed);  // t = 999: all three still in the window
  Advance(1ms);
  const auto freed = Check("a");  // t = 1000: the first one has left the window
  EXPECT_TRUE(freed.allowed);
  EXPECT_EQ(freed.remaining, 0);
  Advance(100ms);
  EXPECT_FALSE(Check("a").allowed);  // t = 1100: 400, 800, 1000 fill the window
  Advance(300ms);
  EXPECT_TRUE(Check("a").allowed);  // t = 1400: 400 has left
}

TEST_F(LocalRateLimiterTest, RefusedRequestsDoNotCount) {
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(Check("a").allowed);
  for (int i = 0; i < 10; ++i) {
    Advance(50ms);
    EXPECT_FALSE(Check("a").allowed);
  }
  Advance(500ms);  // one second after the three counted requests
  const auto d = Check("a");
  EXPECT_TRUE(d.allowed);
  EXPECT_EQ(d.remaining, 2);
}

TEST_F(LocalRateLimiterTest, ReportsWhenTheWindowFreesARequest) {
  const auto first = Check("a", 2, 60s);  // t = 0
  // The window frees this request at start + 60 s = ...060.250, rounded up to the second.
  EXPECT_EQ(first.reset_unix, kStartMs / 1000 + 61);
  Advance(10s);
  const auto second = Check("a", 2, 60s);  // t = 10 s: the first request is still the oldest
  EXPECT_EQ(second.reset_unix, kStartMs / 1000 + 61);
  Advance(10s);
  const auto refused = Check("a", 2, 60s);  // t = 20 s
  EXPECT_FALSE(refused.allowed);
  EXPECT_EQ(refused.reset_unix, kStartMs / 1000 + 61);
  EXPECT_EQ(refused.retry_after_seconds, 40);
  Advance(500ms);
  EXPECT_EQ(Check("a", 2, 60s).retry_after_seconds, 40);  // 39.5 s rounds up
}

TEST_F(LocalRateLimiterTest, RetryAfterIsAtLeastOneSecond) {
  Check("a", 1, 1s);
  Advance(999ms);
  const auto refused = Check("a", 1, 1s);
  EXPECT_FALSE(refused.allowed);
  EXPECT_EQ(refused.retry_after_seconds, 1);
}

TEST_F(LocalRateLimiterTest, KeysAndKindsAreIndependent) {
  for (int i = 0; i < 3; ++i) Check("a");
  EXPECT_FALSE(Check("a").allowed);
  EXPECT_TRUE(Check("b").allowed);
  EXPECT_EQ(Check("b").remaining, 1);
  const auto other_kind = limiter_.Check("user", "a", 3, 1s);
  EXPECT_TRUE(other_kind.allowed);
  EXPECT_EQ(other_kind.kind, "user");
  EXPECT_EQ(other_kind.remaining, 2);
}

TEST_F(LocalRateLimiterTest, CountsARequestAgainstAllLimitsOnlyWhenAllAllowIt) {
  const std::vector<LocalRateLimiter::Limit> both{{"ip", "1.2.3.4", 5, 1s}, {"user", "7", 2, 60s}};
  EXPECT_TRUE(limiter_.Check(both).allowed);
  const auto second = limiter_.Check(both);
  EXPECT_TRUE(second.allowed);
  EXPECT_EQ(second.kind, "user");  // the last limit describes an allowed request
  EXPECT_EQ(second.remaining, 0);
  const auto refused = limiter_.Check(both);
  EXPECT_FALSE(refused.allowed);
  EXPECT_EQ(refused.kind, "user");
  // The refused request did not count against the address: 2 of 5 used.
  EXPECT_EQ(Check("1.2.3.4", 5, 1s).remaining, 2);
}

TEST_F(LocalRateLimiterTest, TheFirstLimitThatRefusesIsReported) {
  for (int i = 0; i < 3; ++i) Check("1.2.3.4");
  const std::vector<LocalRateLimiter::Limit> both{{"ip", "1.2.3.4", 3, 1s}, {"user", "7", 2, 60s}};
  const auto refused = limiter_.Check(both);
  EXPECT_FALSE(refused.allowed);
  EXPECT_EQ(refused.kind, "ip");
  EXPECT_EQ(limiter_.Check("user", "7", 2, 60s).remaining, 1);  // the user limit was not charged
}

TEST(LocalRateLimiterEngage, GaugeIsOneWhileAnyInstanceFallsBack) {
  LocalRateLimiter limiter(domain::SystemClock());
  prometheus::Gauge gauge;
  EXPECT_TRUE(limiter.Engage(true, gauge));
  EXPECT_FALSE(limiter.Engage(true, gauge));
  EXPECT_EQ(gauge.Value(), 1);
  EXPECT_FALSE(limiter.Engage(false, gauge));
  EXPECT_EQ(gauge.Value(), 1);
  EXPECT_TRUE(limiter.Engage(false, gauge));
  EXPECT_EQ(gauge.Value(), 0);
}

TEST(RateLimiter, FallsBackToLocalLimitsWhileRedisIsDown) {
  boost::asio::io_context ioc;
  config::RedisConfig redis_config;
  cache::Redis redis(ioc.get_executor(), redis_config);  // never started: every command fails at once
  domain::TimePoint now{std::chrono::milliseconds(kStartMs)};
  LocalRateLimiter fallback([&now] { return now; });
  config::RateLimitConfig config;
  config.ip_per_second = 3;
  config.user_per_minute = 2;
  metrics::Metrics metrics;
  RateLimiter limiter(redis, fallback, config, metrics, [&now] { return now; });

  // Check() takes the address by reference and runs later, inside ioc.run(): keep it alive.
  const std::string address = "1.2.3.4";
  const auto check = [&](std::optional<std::int64_t> user) {
    auto future = boost::asio::co_spawn(ioc, limiter.Check(address, user), boost::asio::use_future);
    ioc.restart();
    ioc.run();
    return future.get();
  };

  const auto first = check(7);
  EXPECT_TRUE(first.allowed);
  EXPECT_EQ(first.kind, "user");
  EXPECT_EQ(first.limit, 2);
  EXPECT_EQ(first.remaining, 1);
  EXPECT_EQ(metrics.RateLimitFallback().Value(), 1);

  EXPECT_TRUE(check(7).allowed);
  const auto refused = check(7);
  EXPECT_FALSE(refused.allowed);
  EXPECT_EQ(refused.kind, "user");
  EXPECT_EQ(metrics.RateLimited("user").Value(), 1);

  // Two requests counted against the address; the refused one did not.
  const auto anonymous = check(std::nullopt);
  EXPECT_TRUE(anonymous.allowed);
  EXPECT_EQ(anonymous.kind, "ip");
  EXPECT_EQ(anonymous.remaining, 0);
}

}  // namespace
}  // namespace vote::services
