// A request body through every decoder that turns client JSON into domain values: refusals are
// ApiErrors (400 with details), never a crash or an out-of-bounds read.
#include <cstdint>

#include "domain/account.hpp"
#include "domain/poll.hpp"
#include "http/errors.hpp"
#include "http/types.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  vote::http::Request request;
  request.message.body().assign(reinterpret_cast<const char*>(data), size);
  boost::json::object body;
  try {
    body = request.JsonBody();
  } catch (const vote::http::ApiError&) {
    return 0;
  }
  auto attempt = [&body](auto decode) {
    try {
      decode(body);
    } catch (const vote::http::ApiError&) {
    }
  };
  attempt([](const auto& b) { (void)vote::domain::ValidateNewPoll(b); });
  attempt([](const auto& b) { (void)vote::domain::ValidateRegistration(b); });
  attempt([](const auto& b) { (void)vote::domain::ValidateLogin(b); });
  attempt([](const auto& b) { (void)vote::domain::ValidateProfileChange(b); });
  attempt([](const auto& b) { (void)vote::domain::ValidatePasswordChange(b); });
  return 0;
}
