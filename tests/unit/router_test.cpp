#include <gtest/gtest.h>

#include "http/errors.hpp"
#include "http/router.hpp"

namespace vote::http {
namespace {

using verb = beast_http::verb;

Handler Noop() {
  return [](Request&) -> boost::asio::awaitable<Response> { co_return EmptyResponse(Status::ok); };
}

Router MakeTestRouter() {
  Router r;
  r.Add({verb::get, "/api/polls", Access::kAuthenticated, Noop()});
  r.Add({verb::post, "/api/polls", Access::kAuthenticated, Noop()});
  r.Add({verb::get, "/api/polls/hot", Access::kAuthenticated, Noop()});
  r.Add({verb::get, "/api/polls/{id}", Access::kAuthenticated, Noop()});
  r.Add({verb::post, "/api/polls/{id}/vote", Access::kAuthenticated, Noop()});
  return r;
}

TEST(RouterTest, MatchesTemplatesAndCapturesParameters) {
  const auto r = MakeTestRouter();
  const auto m = r.Find(verb::post, "/api/polls/42/vote");
  ASSERT_NE(m.route, nullptr);
  EXPECT_EQ(m.pattern, "/api/polls/{id}/vote");
  ASSERT_EQ(m.params.size(), 1u);
  EXPECT_EQ(m.params[0].first, "id");
  EXPECT_EQ(m.params[0].second, "42");
}

TEST(RouterTest, LiteralSegmentWinsWhenListedFirst) {
  const auto r = MakeTestRouter();
  EXPECT_EQ(r.Find(verb::get, "/api/polls/hot").pattern, "/api/polls/hot");
  EXPECT_EQ(r.Find(verb::get, "/api/polls/7").pattern, "/api/polls/{id}");
}

TEST(RouterTest, UnknownPathHasNoPattern) {
  const auto r = MakeTestRouter();
  const auto m = r.Find(verb::get, "/api/nothing/here");
  EXPECT_EQ(m.route, nullptr);
  EXPECT_TRUE(m.pattern.empty());
}

TEST(RouterTest, KnownPathWithOtherMethodListsAllowedMethods) {
  const auto r = MakeTestRouter();
  const auto m = r.Find(verb::delete_, "/api/polls");
  EXPECT_EQ(m.route, nullptr);
  EXPECT_EQ(m.pattern, "/api/polls");
  EXPECT_EQ(m.allowed, (std::vector<std::string>{"GET", "POST"}));
}

TEST(RouterTest, TrailingSlashIsTheSameResource) {
  const auto r = MakeTestRouter();
  EXPECT_NE(r.Find(verb::get, "/api/polls/").route, nullptr);
}

TEST(ErrorModelTest, BodyCarriesCodeMessageAndDetails) {
  const auto response = ErrorResponse(ValidationFailed({{"title", "must be 1-200 characters"}}));
  EXPECT_EQ(response.result(), Status::bad_request);
  EXPECT_EQ(response[beast_http::field::content_type], "application/json");
  const auto body = boost::json::parse(response.body()).as_object();
  EXPECT_EQ(body.at("error").at("code").as_string(), "validation_failed");
  EXPECT_EQ(body.at("error").at("details").as_array()[0].at("field").as_string(), "title");
}

TEST(ErrorModelTest, UnauthorizedCarriesChallenge) {
  const auto response = ErrorResponse(Unauthorized("no token"));
  EXPECT_EQ(response.result(), Status::unauthorized);
  EXPECT_EQ(response["WWW-Authenticate"], "Bearer");
}

TEST(ErrorModelTest, InternalErrorSaysNothingAboutInternals) {
  const auto response = InternalErrorResponse();
  EXPECT_EQ(response.result(), Status::internal_server_error);
  EXPECT_EQ(response.body(), R"({"error":{"code":"internal_error","message":"internal server error"}})");
}

}  // namespace
}  // namespace vote::http
