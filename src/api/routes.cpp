#include "api/routes.hpp"

#include "api/handlers.hpp"

namespace vote::api {

http::Router MakeRouter(Services& s) {
  using http::Access;
  using verb = http::beast_http::verb;
  http::Router r;
  auto bind = [&s](auto handler) {
    return [&s, handler](http::Request& req) { return handler(req, s); };
  };
  r.Add({verb::get, "/healthz", Access::kPublic, bind(Healthz)});
  r.Add({verb::get, "/readyz", Access::kPublic, bind(Readyz)});
  r.Add({verb::get, "/metrics", Access::kPublic, bind(MetricsText)});

  r.Add({verb::post, "/api/auth/register", Access::kPublic, bind(Register)});
  r.Add({verb::post, "/api/auth/login", Access::kPublic, bind(Login)});
  r.Add({verb::get, "/api/users/me", Access::kAuthenticated, bind(GetMe)});
  r.Add({verb::patch, "/api/users/me", Access::kAuthenticated, bind(PatchMe)});
  r.Add({verb::post, "/api/users/me/password", Access::kAuthenticated, bind(ChangePassword)});
  r.Add({verb::get, "/api/users/me/polls", Access::kAuthenticated, bind(MyPolls)});
  r.Add({verb::get, "/api/users/me/votes", Access::kAuthenticated, bind(MyVotes)});

  r.Add({verb::post, "/api/polls", Access::kAuthenticated, bind(CreatePoll)});
  r.Add({verb::get, "/api/polls", Access::kAuthenticated, bind(Feed)});
  r.Add({verb::get, "/api/polls/hot", Access::kAuthenticated, bind(HotPolls)});
  r.Add({verb::get, "/api/polls/{id}", Access::kAuthenticated, bind(GetPoll)});
  r.Add({verb::post, "/api/polls/{id}/vote", Access::kAuthenticated, bind(CastVote)});
  r.Add({verb::post, "/api/polls/{id}/skip", Access::kAuthenticated, bind(SkipPoll)});
  r.Add({verb::get, "/api/polls/{id}/stats", Access::kAuthenticated, bind(PollStats)});
  // Authenticated by the pipeline: the Authorization header, or for browsers (which cannot set
  // headers here) ?ticket= from POST /api/ws/ticket.
  r.Add({verb::post, "/api/ws/ticket", Access::kAuthenticated, bind(IssueWsTicket)});
  r.Add({verb::get, "/api/ws", Access::kPublic, bind(WebSocketUpgrade)});
  return r;
}

}  // namespace vote::api
