#pragma once

#include <chrono>
#include <functional>

namespace vote::domain {

using TimePoint = std::chrono::system_clock::time_point;
// Injected wherever time matters, so tests can move it.
using Clock = std::function<TimePoint()>;

inline Clock SystemClock() {
  return [] { return std::chrono::system_clock::now(); };
}

}  // namespace vote::domain
