#pragma once

#include <boost/asio/awaitable.hpp>

#include "api/services.hpp"
#include "http/types.hpp"

namespace vote::api {

using boost::asio::awaitable;
using http::Request;
using http::Response;

awaitable<Response> Healthz(Request& req, Services& s);
awaitable<Response> Readyz(Request& req, Services& s);
awaitable<Response> MetricsText(Request& req, Services& s);

awaitable<Response> Register(Request& req, Services& s);
awaitable<Response> Login(Request& req, Services& s);
awaitable<Response> GetMe(Request& req, Services& s);
awaitable<Response> PatchMe(Request& req, Services& s);
awaitable<Response> ChangePassword(Request& req, Services& s);

awaitable<Response> CreatePoll(Request& req, Services& s);
awaitable<Response> Feed(Request& req, Services& s);
awaitable<Response> HotPolls(Request& req, Services& s);
awaitable<Response> GetPoll(Request& req, Services& s);
awaitable<Response> CastVote(Request& req, Services& s);
awaitable<Response> SkipPoll(Request& req, Services& s);
awaitable<Response> PollStats(Request& req, Services& s);

}  // namespace vote::api

namespace vote::api {
// Answers 101 to an authenticated WebSocket upgrade; the server then hands the socket to the hub.
awaitable<Response> WebSocketUpgrade(Request& req, Services& s);
awaitable<Response> IssueWsTicket(Request& req, Services& s);
awaitable<Response> MyPolls(Request& req, Services& s);
awaitable<Response> MyVotes(Request& req, Services& s);
}  // namespace vote::api
