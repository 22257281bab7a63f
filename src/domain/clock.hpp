#pragma once

#include <chrono>
#include <cstdio>
#include <functional>
#include <string>

namespace vote::domain {

using TimePoint = std::chrono::system_clock::time_point;
// Injected wherever time matters, so tests can move it.
using Clock = std::function<TimePoint()>;

inline Clock SystemClock() {
  return [] { return std::chrono::system_clock::now(); };
}

// Whole seconds in UTC with a Z suffix, e.g. 2026-11-27T17:04:05Z (the API's time format).
inline std::string Rfc3339(TimePoint t) {
  const auto seconds = std::chrono::floor<std::chrono::seconds>(t);
  const auto days = std::chrono::floor<std::chrono::days>(seconds);
  const std::chrono::year_month_day ymd{days};
  const std::chrono::hh_mm_ss hms{seconds - days};
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%04d-%02u-%02uT%02ld:%02ld:%02ldZ", static_cast<int>(ymd.year()),
                static_cast<unsigned>(ymd.month()), static_cast<unsigned>(ymd.day()),
                static_cast<long>(hms.hours().count()), static_cast<long>(hms.minutes().count()),
                static_cast<long>(hms.seconds().count()));
  return buffer;
}

}  // namespace vote::domain
