#include <gtest/gtest.h>

#include "domain/account.hpp"
#include "domain/poll.hpp"
#include "domain/text.hpp"
#include "services/auth_service.hpp"
#include "services/vote_service.hpp"

namespace vote::domain {
namespace {

namespace json = boost::json;

json::object Parse(std::string_view text) { return json::parse(text).as_object(); }

std::vector<std::string> FieldsOf(const http::ApiError& e) {
  std::vector<std::string> fields;
  for (const auto& d : e.Details()) fields.push_back(d.field);
  return fields;
}

TEST(PollRulesTest, TrimsTitleAndOptionsAndNormalisesTags) {
  const auto poll = ValidateNewPoll(
      Parse(R"({"title":"  Best language?  ","options":[" Go ","Rust"],"tags":[" Programming ","programming","tech"]})"));
  EXPECT_EQ(poll.title, "Best language?");
  EXPECT_EQ(poll.options, (std::vector<std::string>{"Go", "Rust"}));
  EXPECT_EQ(poll.tags, (std::vector<std::string>{"programming", "tech"}));
}

TEST(PollRulesTest, RefusesEachBrokenRuleWithItsField) {
  const struct {
    const char* body;
    const char* field;
  } cases[] = {
      {R"({"title":"   ","options":["a","b"],"tags":["t"]})", "title"},
      {R"({"title":7,"options":["a","b"],"tags":["t"]})", "title"},
      {R"({"options":["a","b"],"tags":["t"]})", "title"},
      {R"({"title":"x","options":["a"],"tags":["t"]})", "options"},
      {R"({"title":"x","options":["a","b","c","d","e","f","g","h","i","j","k"],"tags":["t"]})", "options"},
      {R"({"title":"x","options":["Go","go"],"tags":["t"]})", "options[1]"},
      {R"({"title":"x","options":["a",""],"tags":["t"]})", "options[1]"},
      {R"({"title":"x","options":["a",3],"tags":["t"]})", "options[1]"},
      {R"({"title":"x","options":["a","b"],"tags":[]})", "tags"},
      {R"({"title":"x","options":["a","b"],"tags":["a","b","c","d","e","f"]})", "tags"},
      {R"({"title":"x","options":["a","b"],"tags":["no spaces"]})", "tags[0]"},
      {R"({"title":"x","options":["a","b"],"tags":["ünï"]})", "tags[0]"},
      {R"({"title":"x","options":["a","b"],"tags":["abcdefghijklmnopqrstuvwxyz0123456"]})", "tags[0]"},
  };
  for (const auto& c : cases) {
    try {
      ValidateNewPoll(Parse(c.body));
      ADD_FAILURE() << "accepted " << c.body;
    } catch (const http::ApiError& e) {
      EXPECT_EQ(e.Code(), "validation_failed");
      const auto fields = FieldsOf(e);
      EXPECT_NE(std::find(fields.begin(), fields.end(), c.field), fields.end()) << c.body;
    }
  }
}

TEST(PollRulesTest, LengthsCountCharactersNotBytes) {
  const std::string title(200, 'x');
  EXPECT_NO_THROW(ValidateNewPoll(Parse(R"({"title":")" + title + R"(","options":["a","b"],"tags":["t"]})")));
  std::string accented;
  for (int i = 0; i < 200; ++i) accented += "é";
  EXPECT_NO_THROW(ValidateNewPoll(Parse(R"({"title":")" + accented + R"(","options":["a","b"],"tags":["t"]})")));
  EXPECT_THROW(ValidateNewPoll(Parse(R"({"title":")" + title + R"(x","options":["a","b"],"tags":["t"]})")),
               http::ApiError);
}

TEST(StatsTest, PercentagesAreRoundedToOneDecimal) {
  Stats stats{9, {"a", "b", "c"}, {1, 1, 1}};
  const auto json = ToJson(stats);
  EXPECT_EQ(json.at("totalVotes").as_int64(), 3);
  EXPECT_DOUBLE_EQ(json.at("options").as_array()[0].at("percentage").as_double(), 33.3);
  Stats none{9, {"a", "b"}, {0, 0}};
  EXPECT_DOUBLE_EQ(ToJson(none).at("options").as_array()[1].at("percentage").as_double(), 0.0);
  Stats two_thirds{9, {"a", "b"}, {2, 1}};
  EXPECT_DOUBLE_EQ(ToJson(two_thirds).at("options").as_array()[0].at("percentage").as_double(), 66.7);
}

TEST(AccountRulesTest, UsernamesAndEmails) {
  EXPECT_TRUE(IsValidUsername("abc"));
  EXPECT_TRUE(IsValidUsername("Alice_99"));
  EXPECT_FALSE(IsValidUsername("ab"));
  EXPECT_FALSE(IsValidUsername(std::string(33, 'a')));
  EXPECT_FALSE(IsValidUsername("al ice"));
  EXPECT_FALSE(IsValidUsername("alice!"));
  EXPECT_TRUE(IsValidEmail("a@b.co"));
  EXPECT_FALSE(IsValidEmail("a@b"));
  EXPECT_FALSE(IsValidEmail("@b.co"));
  EXPECT_FALSE(IsValidEmail("a b@c.co"));
  EXPECT_FALSE(IsValidEmail("a@@b.co"));
  EXPECT_FALSE(IsValidEmail("a@b..co"));
}

TEST(AccountRulesTest, RegistrationLowerCasesEmailAndChecksPasswordLength) {
  const auto r = ValidateRegistration(Parse(R"({"username":"Bob","email":" Bob@Example.COM ","password":"12345678"})"));
  EXPECT_EQ(r.email, "bob@example.com");
  EXPECT_EQ(r.username, "Bob");
  EXPECT_THROW(ValidateRegistration(Parse(R"({"username":"Bob","email":"b@e.co","password":"1234567"})")),
               http::ApiError);
  EXPECT_THROW(ValidateRegistration(Parse(R"({"username":"Bob","email":"b@e.co","password":12345678})")),
               http::ApiError);
}

TEST(TextTest, Utf8LengthRejectsInvalidSequences) {
  EXPECT_EQ(Utf8Length("héllo"), 5);
  EXPECT_EQ(Utf8Length("\xff"), -1);
  EXPECT_EQ(Utf8Length("\xc3"), -1);
}

TEST(DayTest, SecondsToMidnight) {
  using namespace std::chrono;
  const auto t = sys_days{year{2026} / 11 / 27} + hours(23) + minutes(59) + seconds(30);
  EXPECT_EQ(services::SecondsToUtcMidnight(t), 30);
  EXPECT_EQ(services::SecondsToUtcMidnight(sys_days{year{2026} / 11 / 28}), 86400);
}

}  // namespace
}  // namespace vote::domain
