#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/steady_timer.hpp>

#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "config/config.hpp"

namespace vote::cache {

namespace asio = boost::asio;

// A Redis reply, copied out of hiredis' reply tree.
struct Reply {
  enum class Type { kNil, kString, kInteger, kArray, kStatus, kError };
  Type type = Type::kNil;
  long long integer = 0;
  std::string str;
  std::vector<Reply> elements;
};

// Redis is unreachable, timed out, or answered with an error.
class RedisError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// One hiredis async connection driven by Asio on one event-loop thread (hiredis ships no Asio
// adapter; this is it). Commands are pipelined on the connection; a lost connection is
// re-established in the background every `reconnect_interval`.
class Redis {
 public:
  Redis(asio::any_io_executor ex, config::RedisConfig config);
  ~Redis();
  Redis(const Redis&) = delete;
  Redis& operator=(const Redis&) = delete;

  // Starts connecting (and keeps reconnecting) in the background.
  void Start();
  void Stop();
  bool Connected() const;

  // Sends one command. Throws RedisError when not connected, on timeout (command_timeout) or
  // on an error reply.
  asio::awaitable<Reply> Command(std::vector<std::string> args);

  // Runs a Lua script by EVALSHA, loading it on NOSCRIPT.
  asio::awaitable<Reply> Eval(const std::string& script, std::vector<std::string> keys,
                              std::vector<std::string> args);

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace vote::cache
