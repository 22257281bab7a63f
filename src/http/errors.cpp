#include "http/errors.hpp"

namespace vote::http {

Response ErrorResponse(const ApiError& error) {
  json::object body{{"code", error.Code()}, {"message", error.Message()}};
  if (!error.Details().empty()) {
    json::array details;
    for (const auto& d : error.Details()) details.push_back(json::object{{"field", d.field}, {"message", d.message}});
    body["details"] = std::move(details);
  }
  auto response = JsonResponse(error.StatusCode(), json::object{{"error", std::move(body)}});
  for (const auto& [name, value] : error.Headers()) response.set(name, value);
  return response;
}

Response InternalErrorResponse() {
  return ErrorResponse(ApiError(Status::internal_server_error, "internal_error", "internal server error"));
}

ApiError BadRequest(std::string code, std::string message) {
  return ApiError(Status::bad_request, std::move(code), std::move(message));
}

ApiError ValidationFailed(std::vector<FieldError> details) {
  return ApiError(Status::bad_request, "validation_failed", "the request is not valid", std::move(details));
}

ApiError NotFound(std::string code, std::string message) {
  return ApiError(Status::not_found, std::move(code), std::move(message));
}

ApiError Unauthorized(std::string message) {
  return std::move(ApiError(Status::unauthorized, "unauthorized", std::move(message)))
      .WithHeader("WWW-Authenticate", "Bearer");
}

ApiError Forbidden(std::string message) {
  return ApiError(Status::forbidden, "forbidden", std::move(message));
}

ApiError Conflict(std::string code, std::string message) {
  return ApiError(Status::conflict, std::move(code), std::move(message));
}

}  // namespace vote::http
