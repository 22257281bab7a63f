#include "storage/pg.hpp"

#include <sys/socket.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <cerrno>
#include <charconv>

namespace vote::storage {
namespace {

std::string ArrayLiteral(const std::vector<std::string>& items) {
  std::string out = "{";
  for (std::size_t i = 0; i < items.size(); ++i) {
    if (i > 0) out += ',';
    out += '"';
    for (char ch : items[i]) {
      if (ch == '"' || ch == '\\') out += '\\';
      out += ch;
    }
    out += '"';
  }
  return out + "}";
}

template <typename Int>
std::string IntArrayLiteral(const std::vector<Int>& items) {
  std::string out = "{";
  for (std::size_t i = 0; i < items.size(); ++i) {
    if (i > 0) out += ',';
    out += std::to_string(items[i]);
  }
  return out + "}";
}

// Parses PostgreSQL's text form of a one-dimensional array: {a,"b c",NULL}.
std::vector<std::string> ParseArray(std::string_view text) {
  std::vector<std::string> items;
  if (text.size() < 2 || text.front() != '{' || text.back() != '}') return items;
  text = text.substr(1, text.size() - 2);
  std::size_t i = 0;
  while (i < text.size()) {
    std::string item;
    if (text[i] == '"') {
      ++i;
      while (i < text.size() && text[i] != '"') {
        if (text[i] == '\\' && i + 1 < text.size()) ++i;
        item += text[i++];
      }
      ++i;  // closing quote
    } else {
      while (i < text.size() && text[i] != ',') item += text[i++];
    }
    items.push_back(std::move(item));
    ++i;  // comma
  }
  return items;
}

}  // namespace

std::int64_t Result::Int(int row, int col) const {
  const auto text = Text(row, col);
  std::int64_t value = 0;
  std::from_chars(text.data(), text.data() + text.size(), value);
  return value;
}

std::vector<std::string> Result::TextArray(int row, int col) const {
  if (IsNull(row, col)) return {};
  return ParseArray(Text(row, col));
}

std::vector<std::int64_t> Result::IntArray(int row, int col) const {
  std::vector<std::int64_t> out;
  for (const auto& item : TextArray(row, col)) {
    std::int64_t value = 0;
    std::from_chars(item.data(), item.data() + item.size(), value);
    out.push_back(value);
  }
  return out;
}

Params& Params::Add(const std::vector<std::int64_t>& v) { return Push(IntArrayLiteral(v)); }
Params& Params::Add(const std::vector<int>& v) { return Push(IntArrayLiteral(v)); }
Params& Params::Add(const std::vector<std::string>& v) { return Push(ArrayLiteral(v)); }

std::vector<const char*> Params::Pointers() const {
  std::vector<const char*> out;
  out.reserve(values_.size());
  for (const auto& v : values_) out.push_back(v ? v->c_str() : nullptr);
  return out;
}

Connection::Connection(asio::any_io_executor ex, std::string conninfo, std::chrono::milliseconds connect_timeout,
                       std::chrono::milliseconds io_timeout)
    : ex_(ex),
      conninfo_(std::move(conninfo)),
      connect_timeout_(connect_timeout),
      io_timeout_(io_timeout),
      io_deadline_(std::move(ex)) {}

Connection::~Connection() { Close(); }

void Connection::Close() {
  if (socket_) {
    // libpq owns the descriptor: release it so Asio does not close it a second time.
    socket_->release();
    socket_.reset();
  }
  if (conn_ != nullptr) {
    PQfinish(conn_);
    conn_ = nullptr;
  }
  prepared_.clear();
}

bool Connection::Healthy() const { return conn_ != nullptr && PQstatus(conn_) == CONNECTION_OK; }

bool Connection::StillUp() {
  // An idle connection has nothing to read, unless the server ended it (a restart, a terminated
  // backend: a FATAL message, then the close). Peeking notices that before a statement is sent,
  // so the caller reconnects instead of failing the request. (libpq's PQconsumeInput may read the
  // message without seeing the close, and report the connection as fine.)
  if (!Healthy()) return false;
  char byte = 0;
  const auto n = ::recv(PQsocket(conn_), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

void Connection::ThrowConnectionError(const std::string& what) {
  std::string message = what;
  if (conn_ != nullptr) message += ": " + std::string(PQerrorMessage(conn_));
  Close();
  throw PgError("08006", message);
}

asio::awaitable<void> Connection::Wait(bool write) {
  using namespace asio::experimental::awaitable_operators;
  constexpr auto kNoThrow = asio::as_tuple(asio::use_awaitable);
  const auto which = write ? asio::posix::descriptor_base::wait_write : asio::posix::descriptor_base::wait_read;
  auto race = socket_->async_wait(which, kNoThrow) || io_deadline_.async_wait(kNoThrow);
  const auto ready = co_await std::move(race);
  // Either way the protocol state is unknown: the connection cannot be reused.
  if (ready.index() == 1) ThrowConnectionError("no answer within " + std::to_string(io_timeout_.count()) + " ms");
  if (const auto [ec] = std::get<0>(ready); ec) ThrowConnectionError("wait: " + ec.message());
}

asio::awaitable<void> Connection::Connect() {
  Close();
  conn_ = PQconnectStart(conninfo_.c_str());
  if (conn_ == nullptr || PQstatus(conn_) == CONNECTION_BAD) ThrowConnectionError("connect");
  if (PQsetnonblocking(conn_, 1) != 0) ThrowConnectionError("set non-blocking");

  // Every wait of the handshake races the one deadline; whichever ends first cancels the other,
  // so nothing outlives this frame.
  using namespace asio::experimental::awaitable_operators;
  constexpr auto kNoThrow = asio::as_tuple(asio::use_awaitable);
  asio::steady_timer deadline(ex_, connect_timeout_);
  PostgresPollingStatusType status = PGRES_POLLING_WRITING;
  int fd = -1;
  while (status != PGRES_POLLING_OK) {
    if (status == PGRES_POLLING_FAILED) ThrowConnectionError("connect");
    // The descriptor can change while connecting (e.g. after trying another address).
    if (PQsocket(conn_) != fd) {
      if (socket_) socket_->release();
      fd = PQsocket(conn_);
      socket_.emplace(ex_, fd);
    }
    const auto which = status == PGRES_POLLING_WRITING ? asio::posix::descriptor_base::wait_write
                                                       : asio::posix::descriptor_base::wait_read;
    auto race = socket_->async_wait(which, kNoThrow) || deadline.async_wait(kNoThrow);
    const auto ready = co_await std::move(race);
    if (ready.index() == 1) ThrowConnectionError("connect timed out");
    if (const auto [ec] = std::get<0>(ready); ec) ThrowConnectionError("connect: " + ec.message());
    status = PQconnectPoll(conn_);
  }
}

asio::awaitable<void> Connection::Flush() {
  for (;;) {
    const int rc = PQflush(conn_);
    if (rc == 0) co_return;
    if (rc < 0) ThrowConnectionError("send");
    co_await Wait(true);
  }
}

asio::awaitable<Result> Connection::ReadResult() {
  // Every result must be drained before the connection can take the next command.
  std::optional<Result> first;
  std::optional<PgError> error;
  for (;;) {
    while (PQisBusy(conn_) != 0) {
      co_await Wait(false);
      if (PQconsumeInput(conn_) == 0) ThrowConnectionError("receive");
    }
    PGresult* res = PQgetResult(conn_);
    if (res == nullptr) break;
    const auto status = PQresultStatus(res);
    if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK && !error) {
      const char* state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
      const char* constraint = PQresultErrorField(res, PG_DIAG_CONSTRAINT_NAME);
      error.emplace(state != nullptr ? state : "XX000", PQresultErrorMessage(res),
                    constraint != nullptr ? constraint : "");
    }
    if (!first) {
      first.emplace(res);
    } else {
      PQclear(res);
    }
  }
  if (!first) ThrowConnectionError("no result");
  if (error) throw *error;
  co_return std::move(*first);
}

asio::awaitable<Result> Connection::Execute(const sql::Statement& statement, const Params& params) {
  if (!StillUp()) co_await Connect();
  io_deadline_.expires_after(io_timeout_);
  co_await Prepare(statement);
  const auto values = params.Pointers();
  if (PQsendQueryPrepared(conn_, statement.name, params.Size(), values.data(), nullptr, nullptr, 0) == 0) {
    ThrowConnectionError("send");
  }
  co_await Flush();
  co_return co_await ReadResult();
}

asio::awaitable<void> Connection::Prepare(const sql::Statement& statement) {
  if (prepared_.contains(statement.name)) co_return;
  if (PQsendPrepare(conn_, statement.name, statement.text, 0, nullptr) == 0) ThrowConnectionError("prepare");
  co_await Flush();
  co_await ReadResult();
  prepared_.insert(statement.name);
}

asio::awaitable<void> Connection::SendEach(
    const std::vector<std::pair<const sql::Statement*, const Params*>>& statements) {
  io_deadline_.expires_after(io_timeout_);
  if (PQpipelineStatus(conn_) == PQ_PIPELINE_OFF) {
    if (!StillUp()) co_await Connect();
    for (const auto& [statement, params] : statements) co_await Prepare(*statement);
    if (PQenterPipelineMode(conn_) == 0) ThrowConnectionError("pipeline mode");
  }
  for (const auto& [statement, params] : statements) {
    if (!prepared_.contains(statement->name)) throw std::logic_error("statement not prepared before pipelining");
    const auto values = params->Pointers();
    if (PQsendQueryPrepared(conn_, statement->name, params->Size(), values.data(), nullptr, nullptr, 0) == 0 ||
        PQpipelineSync(conn_) == 0) {
      ThrowConnectionError("send");
    }
  }
  co_await Flush();
}

asio::awaitable<std::vector<PipelineOutcome>> Connection::ReceiveEach(std::size_t count) {
  // Per statement: its result, the NULL that ends it, then the PIPELINE_SYNC that ends its
  // transaction. A failed statement does not abort the next one: each has its own sync.
  io_deadline_.expires_after(io_timeout_);
  std::vector<PipelineOutcome> outcomes(count);
  std::size_t index = 0;
  bool seen_result = false;
  while (index < count) {
    while (PQisBusy(conn_) != 0) {
      co_await Wait(false);
      if (PQconsumeInput(conn_) == 0) ThrowConnectionError("receive");
    }
    PGresult* res = PQgetResult(conn_);
    if (res == nullptr) continue;  // end of one statement's results
    const auto status = PQresultStatus(res);
    if (status == PGRES_PIPELINE_SYNC) {
      PQclear(res);
      ++index;
      seen_result = false;
      continue;
    }
    auto& outcome = outcomes[index];
    if (status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK) {
      if (!seen_result) outcome.result.emplace(res);
      else PQclear(res);
    } else {
      if (!outcome.error && status != PGRES_PIPELINE_ABORTED) {
        const char* state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
        outcome.error.emplace(state != nullptr ? state : "XX000", PQresultErrorMessage(res));
      }
      PQclear(res);
    }
    seen_result = true;
  }
  co_return outcomes;
}

void Connection::EndPipeline() {
  if (PQpipelineStatus(conn_) != PQ_PIPELINE_OFF && PQexitPipelineMode(conn_) == 0) {
    ThrowConnectionError("pipeline mode");
  }
}

Pool::Lease::~Lease() {
  if (!conn_) return;
  const bool discard = discard_ || !conn_->Healthy();
  pool_->Release(std::move(conn_), discard);
}

Pool::Pool(asio::any_io_executor ex, std::string conninfo, PoolLimits limits)
    : ex_(std::move(ex)), conninfo_(std::move(conninfo)), limits_(limits) {}

asio::awaitable<Pool::Lease> Pool::Open() {
  auto conn = std::make_unique<Connection>(ex_, conninfo_, limits_.connect_timeout, limits_.io_timeout);
  try {
    co_await conn->Connect();
  } catch (...) {
    --open_;
    throw;
  }
  co_return Lease(*this, std::move(conn));
}

asio::awaitable<Pool::Lease> Pool::Acquire() {
  if (!idle_.empty()) {
    auto conn = std::move(idle_.back());
    idle_.pop_back();
    co_return Lease(*this, std::move(conn));
  }
  if (open_ < limits_.size) {
    ++open_;
    co_return co_await Open();
  }
  if (waiters_.size() >= limits_.max_waiters) {
    throw PgError(std::string(kPoolExhausted), "connection pool: too many requests waiting");
  }
  auto waiter = std::make_shared<Waiter>(ex_);
  waiter->timer.expires_after(limits_.acquire_timeout);
  waiters_.push_back(waiter);
  boost::system::error_code ec;
  co_await waiter->timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  if (waiter->conn) co_return Lease(*this, std::move(waiter->conn));
  // A connection was dropped: this waiter may open a fresh one in its place.
  if (waiter->woken) co_return co_await Open();
  std::erase(waiters_, waiter);
  throw PgError(std::string(kPoolExhausted), "connection pool: no connection free in time");
}

void Pool::Release(std::unique_ptr<Connection> conn, bool discard) {
  if (discard) {
    conn.reset();
    if (!waiters_.empty()) {
      auto waiter = std::move(waiters_.front());
      waiters_.pop_front();
      // open_ stays as is: the woken waiter, finding no connection, opens one in its place.
      waiter->woken = true;
      waiter->timer.cancel();
    } else {
      --open_;
    }
    return;
  }
  if (!waiters_.empty()) {
    auto waiter = std::move(waiters_.front());
    waiters_.pop_front();
    waiter->conn = std::move(conn);
    waiter->woken = true;
    waiter->timer.cancel();
    return;
  }
  idle_.push_back(std::move(conn));
}

asio::awaitable<Result> Pool::Execute(const sql::Statement& statement, const Params& params) {
  auto lease = co_await Acquire();
  try {
    co_return co_await lease->Execute(statement, params);
  } catch (const PgError& e) {
    if (e.IsConnectionLost()) lease.Discard();
    throw;
  }
}

PoolStats Pool::Stats() const {
  return {limits_.size, static_cast<int>(idle_.size()), static_cast<int>(waiters_.size())};
}

}  // namespace vote::storage
