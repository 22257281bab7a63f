#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>

#include "config/config.hpp"

namespace vote::config {
namespace {

std::map<std::string, std::string> g_env;
const char* FakeEnv(const char* name) {
  auto it = g_env.find(name);
  return it == g_env.end() ? nullptr : it->second.c_str();
}

class ConfigTest : public ::testing::Test {
 protected:
  void SetUp() override { g_env.clear(); }
  std::string WriteFile(const std::string& text) {
    auto path = std::filesystem::temp_directory_path() /
                ("vote-config-" + std::to_string(::testing::UnitTest::GetInstance()->random_seed()) + "-" +
                 ::testing::UnitTest::GetInstance()->current_test_info()->name() + ".yaml");
    std::ofstream(path) << text;
    return path.string();
  }
};

TEST_F(ConfigTest, DefaultsWithoutFileOrEnvironment) {
  const auto c = Load("", &FakeEnv);
  EXPECT_EQ(c.server.port, 8080);
  EXPECT_EQ(c.postgres.dbname, "vote");
  EXPECT_EQ(c.ratelimit.user_per_minute, 100);
  EXPECT_EQ(c.ratelimit.ip_per_second, 200);
  EXPECT_EQ(c.votes.daily_limit, 100);
  EXPECT_EQ(c.jwt.token_duration, std::chrono::hours(24));
}

TEST_F(ConfigTest, ShippedConfigFileHasEveryKeyAndLoads) {
  const auto c = Load("config/config.yaml", &FakeEnv);
  EXPECT_EQ(c.server.port, 8080);
  EXPECT_EQ(c.redis.port, 6379);
  EXPECT_EQ(c.rabbitmq.user, "guest");
}

TEST_F(ConfigTest, FileOverridesDefaults) {
  const auto c = Load(WriteFile("server:\n  port: 9090\n  trusted_proxies: [10.0.0.1, 10.0.0.2]\njwt:\n  token_duration: 90m\n"),
                      &FakeEnv);
  EXPECT_EQ(c.server.port, 9090);
  EXPECT_EQ(c.server.trusted_proxies, (std::vector<std::string>{"10.0.0.1", "10.0.0.2"}));
  EXPECT_EQ(c.jwt.token_duration, std::chrono::minutes(90));
}

TEST_F(ConfigTest, EnvironmentOverridesFile) {
  g_env["VOTE_SERVER_PORT"] = "7070";
  g_env["VOTE_POSTGRES_DBNAME"] = "other";
  g_env["VOTE_REDIS_DB"] = "3";
  g_env["VOTE_RATELIMIT_USER_PER_MINUTE"] = "5";
  g_env["VOTE_RATELIMIT_IP_PER_SECOND"] = "7";
  g_env["VOTE_VOTES_DAILY_LIMIT"] = "3";
  const auto c = Load(WriteFile("server:\n  port: 9090\n"), &FakeEnv);
  EXPECT_EQ(c.server.port, 7070);
  EXPECT_EQ(c.postgres.dbname, "other");
  EXPECT_EQ(c.redis.db, 3);
  EXPECT_EQ(c.ratelimit.user_per_minute, 5);
  EXPECT_EQ(c.ratelimit.ip_per_second, 7);
  EXPECT_EQ(c.votes.daily_limit, 3);
}

TEST_F(ConfigTest, UnknownKeyIsNamed) {
  try {
    Load(WriteFile("server:\n  prot: 9090\n"), &FakeEnv);
    FAIL() << "expected ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("server.prot"), std::string::npos) << e.what();
  }
}

TEST_F(ConfigTest, BadValuesAreNamed) {
  g_env["VOTE_SERVER_PORT"] = "eighty";
  try {
    Load("", &FakeEnv);
    FAIL() << "expected ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("VOTE_SERVER_PORT"), std::string::npos) << e.what();
  }
  g_env.clear();
  EXPECT_THROW(Load(WriteFile("server:\n  idle_timeout: soon\n"), &FakeEnv), ConfigError);
  EXPECT_THROW(Load(WriteFile("server:\n  port: 70000\n"), &FakeEnv), ConfigError);
  EXPECT_THROW(Load(WriteFile("ratelimit:\n  enabled: maybe\n"), &FakeEnv), ConfigError);
}

TEST_F(ConfigTest, ProductionRefusesDevelopmentSecrets) {
  g_env["VOTE_SERVER_ENV"] = "production";
  auto c = Load("", &FakeEnv);
  EXPECT_THROW(CheckProductionSecrets(c), ConfigError);
  c.jwt.secret_key = std::string(40, 'k');
  EXPECT_THROW(CheckProductionSecrets(c), ConfigError);  // postgres password still the default
  c.postgres.password = "s3cret-db";
  EXPECT_THROW(CheckProductionSecrets(c), ConfigError);  // rabbitmq password still the default
  c.rabbitmq.password = "s3cret-mq";
  EXPECT_NO_THROW(CheckProductionSecrets(c));
  c.server.env = "development";
  c.jwt.secret_key = Config{}.jwt.secret_key;
  EXPECT_NO_THROW(CheckProductionSecrets(c));
}

}  // namespace
}  // namespace vote::config
