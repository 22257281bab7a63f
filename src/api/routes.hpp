#pragma once

#include "api/services.hpp"
#include "http/router.hpp"

namespace vote::api {

// The route table: every endpoint of the API contract, in one place.
http::Router MakeRouter(Services& services);

}  // namespace vote::api
