#pragma once

#include <atomic>
#include <memory>
#include <vector>

#include "config/config.hpp"

namespace vote {

// The one place that wires everything together: one event loop per thread, each with its own
// database pool, Redis connection, services and acceptor (SO_REUSEPORT); process-wide state
// (metrics, feed state, password hashing, the event bus) shared between them.
class App {
 public:
  enum class Mode { kServe, kWorker };

  App(config::Config config, Mode mode);
  ~App();

  // Runs until SIGINT/SIGTERM; returns the process exit code.
  int Run();

 private:
  struct Shared;
  struct Worker;

  int RunWorkerOnly();

  config::Config config_;
  Mode mode_;
  std::unique_ptr<Shared> shared_;
  std::vector<std::unique_ptr<Worker>> workers_;
};

}  // namespace vote
