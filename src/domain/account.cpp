#include "domain/account.hpp"

#include <algorithm>

#include "domain/text.hpp"

namespace vote::domain {
namespace {

namespace json = boost::json;
using http::FieldError;

std::optional<std::string> OptionalString(const json::object& body, const char* field,
                                          std::vector<FieldError>& errors) {
  const auto* value = body.if_contains(field);
  if (value == nullptr || value->is_null()) return std::nullopt;
  if (!value->is_string()) {
    errors.push_back({field, "must be a string"});
    return std::nullopt;
  }
  return std::string(value->as_string());
}

std::optional<std::string> RequiredString(const json::object& body, const char* field,
                                          std::vector<FieldError>& errors) {
  auto value = OptionalString(body, field, errors);
  if (!value && (body.if_contains(field) == nullptr || body.at(field).is_null())) {
    errors.push_back({field, "is required"});
  }
  return value;
}

void CheckPassword(const std::string& password, const char* field, std::vector<FieldError>& errors) {
  const auto length = Utf8Length(password);
  if (length < 8 || length > 128) errors.push_back({field, "must be 8-128 characters"});
}

void CheckUsername(const std::string& username, std::vector<FieldError>& errors) {
  if (!IsValidUsername(username)) errors.push_back({"username", "must be 3-32 characters of A-Z, a-z, 0-9 and _"});
}

void CheckEmail(const std::string& email, std::vector<FieldError>& errors) {
  if (!IsValidEmail(email)) errors.push_back({"email", "must be a valid email address"});
}

}  // namespace

bool IsValidUsername(std::string_view username) {
  return username.size() >= 3 && username.size() <= 32 && std::all_of(username.begin(), username.end(), [](char ch) {
           return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '_';
         });
}

bool IsValidEmail(std::string_view email) {
  // Deliberately simple: one @, a non-empty local part of printable ASCII without spaces, and
  // a domain of dot-separated labels with at least one dot. Delivery is what really validates.
  if (email.size() < 3 || email.size() > 254) return false;
  const auto at = email.find('@');
  if (at == std::string_view::npos || at == 0 || at > 64 || email.find('@', at + 1) != std::string_view::npos) {
    return false;
  }
  const auto local = email.substr(0, at);
  const auto domain = email.substr(at + 1);
  auto printable = [](char ch) { return ch > 0x20 && ch < 0x7f && ch != '"' && ch != '(' && ch != ')' && ch != ',' &&
                                        ch != ':' && ch != ';' && ch != '<' && ch != '>' && ch != '[' && ch != ']' &&
                                        ch != '\\'; };
  if (!std::all_of(local.begin(), local.end(), printable)) return false;
  if (domain.empty() || domain.find('.') == std::string_view::npos || domain.front() == '.' ||
      domain.back() == '.' || domain.find("..") != std::string_view::npos) {
    return false;
  }
  return std::all_of(domain.begin(), domain.end(), [](char ch) {
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '-' || ch == '.';
  });
}

Registration ValidateRegistration(const json::object& body) {
  std::vector<FieldError> errors;
  Registration r;
  if (auto v = RequiredString(body, "username", errors)) {
    r.username = *v;
    CheckUsername(r.username, errors);
  }
  if (auto v = RequiredString(body, "email", errors)) {
    r.email = AsciiLower(Trim(*v));
    CheckEmail(r.email, errors);
  }
  if (auto v = RequiredString(body, "password", errors)) {
    r.password = *v;
    CheckPassword(r.password, "password", errors);
  }
  if (!errors.empty()) throw http::ValidationFailed(std::move(errors));
  return r;
}

ProfileChange ValidateProfileChange(const json::object& body) {
  std::vector<FieldError> errors;
  ProfileChange change;
  change.username = OptionalString(body, "username", errors);
  if (change.username) CheckUsername(*change.username, errors);
  if (auto email = OptionalString(body, "email", errors)) {
    change.email = AsciiLower(Trim(*email));
    CheckEmail(*change.email, errors);
  }
  if (!errors.empty()) throw http::ValidationFailed(std::move(errors));
  return change;
}

std::pair<std::string, std::string> ValidatePasswordChange(const json::object& body) {
  std::vector<FieldError> errors;
  auto current = RequiredString(body, "currentPassword", errors);
  auto next = RequiredString(body, "newPassword", errors);
  if (next) CheckPassword(*next, "newPassword", errors);
  if (!errors.empty()) throw http::ValidationFailed(std::move(errors));
  return {*current, *next};
}

std::pair<std::string, std::string> ValidateLogin(const json::object& body) {
  std::vector<FieldError> errors;
  auto email = RequiredString(body, "email", errors);
  auto password = RequiredString(body, "password", errors);
  if (!errors.empty()) throw http::ValidationFailed(std::move(errors));
  return {AsciiLower(Trim(*email)), *password};
}

json::object ToJson(const User& user) {
  return {{"id", user.id}, {"username", user.username}, {"email", user.email}, {"createdAt", user.created_at}};
}

}  // namespace vote::domain
