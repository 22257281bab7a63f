#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/beast/core/buffers_to_string.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/websocket.hpp>
#include <gtest/gtest.h>

#include <chrono>
#include <exception>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <variant>

#include "http/types.hpp"
#include "metrics/metrics.hpp"
#include "realtime/ws_hub.hpp"
#include "realtime/ws_protocol.hpp"

namespace vote::realtime {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;
namespace json = boost::json;
using tcp = asio::ip::tcp;
using namespace std::chrono_literals;

ClientMessage Parsed(std::string_view text) {
  auto result = ParseClientMessage(text);
  if (const auto* bad = std::get_if<BadMessage>(&result)) {
    ADD_FAILURE() << "refused " << text << ": " << bad->reason;
    return {};
  }
  return std::get<ClientMessage>(std::move(result));
}

bool Refused(std::string_view text) { return std::holds_alternative<BadMessage>(ParseClientMessage(text)); }

std::string IdList(std::int64_t from, std::int64_t to) {
  std::string ids;
  for (auto id = from; id <= to; ++id) ids += (ids.empty() ? "" : ",") + std::to_string(id);
  return ids;
}

TEST(WsProtocolTest, SubscribeKeepsTheFirstOfRepeatedIdsInOrder) {
  const auto message = Parsed(R"({"type":"subscribe","pollIds":[3,1,3,2]})");
  EXPECT_EQ(message.action, ClientAction::kSubscribe);
  EXPECT_EQ(message.poll_ids, (std::vector<std::int64_t>{3, 1, 2}));
}

TEST(WsProtocolTest, UnsubscribeIgnoresUnknownFields) {
  const auto message = Parsed(R"({"pollIds":[9223372036854775807],"type":"unsubscribe","extra":true})");
  EXPECT_EQ(message.action, ClientAction::kUnsubscribe);
  EXPECT_EQ(message.poll_ids, (std::vector<std::int64_t>{9223372036854775807}));
}

TEST(WsProtocolTest, AnEmptyListIsAValidNoOp) {
  EXPECT_TRUE(Parsed(R"({"type":"subscribe","pollIds":[]})").poll_ids.empty());
}

TEST(WsProtocolTest, RefusesWhatIsNotAJsonObject) {
  EXPECT_TRUE(Refused(""));
  EXPECT_TRUE(Refused("subscribe"));
  EXPECT_TRUE(Refused(R"({"type":"subscribe","pollIds":[1])"));
  EXPECT_TRUE(Refused(R"([{"type":"subscribe","pollIds":[1]}])"));
  EXPECT_TRUE(Refused("42"));
}

TEST(WsProtocolTest, RefusesMissingOrUnknownTypes) {
  EXPECT_TRUE(Refused(R"({"pollIds":[1]})"));
  EXPECT_TRUE(Refused(R"({"type":1,"pollIds":[1]})"));
  EXPECT_TRUE(Refused(R"({"type":"vote","pollIds":[1]})"));
  EXPECT_TRUE(Refused(R"({"type":"Subscribe","pollIds":[1]})"));
}

TEST(WsProtocolTest, RefusesIdsThatAreNotPositiveIntegers) {
  EXPECT_TRUE(Refused(R"({"type":"subscribe"})"));
  EXPECT_TRUE(Refused(R"({"type":"subscribe","pollIds":1})"));
  EXPECT_TRUE(Refused(R"({"type":"subscribe","pollIds":{"1":1}})"));
  EXPECT_TRUE(Refused(R"({"type":"subscribe","pollIds":[0]})"));
  EXPECT_TRUE(Refused(R"({"type":"subscribe","pollIds":[-4]})"));
  EXPECT_TRUE(Refused(R"({"type":"subscribe","pollIds":[1.5]})"));
  EXPECT_TRUE(Refused(R"({"type":"subscribe","pollIds":[2.0]})"));
  EXPECT_TRUE(Refused(R"({"type":"subscribe","pollIds":["3"]})"));
  EXPECT_TRUE(Refused(R"({"type":"subscribe","pollIds":[null]})"));
  EXPECT_TRUE(Refused(R"({"type":"subscribe","pollIds":[[1]]})"));
  EXPECT_TRUE(Refused(R"({"type":"subscribe","pollIds":[9223372036854775808]})"));
}

TEST(WsProtocolTest, AcceptsUpToTheSubscriptionLimitInOneMessage) {
  const auto at_limit = R"({"type":"subscribe","pollIds":[)" + IdList(1, kMaxSubscriptions) + "]}";
  EXPECT_EQ(Parsed(at_limit).poll_ids.size(), kMaxSubscriptions);
  const auto over_limit = R"({"type":"subscribe","pollIds":[)" + IdList(1, kMaxSubscriptions + 1) + "]}";
  EXPECT_TRUE(Refused(over_limit));
}

TEST(WsProtocolTest, ServerMessagesHaveTheDocumentedShape) {
  EXPECT_EQ(json::parse(AckMessage(ClientAction::kSubscribe, {1, 2})),
            json::parse(R"({"type":"subscribed","pollIds":[1,2]})"));
  EXPECT_EQ(json::parse(AckMessage(ClientAction::kUnsubscribe, {})),
            json::parse(R"({"type":"unsubscribed","pollIds":[]})"));
  EXPECT_EQ(json::parse(StatsMessage({{"pollId", 4}, {"totalVotes", 2}})),
            json::parse(R"({"type":"stats","stats":{"pollId":4,"totalVotes":2}})"));
  EXPECT_EQ(json::parse(PollCreatedMessage({{"id", 5}, {"title", "Tea?"}})),
            json::parse(R"({"type":"poll_created","poll":{"id":5,"title":"Tea?"}})"));
  EXPECT_EQ(json::parse(BadMessageError("no \"type\"")),
            json::parse(R"({"type":"error","error":{"code":"bad_message","message":"no \"type\""}})"));
}

// The hub over real loopback sockets: what a browser would see.

using Client = websocket::stream<tcp::socket>;

constexpr std::string_view kBadMessages[] = {
    R"(not json)",
    R"({"type":"vote","pollIds":[1]})",
    R"({"type":"subscribe","pollIds":[0]})",
};

struct FakeStats {
  std::map<std::int64_t, int> calls;
  std::map<std::int64_t, int> votes;
  std::set<std::int64_t> missing;
};

asio::awaitable<std::optional<json::object>> LookUp(FakeStats* fake, std::int64_t poll_id) {
  ++fake->calls[poll_id];
  if (fake->missing.contains(poll_id)) co_return std::nullopt;
  json::object stats{{"pollId", poll_id}, {"totalVotes", fake->votes[poll_id]}};
  co_return stats;
}

asio::awaitable<json::value> ReadJson(Client& ws) {
  beast::flat_buffer buffer;
  co_await ws.async_read(buffer, asio::use_awaitable);
  co_return json::parse(beast::buffers_to_string(buffer.data()));
}

asio::awaitable<void> Send(Client& ws, std::string_view text) {
  co_await ws.async_write(asio::buffer(text), asio::use_awaitable);
}

asio::awaitable<void> Sleep(std::chrono::milliseconds duration) {
  asio::steady_timer timer(co_await asio::this_coro::executor, duration);
  co_await timer.async_wait(asio::use_awaitable);
}

class WsHubTest : public ::testing::Test {
 protected:
  WsHubTest() : acceptor_(ioc_, tcp::endpoint(asio::ip::address_v4::loopback(), 0)) {}

  // Runs one test coroutine on the hub's io_context; fails after 10 s.
  void Run(const std::function<asio::awaitable<void>()>& test) {
    bool done = false;
    std::exception_ptr failure;
    asio::co_spawn(ioc_, test(), [&](std::exception_ptr error) {
      done = true;
      failure = error;
      ioc_.stop();
    });
    ioc_.run_for(10s);
    ASSERT_TRUE(done) << "the test did not finish in time";
    if (failure) std::rethrow_exception(failure);
  }

  // A client whose server side the hub took over, as the app does after authenticating.
  asio::awaitable<std::unique_ptr<Client>> Connect() {
    asio::co_spawn(ioc_, HandOver(), asio::detached);
    auto client = std::make_unique<Client>(ioc_);
    co_await client->next_layer().async_connect(acceptor_.local_endpoint(), asio::use_awaitable);
    co_await client->async_handshake("localhost", "/api/ws", asio::use_awaitable);
    co_return client;
  }

  asio::awaitable<void> HandOver() {
    auto socket = co_await acceptor_.async_accept(asio::use_awaitable);
    beast::flat_buffer buffer;
    http::Request request;
    co_await beast::http::async_read(socket, buffer, request.message, asio::use_awaitable);
    hub_.Accept(std::move(request), std::move(socket), std::move(buffer), 42);
  }

  asio::io_context ioc_;
  metrics::Metrics metrics_;
  FakeStats stats_;
  WsHub hub_{ioc_, metrics_, [this](std::int64_t poll_id) { return LookUp(&stats_, poll_id); }};
  tcp::acceptor acceptor_;
};

TEST_F(WsHubTest, SubscribeIsAcknowledgedAndManyVotesBecomeOneStatsPush) {
  Run([&]() -> asio::awaitable<void> {
    auto ws = co_await Connect();
    co_await Send(*ws, R"({"type":"subscribe","pollIds":[7,8,7]})");
    const auto ack = co_await ReadJson(*ws);
    EXPECT_EQ(ack, json::parse(R"({"type":"subscribed","pollIds":[7,8]})"));

    stats_.votes[7] = 3;
    for (int i = 0; i < 50; ++i) hub_.OnVote(7);
    hub_.OnVote(9);  // nobody here follows poll 9
    const auto push = co_await ReadJson(*ws);
    EXPECT_EQ(push, json::parse(R"({"type":"stats","stats":{"pollId":7,"totalVotes":3}})"));
    EXPECT_EQ(stats_.calls[7], 1);
    EXPECT_FALSE(stats_.calls.contains(8));
    EXPECT_FALSE(stats_.calls.contains(9));

    stats_.votes[7] = 4;
    hub_.OnVote(7);
    const auto next = co_await ReadJson(*ws);
    EXPECT_EQ(next, json::parse(R"({"type":"stats","stats":{"pollId":7,"totalVotes":4}})"));
    EXPECT_EQ(stats_.calls[7], 2);
  });
}

TEST_F(WsHubTest, OneLookupServesEverySubscriber) {
  Run([&]() -> asio::awaitable<void> {
    auto first = co_await Connect();
    auto second = co_await Connect();
    co_await Send(*first, R"({"type":"subscribe","pollIds":[5]})");
    co_await Send(*second, R"({"type":"subscribe","pollIds":[5]})");
    const auto first_ack = co_await ReadJson(*first);
    const auto second_ack = co_await ReadJson(*second);
    EXPECT_EQ(first_ack, second_ack);
    hub_.OnVote(5);
    const auto to_first = co_await ReadJson(*first);
    const auto to_second = co_await ReadJson(*second);
    EXPECT_EQ(to_first.at("type"), "stats");
    EXPECT_EQ(to_first, to_second);
    EXPECT_EQ(stats_.calls[5], 1);
  });
}

TEST_F(WsHubTest, AfterUnsubscribeOrForAMissingPollNothingIsPushed) {
  Run([&]() -> asio::awaitable<void> {
    auto ws = co_await Connect();
    co_await Send(*ws, R"({"type":"subscribe","pollIds":[7,13]})");
    const auto subscribed = co_await ReadJson(*ws);
    EXPECT_EQ(subscribed.at("type"), "subscribed");
    co_await Send(*ws, R"({"type":"unsubscribe","pollIds":[7,99]})");
    const auto ack = co_await ReadJson(*ws);
    EXPECT_EQ(ack, json::parse(R"({"type":"unsubscribed","pollIds":[7,99]})"));

    stats_.missing.insert(13);
    hub_.OnVote(7);
    hub_.OnVote(13);
    co_await Sleep(400ms);
    hub_.OnPollCreated({{"id", 21}});
    const auto next = co_await ReadJson(*ws);
    EXPECT_EQ(next, json::parse(R"({"type":"poll_created","poll":{"id":21}})"));
    EXPECT_FALSE(stats_.calls.contains(7));
    EXPECT_EQ(stats_.calls[13], 1);
  });
}

TEST_F(WsHubTest, BadMessagesAreAnsweredAndTheConnectionStaysOpen) {
  Run([&]() -> asio::awaitable<void> {
    auto ws = co_await Connect();
    for (const auto bad : kBadMessages) {
      co_await Send(*ws, bad);
      const auto answer = co_await ReadJson(*ws);
      EXPECT_EQ(answer.at("type"), "error");
      EXPECT_EQ(answer.at("error").at("code"), "bad_message");
      EXPECT_TRUE(answer.at("error").at("message").is_string());
    }
    co_await Send(*ws, R"({"type":"subscribe","pollIds":[1]})");
    const auto ack = co_await ReadJson(*ws);
    EXPECT_EQ(ack.at("type"), "subscribed");
  });
}

TEST_F(WsHubTest, AConnectionFollowsAtMostAThousandPolls) {
  Run([&]() -> asio::awaitable<void> {
    auto ws = co_await Connect();
    const auto first_half = R"({"type":"subscribe","pollIds":[)" + IdList(1, 600) + "]}";
    const auto second_half = R"({"type":"subscribe","pollIds":[)" + IdList(401, 1000) + "]}";
    co_await Send(*ws, first_half);
    const auto first = co_await ReadJson(*ws);
    EXPECT_EQ(first.at("type"), "subscribed");
    co_await Send(*ws, second_half);
    const auto second = co_await ReadJson(*ws);
    EXPECT_EQ(second.at("type"), "subscribed");

    co_await Send(*ws, R"({"type":"subscribe","pollIds":[1001]})");
    const auto refused = co_await ReadJson(*ws);
    EXPECT_EQ(refused.at("error").at("code"), "bad_message");
    co_await Send(*ws, R"({"type":"subscribe","pollIds":[1000]})");
    const auto already_followed = co_await ReadJson(*ws);
    EXPECT_EQ(already_followed.at("type"), "subscribed");
    co_await Send(*ws, R"({"type":"unsubscribe","pollIds":[1]})");
    const auto freed = co_await ReadJson(*ws);
    EXPECT_EQ(freed.at("type"), "unsubscribed");
    co_await Send(*ws, R"({"type":"subscribe","pollIds":[1001]})");
    const auto fits_again = co_await ReadJson(*ws);
    EXPECT_EQ(fits_again.at("type"), "subscribed");
  });
}

TEST_F(WsHubTest, NewPollsReachEveryConnection) {
  Run([&]() -> asio::awaitable<void> {
    auto first = co_await Connect();
    auto second = co_await Connect();
    EXPECT_EQ(hub_.Connections(), 2u);
    hub_.OnPollCreated({{"id", 3}, {"title", "Tea or coffee?"}});
    const auto expected = json::parse(R"({"type":"poll_created","poll":{"id":3,"title":"Tea or coffee?"}})");
    const auto to_first = co_await ReadJson(*first);
    const auto to_second = co_await ReadJson(*second);
    EXPECT_EQ(to_first, expected);
    EXPECT_EQ(to_second, expected);
  });
}

TEST_F(WsHubTest, AClientThatDoesNotKeepUpIsClosedWithPolicyError) {
  Run([&]() -> asio::awaitable<void> {
    auto ws = co_await Connect();
    // Queued faster than any client can read: the writer never runs in between.
    for (int i = 0; i < 300; ++i) hub_.OnPollCreated({{"id", i + 1}});
    beast::flat_buffer buffer;
    auto [ec, n] = co_await ws->async_read(buffer, asio::as_tuple(asio::use_awaitable));
    EXPECT_EQ(ec, websocket::error::closed);
    EXPECT_EQ(ws->reason().code, websocket::close_code::policy_error);
    EXPECT_EQ(std::string_view(ws->reason().reason.data(), ws->reason().reason.size()), "too slow");
  });
}

TEST_F(WsHubTest, ShutdownClosesEveryConnectionAsGoingAway) {
  Run([&]() -> asio::awaitable<void> {
    auto ws = co_await Connect();
    hub_.Shutdown();
    beast::flat_buffer buffer;
    auto [ec, n] = co_await ws->async_read(buffer, asio::as_tuple(asio::use_awaitable));
    EXPECT_EQ(ec, websocket::error::closed);
    EXPECT_EQ(ws->reason().code, websocket::close_code::going_away);
  });
}

TEST_F(WsHubTest, ALeavingClientIsForgottenAndCounted) {
  Run([&]() -> asio::awaitable<void> {
    auto ws = co_await Connect();
    EXPECT_EQ(hub_.Connections(), 1u);
    EXPECT_EQ(metrics_.WebSocketConnections().Value(), 1);
    co_await Send(*ws, R"({"type":"subscribe","pollIds":[4]})");
    const auto ack = co_await ReadJson(*ws);
    EXPECT_EQ(ack.at("type"), "subscribed");
    const websocket::close_reason bye(websocket::close_code::normal);
    co_await ws->async_close(bye, asio::use_awaitable);
    for (int i = 0; i < 100 && hub_.Connections() != 0; ++i) co_await Sleep(10ms);
    EXPECT_EQ(hub_.Connections(), 0u);
    EXPECT_EQ(metrics_.WebSocketConnections().Value(), 0);
    EXPECT_EQ(metrics_.WebSocketMessages("in").Value(), 1);
    EXPECT_EQ(metrics_.WebSocketMessages("out").Value(), 1);
    hub_.OnVote(4);  // no subscriber left: no lookup
    co_await Sleep(300ms);
    EXPECT_FALSE(stats_.calls.contains(4));
  });
}

}  // namespace
}  // namespace vote::realtime
