#pragma once

#include <string>

namespace vote {

// JSON log lines on stderr: {"time","level","msg"} for messages, and access lines with one
// field per request attribute (logger "access").
void SetUpLogging(const std::string& level);

}  // namespace vote
