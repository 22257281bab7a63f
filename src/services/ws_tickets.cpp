#include "services/ws_tickets.hpp"

#include <sodium.h>

#include <array>
#include <charconv>

namespace vote::services {
namespace {

constexpr std::string_view kPrefix = "ws:ticket:";
constexpr std::size_t kTicketBytes = 24;  // 192 random bits

bool LooksLikeTicket(const std::string& ticket) {
  return ticket.size() == sodium_base64_ENCODED_LEN(kTicketBytes, sodium_base64_VARIANT_URLSAFE_NO_PADDING) - 1 &&
         ticket.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") ==
             std::string::npos;
}

}  // namespace

asio::awaitable<WsTicket> WsTickets::Issue(std::int64_t user_id) {
  std::array<unsigned char, kTicketBytes> random{};
  randombytes_buf(random.data(), random.size());
  std::array<char, sodium_base64_ENCODED_LEN(kTicketBytes, sodium_base64_VARIANT_URLSAFE_NO_PADDING)> text{};
  sodium_bin2base64(text.data(), text.size(), random.data(), random.size(), sodium_base64_VARIANT_URLSAFE_NO_PADDING);
  WsTicket issued{std::string(text.data()), std::chrono::system_clock::now() + ttl_};
  std::vector<std::string> command{"SET", std::string(kPrefix) + issued.ticket, std::to_string(user_id), "EX",
                                   std::to_string(ttl_.count()), "NX"};
  co_await redis_.Command(std::move(command));
  co_return issued;
}

asio::awaitable<std::optional<std::int64_t>> WsTickets::Redeem(const std::string& ticket) {
  if (!LooksLikeTicket(ticket)) co_return std::nullopt;
  cache::Reply reply;
  try {
    std::vector<std::string> command{"GETDEL", std::string(kPrefix) + ticket};
    reply = co_await redis_.Command(std::move(command));
  } catch (const cache::RedisError&) {
    co_return std::nullopt;
  }
  if (reply.type != cache::Reply::Type::kString) co_return std::nullopt;
  std::int64_t user_id = 0;
  const auto [ptr, ec] = std::from_chars(reply.str.data(), reply.str.data() + reply.str.size(), user_id);
  if (ec != std::errc{} || ptr != reply.str.data() + reply.str.size() || user_id <= 0) co_return std::nullopt;
  co_return user_id;
}

}  // namespace vote::services
