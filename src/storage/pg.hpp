#pragma once

#include <libpq-fe.h>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>

#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include "sql/queries.hpp"

namespace vote::storage {

namespace asio = boost::asio;

// A database error with its SQLSTATE; the message is for logs, never for clients.
class PgError : public std::runtime_error {
 public:
  PgError(std::string sqlstate, const std::string& message, std::string constraint = {})
      : std::runtime_error(message), sqlstate_(std::move(sqlstate)), constraint_(std::move(constraint)) {}
  const std::string& SqlState() const { return sqlstate_; }
  const std::string& Constraint() const { return constraint_; }
  bool IsUniqueViolation() const { return sqlstate_ == "23505"; }
  bool IsConnectionLost() const { return sqlstate_.starts_with("08") || sqlstate_.empty(); }
  // Worth the client's trying again: the connection went, or the statement lost a race or ran
  // out of time or resources (class 40: serialization failure, deadlock; 55P03 lock not
  // available; 57014 canceled, e.g. statement_timeout; 57P0x server shutting down; class 53).
  bool IsTransient() const {
    return IsConnectionLost() || sqlstate_.starts_with("40") || sqlstate_.starts_with("53") ||
           sqlstate_.starts_with("57P0") || sqlstate_ == "55P03" || sqlstate_ == "57014";
  }

 private:
  std::string sqlstate_;
  std::string constraint_;
};

// Owns one PGresult; values are read as text (the wire format we ask for).
class Result {
 public:
  explicit Result(PGresult* res) : res_(res, &PQclear) {}
  int Rows() const { return PQntuples(res_.get()); }
  bool IsNull(int row, int col) const { return PQgetisnull(res_.get(), row, col) != 0; }
  std::string_view Text(int row, int col) const {
    return {PQgetvalue(res_.get(), row, col), static_cast<std::size_t>(PQgetlength(res_.get(), row, col))};
  }
  std::int64_t Int(int row, int col) const;
  bool Bool(int row, int col) const { return Text(row, col) == "t"; }
  // A PostgreSQL text[] or bigint[] in text form.
  std::vector<std::string> TextArray(int row, int col) const;
  std::vector<std::int64_t> IntArray(int row, int col) const;

 private:
  std::unique_ptr<PGresult, void (*)(PGresult*)> res_;
};

// Query parameters in PostgreSQL's text format.
class Params {
 public:
  Params& Add(std::nullopt_t) { return Push(std::nullopt); }
  Params& Add(std::string_view v) { return Push(std::string(v)); }
  Params& Add(const std::string& v) { return Push(v); }
  Params& Add(const char* v) { return Push(std::string(v)); }
  Params& Add(std::int64_t v) { return Push(std::to_string(v)); }
  Params& Add(int v) { return Push(std::to_string(v)); }
  Params& Add(bool v) { return Push(v ? "t" : "f"); }
  template <typename T>
  Params& Add(const std::optional<T>& v) {
    return v ? Add(*v) : Push(std::nullopt);
  }
  Params& Add(const std::vector<std::int64_t>& v);
  Params& Add(const std::vector<std::string>& v);
  Params& Add(const std::vector<int>& v);

  int Size() const { return static_cast<int>(values_.size()); }
  std::vector<const char*> Pointers() const;

 private:
  Params& Push(std::optional<std::string> v) {
    values_.push_back(std::move(v));
    return *this;
  }
  std::vector<std::optional<std::string>> values_;
};

template <typename... Args>
Params MakeParams(const Args&... args) {
  Params p;
  (p.Add(args), ...);
  return p;
}

// The outcome of one statement sent in a pipeline: its result or its error.
struct PipelineOutcome {
  std::optional<Result> result;
  std::optional<PgError> error;
};

// One libpq connection driven by the non-blocking API on an Asio executor.
class Connection {
 public:
  // `io_timeout` bounds each statement (or pipelined batch) as seen from here: a server that
  // stops answering (stopped, partitioned) loses the connection instead of holding the caller.
  Connection(asio::any_io_executor ex, std::string conninfo, std::chrono::milliseconds connect_timeout,
             std::chrono::milliseconds io_timeout);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  asio::awaitable<void> Connect();
  // Runs a named statement, preparing it on first use on this connection.
  asio::awaitable<Result> Execute(const sql::Statement& statement, const Params& params);
  // Several statements in one round trip (libpq pipeline mode), each in a transaction of its
  // own that commits before the next one starts, for a caller that keeps several batches in
  // flight on this connection: SendEach queues a batch (entering pipeline mode; statements are prepared only while nothing
  // is in flight, so a batch sent behind another must use statements sent before), ReceiveEach
  // reads the oldest batch's `count` outcomes, EndPipeline leaves pipeline mode once nothing is
  // in flight.
  asio::awaitable<void> SendEach(const std::vector<std::pair<const sql::Statement*, const Params*>>& statements);
  asio::awaitable<std::vector<PipelineOutcome>> ReceiveEach(std::size_t count);
  void EndPipeline();
  bool Healthy() const;
  // Healthy(), and the server has not ended the connection while it sat idle (reads pending
  // input, so only between statements).
  bool StillUp();

 private:
  asio::awaitable<void> Prepare(const sql::Statement& statement);
  asio::awaitable<void> Flush();
  asio::awaitable<Result> ReadResult();
  asio::awaitable<void> Wait(bool write);
  void Close();
  [[noreturn]] void ThrowConnectionError(const std::string& what);

  asio::any_io_executor ex_;
  std::string conninfo_;
  std::chrono::milliseconds connect_timeout_;
  std::chrono::milliseconds io_timeout_;
  asio::steady_timer io_deadline_;  // armed by each statement or batch, raced by every wait
  PGconn* conn_ = nullptr;
  std::optional<asio::posix::stream_descriptor> socket_;
  std::unordered_set<std::string> prepared_;
};

struct PoolStats {
  int size = 0;
  int idle = 0;
  int waiting = 0;
};

// How many connections a pool opens, and how long and how many requests may wait for one.
struct PoolLimits {
  int size = 1;
  std::chrono::milliseconds connect_timeout{5000};
  std::chrono::milliseconds io_timeout{12000};
  std::chrono::milliseconds acquire_timeout{2000};
  std::size_t max_waiters = 256;
};

// SQLSTATE of a request the pool turned away (too_many_connections: transient, so 503).
inline constexpr std::string_view kPoolExhausted = "53300";

// A fixed-size pool of connections bound to one event-loop thread (no locking needed).
// Connections are opened lazily and replaced when they break, so the pool recovers
// after the database restarts.
class Pool {
 public:
  class Lease {
   public:
    Lease(Pool& pool, std::unique_ptr<Connection> conn) : pool_(&pool), conn_(std::move(conn)) {}
    Lease(Lease&& other) noexcept = default;
    Lease& operator=(Lease&&) = delete;
    ~Lease();
    Connection* operator->() { return conn_.get(); }
    Connection& operator*() { return *conn_; }
    // A broken connection is dropped instead of returned.
    void Discard() { discard_ = true; }

   private:
    Pool* pool_;
    std::unique_ptr<Connection> conn_;
    bool discard_ = false;
  };

  Pool(asio::any_io_executor ex, std::string conninfo, PoolLimits limits);

  // A connection within limits.acquire_timeout, or PgError kPoolExhausted: also at once when
  // limits.max_waiters already wait.
  asio::awaitable<Lease> Acquire();
  // Acquire, execute, release; a broken connection is discarded and the error rethrown.
  asio::awaitable<Result> Execute(const sql::Statement& statement, const Params& params);
  PoolStats Stats() const;

 private:
  void Release(std::unique_ptr<Connection> conn, bool discard);

  struct Waiter {
    explicit Waiter(asio::any_io_executor ex) : timer(std::move(ex)) {}
    asio::steady_timer timer;
    std::unique_ptr<Connection> conn;
    bool woken = false;  // taken off the queue by Release: a connection, or a slot to open one
  };
  asio::awaitable<Lease> Open();

  asio::any_io_executor ex_;
  std::string conninfo_;
  PoolLimits limits_;
  int open_ = 0;
  std::vector<std::unique_ptr<Connection>> idle_;
  std::deque<std::shared_ptr<Waiter>> waiters_;
};

}  // namespace vote::storage
