#include "api/handlers.hpp"

#include "domain/account.hpp"

namespace vote::api {
namespace {

namespace json = boost::json;

json::object SessionJson(const services::Session& session) {
  return {{"user", domain::ToJson(session.user)},
          {"token", session.token.token},
          {"expiresAt", domain::Rfc3339(session.token.expires_at)}};
}

}  // namespace

awaitable<Response> Register(Request& req, Services& s) {
  auto registration = domain::ValidateRegistration(req.JsonBody());
  const auto session = co_await s.auth.Register(std::move(registration));
  co_return http::JsonResponse(http::Status::created, SessionJson(session));
}

awaitable<Response> Login(Request& req, Services& s) {
  auto [email, password] = domain::ValidateLogin(req.JsonBody());
  const auto session = co_await s.auth.Login(std::move(email), std::move(password));
  co_return http::JsonResponse(http::Status::ok, SessionJson(session));
}

awaitable<Response> GetMe(Request& req, Services& s) {
  const auto profile = co_await s.auth.Me(req.User());
  auto body = domain::ToJson(profile.user);
  body["votesToday"] = profile.votes_today;
  body["votesRemainingToday"] = profile.votes_remaining_today;
  co_return http::JsonResponse(http::Status::ok, body);
}

awaitable<Response> PatchMe(Request& req, Services& s) {
  auto change = domain::ValidateProfileChange(req.JsonBody());
  const auto user = co_await s.auth.UpdateMe(req.User(), std::move(change));
  co_return http::JsonResponse(http::Status::ok, domain::ToJson(user));
}

awaitable<Response> ChangePassword(Request& req, Services& s) {
  auto [current, next] = domain::ValidatePasswordChange(req.JsonBody());
  co_await s.auth.ChangePassword(req.User(), std::move(current), std::move(next));
  co_return http::EmptyResponse(http::Status::no_content);
}

}  // namespace vote::api
