#pragma once

#include <boost/json.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "http/errors.hpp"

namespace vote::domain {

struct User {
  std::int64_t id = 0;
  std::string username;
  std::string email;
  std::string created_at;
};

struct Registration {
  std::string username;
  std::string email;     // lower-cased
  std::string password;
};

struct ProfileChange {
  std::optional<std::string> username;
  std::optional<std::string> email;
};

// The account rules of the API contract; violations throw validation_failed with details.
Registration ValidateRegistration(const boost::json::object& body);
ProfileChange ValidateProfileChange(const boost::json::object& body);
// Checks the new password; returns {current, new}.
std::pair<std::string, std::string> ValidatePasswordChange(const boost::json::object& body);
// Login fields must be strings; anything else is validation_failed.
std::pair<std::string, std::string> ValidateLogin(const boost::json::object& body);

bool IsValidUsername(std::string_view username);
bool IsValidEmail(std::string_view email);

boost::json::object ToJson(const User& user);

}  // namespace vote::domain
