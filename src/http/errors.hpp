#pragma once

#include <boost/json.hpp>

#include <string>
#include <utility>
#include <vector>

#include "http/types.hpp"

namespace vote::http {

struct FieldError {
  std::string field;
  std::string message;
};

// The one error type handlers and services throw for an expected failure. It is turned into
// {"error":{"code","message","details"}} in exactly one place (ErrorResponse).
class ApiError : public std::exception {
 public:
  ApiError(Status status, std::string code, std::string message, std::vector<FieldError> details = {})
      : status_(status), code_(std::move(code)), message_(std::move(message)), details_(std::move(details)) {}

  ApiError&& WithHeader(std::string name, std::string value) && {
    headers_.emplace_back(std::move(name), std::move(value));
    return std::move(*this);
  }

  const char* what() const noexcept override { return message_.c_str(); }
  Status StatusCode() const { return status_; }
  const std::string& Code() const { return code_; }
  const std::string& Message() const { return message_; }
  const std::vector<FieldError>& Details() const { return details_; }
  const std::vector<std::pair<std::string, std::string>>& Headers() const { return headers_; }

 private:
  Status status_;
  std::string code_;
  std::string message_;
  std::vector<FieldError> details_;
  std::vector<std::pair<std::string, std::string>> headers_;
};

Response ErrorResponse(const ApiError& error);
// For anything unexpected: a 500 that says nothing about internals.
Response InternalErrorResponse();

ApiError BadRequest(std::string code, std::string message);
ApiError ValidationFailed(std::vector<FieldError> details);
ApiError NotFound(std::string code, std::string message);
ApiError Unauthorized(std::string message);
ApiError Forbidden(std::string message);
ApiError Conflict(std::string code, std::string message);

}  // namespace vote::http
