#include "events/event_bus.hpp"

#include <hiredis/hiredis.h>
#include <libpq-fe.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <map>
#include <set>
#include <cstdlib>
#include <mutex>
#include <numeric>
#include <optional>
#include <stdexcept>
#include <string_view>
#include <thread>
#include <unordered_set>
#include <utility>
#include <vector>

#include "events/amqp.hpp"
#include "events/event_codec.hpp"
#include "sql/queries.hpp"

namespace vote::events {

namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

// The longest a thread blocks in one call before it looks at the stop flag again.
constexpr auto kSlice = 200ms;
constexpr auto kConfirmTimeout = 10s;
// After a batch, the relay lets events gather this long: under a steady stream of votes, 20 ms
// makes a broker message of ~100 events instead of ~25 (RabbitMQ's cost is per message: 19% of a
// core at 5 ms, 11% at 20 ms, at 5k votes/s), and it stays far inside the WebSocket push budget.
constexpr auto kGatherWindow = 20ms;
constexpr auto kBacklogInterval = 1s;
constexpr auto kHotAdvanceInterval = 2s;
constexpr int kHotWindowMinutes = 60;
// A safety net only: buckets leave the hot set by Advance() long before they expire.
constexpr int kHotTtlSeconds = 3 * 3600;
// Members taken out of the hot set per script call: Redis is never blocked for long.
constexpr int kHotAdvanceChunk = 1000;
// Outbox events packed into one broker message (see DecodeEvents).
constexpr int kEventsPerMessage = 100;
// Ids remembered per consumer to drop duplicates: about 4 MB (hashes, not strings).
constexpr std::size_t kRecentIds = 100000;

constexpr const char* kVoteExchange = "vote.events";
constexpr const char* kFeedExchange = "feed.events";
constexpr const char* kSystemExchange = "system.events";
constexpr const char* kDeadLetterExchange = "dlx.events";
constexpr const char* kErrorQueue = "events.errors";
constexpr const char* kAnalyticsQueue = "vote.analytics";
// Keeps the newest dead letters when nobody drains the error queue.
constexpr std::int32_t kErrorQueueMaxLength = 100000;

constexpr const char* kHotKey = "poll:stats:hot";
constexpr const char* kHotOldestKey = "poll:stats:hot:oldest";  // oldest minute still counted

// KEYS[1]: the hot set, KEYS[2..]: the minute bucket of each entry; ARGV[1]: time to live;
// ARGV[2i-2], ARGV[2i-1] for KEYS[i]: votes, poll id. Buckets first: an error (a key of the wrong
// type) stops the script before the hot set is touched, and the message is retried.
constexpr const char* kCountVotesScript = R"lua(
for i = 2, #KEYS do
  redis.call('ZINCRBY', KEYS[i], ARGV[2 * i - 2], ARGV[2 * i - 1])
  redis.call('EXPIRE', KEYS[i], ARGV[1])
end
for i = 2, #KEYS do
  redis.call('ZINCRBY', KEYS[1], ARGV[2 * i - 2], ARGV[2 * i - 1])
end
redis.call('EXPIRE', KEYS[1], ARGV[1])
return 0
)lua";

// Moves the hot set's window forward: takes the minute buckets older than ARGV[1] (the window's
// first minute) out of KEYS[1], at most ARGV[3] members per call, popping them from their bucket
// (prefix ARGV[2]) as it subtracts them, so a call that stops halfway leaves nothing counted
// twice. KEYS[2] holds the oldest minute still counted. Returns the minutes left to take out.
constexpr const char* kAdvanceScript = R"lua(
local first, budget = tonumber(ARGV[1]), tonumber(ARGV[3])
local oldest = tonumber(redis.call('GET', KEYS[2]))
if not oldest then
  redis.call('SET', KEYS[2], tostring(first))
  return 0
end
while oldest < first and budget > 0 do
  local bucket = ARGV[2] .. oldest
  local popped = redis.call('ZPOPMIN', bucket, budget)
  for i = 1, #popped, 2 do
    if tonumber(redis.call('ZINCRBY', KEYS[1], tostring(-tonumber(popped[i + 1])), popped[i])) <= 0 then
      redis.call('ZREM', KEYS[1], popped[i])
    end
  end
  budget = budget - #popped / 2
  if redis.call('EXISTS', bucket) == 0 then
    oldest = oldest + 1
  end
end
redis.call('SET', KEYS[2], tostring(oldest))
return math.max(0, first - oldest)
)lua";

struct QueueSpec {
  const char* name;
  const char* exchange;
  std::int32_t ttl_ms;
  // Only queues this service consumes dead-letter: on a queue nobody reads, every message would
  // expire into the error queue (TTL expiry dead-letters too).
  bool dead_letter;
};

constexpr std::int32_t kVoteTtlMs = 5 * 60 * 1000;
constexpr std::int32_t kFeedTtlMs = 60 * 1000;
constexpr std::int32_t kSystemTtlMs = 24 * 60 * 60 * 1000;

constexpr QueueSpec kQueues[] = {
    {"vote.processing", kVoteExchange, kVoteTtlMs, false},
    {"vote.notifications", kVoteExchange, kVoteTtlMs, false},
    {kAnalyticsQueue, kVoteExchange, kVoteTtlMs, true},
    {"feed.updates", kFeedExchange, kFeedTtlMs, false},
    {"feed.cache.invalidation", kFeedExchange, kFeedTtlMs, false},
    {"system.metrics", kSystemExchange, kSystemTtlMs, false},
    {"system.alerts", kSystemExchange, kSystemTtlMs, false},
};

std::string_view ExchangeFor(std::string_view type) {
  if (type == "poll.skipped" || type.starts_with("vote.")) {
    return kVoteExchange;
  }
  if (type.starts_with("poll.") || type.starts_with("feed.")) {
    return kFeedExchange;
  }
  return kSystemExchange;
}


std::int64_t UnixNow() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Every connection declares the whole topology: it is idempotent, cheap, and no thread then
// depends on another having connected first.
void DeclareTopology(amqp::Connection& conn) {
  for (const char* exchange : {kVoteExchange, kFeedExchange, kSystemExchange}) {
    conn.DeclareExchange(exchange, "topic");
  }
  conn.DeclareExchange(kDeadLetterExchange, "fanout");
  amqp::QueueArgs errors;
  errors.max_length = kErrorQueueMaxLength;
  conn.DeclareQueue(kErrorQueue, errors);
  conn.Bind(kErrorQueue, kDeadLetterExchange, "");
  for (const auto& q : kQueues) {
    amqp::QueueArgs args;
    args.message_ttl_ms = q.ttl_ms;
    if (q.dead_letter) {
      args.dead_letter_exchange = kDeadLetterExchange;
    }
    conn.DeclareQueue(q.name, args);
    conn.Bind(q.name, q.exchange, "#");
  }
}

// The stop flag and the relay's wake-up, shared by the threads.
class Signals {
 public:
  bool Stopping() const { return stopping_.load(); }

  void Stop() {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    cv_.notify_all();
  }

  // Called for every committed write: only the first call since the relay last looked takes
  // the lock and wakes it.
  void NotifyOutbox() {
    if (pending_.exchange(true)) {
      return;
    }
    {
      std::lock_guard lock(mutex_);
      outbox_ = true;
    }
    cv_.notify_all();
  }

  // Sleeps until `deadline` or a stop and, with `outbox`, until NotifyOutbox. False when stopping.
  bool WaitUntil(Clock::time_point deadline, bool outbox) {
    std::unique_lock lock(mutex_);
    cv_.wait_until(lock, deadline, [&] { return stopping_.load() || (outbox && outbox_); });
    if (outbox) {
      outbox_ = false;
      pending_ = false;
    }
    return !stopping_.load();
  }

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  std::atomic<bool> stopping_{false};
  std::atomic<bool> pending_{false};
  bool outbox_ = false;
};

// Logs a dependency's first failure at warn, repeats at debug and the (re)connection at info.
class Outage {
 public:
  explicit Outage(std::string what) : what_(std::move(what)) {}

  void Failed(const std::string& error) {
    if (down_) {
      spdlog::debug("events: {} still unavailable: {}", what_, error);
    } else {
      spdlog::warn("events: {} unavailable: {}", what_, error);
    }
    down_ = true;
  }

  void Connected() {
    if (down_ || first_) {
      spdlog::info("events: {} connected", what_);
    }
    down_ = false;
    first_ = false;
  }

 private:
  std::string what_;
  bool down_ = false;
  bool first_ = true;
};

// The ids of the last `capacity` events handled, to drop redeliveries and republished
// duplicates. Stores 64-bit hashes: a collision (about 1e-10 at this size) drops one event.
class RecentIds {
 public:
  explicit RecentIds(std::size_t capacity) : ring_(capacity) { seen_.reserve(capacity); }

  bool Contains(std::string_view id) const { return seen_.contains(Hash(id)); }

  // False when the id was already there.
  bool Insert(std::string_view id) {
    const auto h = Hash(id);
    if (seen_.contains(h)) {
      return false;
    }
    if (size_ == ring_.size()) {
      seen_.erase(ring_[next_]);
    } else {
      ++size_;
    }
    seen_.insert(h);
    ring_[next_] = h;
    next_ = (next_ + 1) % ring_.size();
    return true;
  }

 private:
  static std::uint64_t Hash(std::string_view id) { return std::hash<std::string_view>{}(id); }

  std::vector<std::uint64_t> ring_;
  std::unordered_set<std::uint64_t> seen_;
  std::size_t next_ = 0;
  std::size_t size_ = 0;
};

class PgError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct PgResultFree {
  void operator()(PGresult* r) const { PQclear(r); }
};
using PgResult = std::unique_ptr<PGresult, PgResultFree>;

std::string_view Text(const PGresult* r, int row, int col) {
  return {PQgetvalue(r, row, col), static_cast<std::size_t>(PQgetlength(r, row, col))};
}

// The relay's own blocking connection; the pool's connections belong to the event loops.
class PgSession {
 public:
  explicit PgSession(const config::PostgresConfig& pg) : conn_(PQconnectdb(Conninfo(pg).c_str())) {
    if (!conn_ || PQstatus(conn_.get()) != CONNECTION_OK) {
      throw PgError(Message());
    }
  }

  // Throws PgError; the session is then dropped (the server rolls back what was open).
  // A statement is prepared on its first use in this session.
  PgResult Exec(const sql::Statement& statement, const std::vector<std::string>& params = {}) {
    if (!prepared_.contains(statement.name)) {
      Check(PgResult(PQprepare(conn_.get(), statement.name, statement.text, 0, nullptr)));
      prepared_.insert(statement.name);
    }
    std::vector<const char*> values;
    values.reserve(params.size());
    for (const auto& p : params) {
      values.push_back(p.c_str());
    }
    return Check(PgResult(PQexecPrepared(conn_.get(), statement.name, static_cast<int>(values.size()), values.data(),
                                         nullptr, nullptr, 0)));
  }

  // A statement without parameters that is not worth preparing (BEGIN, COMMIT).
  PgResult Exec(const char* sql, const std::vector<std::string>& params = {}) {
    std::vector<const char*> values;
    values.reserve(params.size());
    for (const auto& p : params) {
      values.push_back(p.c_str());
    }
    return Check(PgResult(PQexecParams(conn_.get(), sql, static_cast<int>(values.size()), nullptr, values.data(),
                                       nullptr, nullptr, 0)));
  }

 private:
  PgResult Check(PgResult res) const {
    const auto status = res ? PQresultStatus(res.get()) : PGRES_FATAL_ERROR;
    if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) {
      throw PgError(res ? Trim(PQresultErrorMessage(res.get())) : Message());
    }
    return res;
  }

  struct Finish {
    void operator()(PGconn* c) const { PQfinish(c); }
  };

  static std::string Conninfo(const config::PostgresConfig& pg) {
    // libpq waits forever on connect_timeout=0 and treats 1 as 2.
    const auto connect_s =
        std::max<long long>(2, std::chrono::duration_cast<std::chrono::seconds>(pg.connect_timeout).count());
    return config::PostgresConninfo(pg) + " application_name=vote-outbox-relay connect_timeout=" +
           std::to_string(connect_s) + " options='-c statement_timeout=" +
           std::to_string(pg.statement_timeout.count()) +
           // A relay commit lost in a crash only means those rows are published again, and
           // consumers drop duplicates by id: no need to wait for the WAL flush here.
           " -c synchronous_commit=off'";
  }

  static std::string Trim(std::string s) {
    while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) {
      s.pop_back();
    }
    return s;
  }

  std::string Message() const { return conn_ ? Trim(PQerrorMessage(conn_.get())) : "out of memory"; }

  std::unique_ptr<PGconn, Finish> conn_;
  std::set<std::string_view> prepared_;  // statement names (static strings)
};

// Publishes outbox rows with batched publisher confirms. A batch is deleted in an open
// transaction (FOR UPDATE SKIP LOCKED: relays of other instances take other rows) that commits
// once the broker confirmed every row. A crash or outage between publish and commit leaves the
// rows for the next attempt, which publishes them again with the same ids.
class Relay {
 public:
  // `fanout_up`: this instance's fan-out consumer is consuming (null when it does not run).
  Relay(const config::RabbitmqConfig& rabbit, const config::PostgresConfig& postgres, metrics::Metrics& metrics,
        Signals& signals, std::atomic<bool>& connected, const std::atomic<bool>* fanout_up)
      : rabbit_(rabbit),
        postgres_(postgres),
        metrics_(metrics),
        signals_(signals),
        connected_(connected),
        fanout_up_(fanout_up),
        batch_(std::max(1, rabbit.publish_batch)),
        published_(metrics.Events("published")),
        confirmed_(metrics.Events("confirmed")),
        failed_(metrics.Events("failed")) {}

  ~Relay() { connected_ = false; }

  void Run() {
    while (!signals_.Stopping()) {
      const auto now = Clock::now();
      if (!pg_ && now >= next_pg_) {
        ConnectPostgres();
      }
      if (!broker_ && now >= next_broker_) {
        ConnectBroker();
      }
      bool more = false;
      bool published_any = false;
      try {
        if (pg_ && now >= next_backlog_) {
          next_backlog_ = now + kBacklogInterval;
          UpdateBacklog();
        }
        if (pg_ && broker_ && FanOutReady()) {
          more = PublishBatch();
          published_any = true;
        }
        if (broker_) {
          broker_->Poll();
        }
      } catch (const PgError& e) {
        DropPostgres(e.what());
      } catch (const amqp::Error& e) {
        DropBroker(e.what());
      }
      if (more) {
        continue;
      }
      if (published_any) {
        // Under a steady stream of votes, let a few milliseconds of events gather instead of
        // paying a transaction and a confirm round per handful of rows.
        signals_.WaitUntil(Clock::now() + kGatherWindow, false);
      }
      const bool ready = pg_ && broker_;
      auto wake = Clock::now() + (ready ? std::chrono::duration_cast<Clock::duration>(rabbit_.relay_interval)
                                        : std::chrono::duration_cast<Clock::duration>(kBacklogInterval));
      if (!pg_) {
        wake = std::min(wake, next_pg_);
      }
      if (!broker_) {
        wake = std::min(wake, next_broker_);
      }
      signals_.WaitUntil(wake, ready);
    }
  }

 private:
  void ConnectPostgres() {
    try {
      pg_ = std::make_unique<PgSession>(postgres_);
      pg_outage_.Connected();
    } catch (const PgError& e) {
      DropPostgres(e.what());
    }
  }

  void DropPostgres(const std::string& why) {
    pg_.reset();
    pg_outage_.Failed(why);
    next_pg_ = Clock::now() + rabbit_.reconnect_interval;
  }

  void ConnectBroker() {
    try {
      auto conn = std::make_unique<amqp::Connection>(rabbit_, "vote outbox relay");
      DeclareTopology(*conn);
      conn->SelectConfirms();
      broker_ = std::move(conn);
      broker_since_ = Clock::now();
      connected_ = true;
      broker_outage_.Connected();
    } catch (const amqp::Error& e) {
      DropBroker(e.what());
    }
  }

  void DropBroker(const std::string& why) {
    broker_.reset();
    connected_ = false;
    broker_outage_.Failed(why);
    next_broker_ = Clock::now() + rabbit_.reconnect_interval;
  }


  // After (re)connecting, the relay gives this instance's fan-out queue up to a reconnect
  // interval to exist before publishing: what is published while it does not exist never reaches
  // this instance (the queue is exclusive, so it goes with its connection). A single instance
  // thus loses no event across a broker outage.
  bool FanOutReady() const {
    return fanout_up_ == nullptr || fanout_up_->load() || Clock::now() >= broker_since_ + rabbit_.reconnect_interval;
  }

  void UpdateBacklog() {
    const auto r = pg_->Exec(sql::kOutboxBacklog);
    metrics_.OutboxBacklog().Set(std::strtod(PQgetvalue(r.get(), 0, 0), nullptr));
    metrics_.OutboxOldestAge().Set(std::strtod(PQgetvalue(r.get(), 0, 1), nullptr));
  }

  // One batch in one transaction. True when it was full, so more rows are probably waiting.
  bool PublishBatch() {
    pg_->Exec("BEGIN");
    const auto taken = pg_->Exec(sql::kTakeOutboxBatch, {std::to_string(batch_)});
    const PGresult* rows = taken.get();
    const int n = PQntuples(rows);
    if (n == 0) {
      pg_->Exec("COMMIT");
      return false;
    }
    // DELETE ... RETURNING gives no order: publish oldest first.
    std::vector<int> order(static_cast<std::size_t>(n));
    std::iota(order.begin(), order.end(), 0);
    const auto id = [rows](int row) { return std::strtoll(PQgetvalue(rows, row, 0), nullptr, 10); };
    std::sort(order.begin(), order.end(), [&id](int a, int b) { return id(a) < id(b); });
    // Consecutive rows for one exchange go out as one envelope of up to kEventsPerMessage;
    // a message covers order[first, first + count).
    struct Message {
      int first;
      int count;
    };
    std::vector<Message> messages;
    for (int i = 0; i < n; ++i) {
      const auto exchange = ExchangeFor(Text(rows, order[i], 2));
      if (!messages.empty() && messages.back().count < kEventsPerMessage &&
          ExchangeFor(Text(rows, order[messages.back().first], 2)) == exchange) {
        ++messages.back().count;
      } else {
        messages.push_back({i, 1});
      }
    }
    std::vector<amqp::Confirm> states(messages.size(), amqp::Confirm::kPending);
    std::optional<std::string> broker_error;
    try {
      std::uint64_t first = 0;
      for (std::size_t m = 0; m < messages.size(); ++m) {
        const auto [begin, count] = messages[m];
        const int head = order[begin];
        const auto type = Text(rows, head, 2);
        amqp::Properties props{.message_id = std::string(Text(rows, head, 1)),
                               .type = std::string(type),
                               .timestamp = std::strtoll(PQgetvalue(rows, head, 4), nullptr, 10)};
        std::string body = count > 1 ? R"({"events":[)" : "";
        for (int i = begin; i < begin + count; ++i) {
          if (i > begin) {
            body += ',';
          }
          const int row = order[i];
          body += EncodeEvent(Text(rows, row, 1), Text(rows, row, 2), Text(rows, row, 4), Text(rows, row, 3));
        }
        if (count > 1) {
          body += "]}";
        }
        const auto seq = broker_->Publish(std::string(ExchangeFor(type)), props.type, props, body);
        if (m == 0) {
          first = seq;
        }
        published_.Increment(count);
      }
      const auto deadline = Clock::now() + kConfirmTimeout;
      bool settled = false;
      while (!settled && !signals_.Stopping() && Clock::now() < deadline) {
        settled = broker_->WaitConfirms(first, states, std::min(deadline, Clock::now() + kSlice));
      }
      if (!settled) {
        broker_error = signals_.Stopping() ? "stopped before the broker confirmed a batch"
                                           : "the broker did not confirm a batch in time";
      }
    } catch (const amqp::Error& e) {
      broker_error = e.what();
    }
    if (broker_error) {
      DropBroker(*broker_error);
    }

    std::string acked_ids = "{";
    int acked = 0;
    for (std::size_t m = 0; m < messages.size(); ++m) {
      if (states[m] != amqp::Confirm::kAck) {
        continue;
      }
      for (int i = messages[m].first; i < messages[m].first + messages[m].count; ++i) {
        if (acked++ > 0) {
          acked_ids += ',';
        }
        acked_ids += Text(rows, order[i], 0);
      }
    }
    acked_ids += '}';
    if (acked == n) {
      pg_->Exec("COMMIT");
    } else {
      // Some were not confirmed: every row comes back, then what the broker did confirm is
      // deleted after all (fewer duplicates later).
      pg_->Exec("ROLLBACK");
      if (acked > 0) {
        pg_->Exec(sql::kDeletePublished, {acked_ids});
      }
    }
    confirmed_.Increment(acked);
    const int failed = n - acked;
    if (failed > 0) {
      failed_.Increment(failed);
      spdlog::warn("events: {} of {} outbox events not confirmed by the broker; they will be published again",
                   failed, n);
    }
    return !broker_error && n == batch_ && failed == 0;
  }

  const config::RabbitmqConfig& rabbit_;
  const config::PostgresConfig& postgres_;
  metrics::Metrics& metrics_;
  Signals& signals_;
  std::atomic<bool>& connected_;
  const std::atomic<bool>* fanout_up_;
  const int batch_;
  prometheus::Counter& published_;
  prometheus::Counter& confirmed_;
  prometheus::Counter& failed_;
  std::unique_ptr<PgSession> pg_;
  std::unique_ptr<amqp::Connection> broker_;
  Outage pg_outage_{"PostgreSQL (outbox relay)"};
  Outage broker_outage_{"RabbitMQ (outbox relay)"};
  Clock::time_point next_pg_{};
  Clock::time_point next_broker_{};
  Clock::time_point next_backlog_{};
  Clock::time_point broker_since_{};
};

// This instance's view of every vote and feed event: an exclusive, auto-delete queue bound to
// both exchanges, handed to `on_event`. Events published while it is reconnecting are not seen
// (the queue goes with the connection).
class FanOut {
 public:
  FanOut(const config::RabbitmqConfig& rabbit, metrics::Metrics& metrics, Signals& signals,
         const EventBus::Handler& on_event, std::atomic<bool>& up)
      : rabbit_(rabbit), metrics_(metrics), signals_(signals), on_event_(on_event), up_(up) {}

  ~FanOut() { up_ = false; }

  void Run() {
    while (!signals_.Stopping()) {
      if (!broker_) {
        if (Clock::now() >= next_broker_) {
          Connect();
        }
        if (!broker_) {
          signals_.WaitUntil(next_broker_, false);
        }
        continue;
      }
      try {
        if (auto delivery = broker_->Next(kSlice)) {
          Handle(*delivery);
        }
      } catch (const amqp::Error& e) {
        Drop(e.what());
      }
    }
  }

 private:
  void Connect() {
    try {
      auto conn = std::make_unique<amqp::Connection>(rabbit_, "vote events fan-out");
      DeclareTopology(*conn);
      const auto queue = conn->DeclareExclusiveQueue();
      conn->Bind(queue, kVoteExchange, "#");
      conn->Bind(queue, kFeedExchange, "#");
      conn->Consume(queue, rabbit_.prefetch_count);
      broker_ = std::move(conn);
      up_ = true;
      outage_.Connected();
    } catch (const amqp::Error& e) {
      Drop(e.what());
    }
  }

  void Drop(const std::string& why) {
    broker_.reset();
    up_ = false;
    outage_.Failed(why);
    next_broker_ = Clock::now() + rabbit_.reconnect_interval;
  }

  void Handle(const amqp::Delivery& delivery) {
    auto events = DecodeEvents(delivery.body);
    if (!events) {
      spdlog::warn("events: dropping an undecodable message ({} bytes, routing key {})", delivery.body.size(),
                   delivery.routing_key);
      broker_->Reject(delivery.tag, false);
      return;
    }
    const auto now = UnixNow();
    for (auto& [event, at] : *events) {
      if (at) {
        metrics_.ConsumerLag().Set(static_cast<double>(std::max<std::int64_t>(0, now - *at)));
      }
      if (!recent_.Insert(event.id)) {
        spdlog::debug("events: dropping duplicate {} {}", event.type, event.id);
        continue;
      }
      try {
        on_event_(event);
      } catch (const std::exception& e) {
        spdlog::error("events: handler failed on {} {}: {}", event.type, event.id, e.what());
      }
      metrics_.EventsConsumed(event.type).Increment();
    }
    broker_->Ack(delivery.tag);
  }

  const config::RabbitmqConfig& rabbit_;
  metrics::Metrics& metrics_;
  Signals& signals_;
  const EventBus::Handler& on_event_;
  std::atomic<bool>& up_;
  std::unique_ptr<amqp::Connection> broker_;
  Outage outage_{"RabbitMQ (fan-out consumer)"};
  Clock::time_point next_broker_{};
  RecentIds recent_{kRecentIds};
};

// Redis is unreachable or timed out; the context is gone.
class RedisDown : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Redis answered with an error.
class RedisRefused : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

timeval ToTimeval(std::chrono::milliseconds d) {
  timeval tv{};
  tv.tv_sec = static_cast<decltype(tv.tv_sec)>(d.count() / 1000);
  tv.tv_usec = static_cast<decltype(tv.tv_usec)>((d.count() % 1000) * 1000);
  return tv;
}

// Hot polls in Redis, over a blocking hiredis context of the analytics thread: votes per poll in
// per-minute buckets poll:stats:hot:{unix minute}, and poll:stats:hot, their sum over the last
// hour (a sorted set: poll id -> votes), counted as votes arrive; buckets that leave the hour are
// taken out of it a chunk at a time (kAdvanceScript), by any instance.
class HotPolls {
 public:
  explicit HotPolls(const config::RedisConfig& config) : config_(config) {}

  bool Connected() const { return ctx_ != nullptr; }
  void Disconnect() { ctx_.reset(); }

  // Throws RedisDown.
  void Connect() {
    ctx_.reset(redisConnectWithTimeout(config_.host.c_str(), config_.port, ToTimeval(config_.connect_timeout)));
    if (!ctx_) {
      throw RedisDown("cannot allocate a Redis context");
    }
    if (ctx_->err != 0) {
      Down();
    }
    redisSetTimeout(ctx_.get(), ToTimeval(config_.command_timeout));
    try {
      if (!config_.password.empty()) {
        Pipeline({{"AUTH", config_.password}});
      }
      if (config_.db != 0) {
        Pipeline({{"SELECT", std::to_string(config_.db)}});
      }
    } catch (const RedisRefused& e) {
      ctx_.reset();
      throw RedisDown(e.what());
    }
  }

  // Adds votes per (unix minute, poll) to the minute buckets and to the hot set, in one script.
  // Throws RedisDown or RedisRefused.
  void CountVotes(const std::map<std::pair<std::int64_t, std::int64_t>, int>& votes) {
    if (votes.empty()) {
      return;
    }
    std::vector<std::string> command{"EVAL", kCountVotesScript, std::to_string(votes.size() + 1), kHotKey};
    for (const auto& [key, count] : votes) {
      command.push_back(BucketKey(key.first));
    }
    command.push_back(std::to_string(kHotTtlSeconds));
    for (const auto& [key, count] : votes) {
      command.push_back(std::to_string(count));
      command.push_back(std::to_string(key.second));
    }
    Pipeline({std::move(command)});
  }

  // Takes the minute buckets that left the last hour out of the hot set, a chunk per call (each
  // call is atomic and short). Any instance may run it at any time. Throws RedisDown or
  // RedisRefused.
  void Advance(std::int64_t unix_now) {
    const auto first = std::to_string(unix_now / 60 - kHotWindowMinutes + 1);
    const auto prefix = std::string(kHotKey) + ":";
    for (int call = 0; call < 100; ++call) {
      const auto left = Pipeline({{"EVAL", kAdvanceScript, "2", kHotKey, kHotOldestKey, first, prefix,
                                   std::to_string(kHotAdvanceChunk)}});
      if (left.front()->type != REDIS_REPLY_INTEGER || left.front()->integer == 0) {
        return;
      }
    }
  }

 private:
  struct Free {
    void operator()(redisContext* c) const { redisFree(c); }
    void operator()(redisReply* r) const { freeReplyObject(r); }
  };
  using ReplyPtr = std::unique_ptr<redisReply, Free>;

  static std::string BucketKey(std::int64_t minute) { return std::string(kHotKey) + ":" + std::to_string(minute); }

  [[noreturn]] void Down() {
    std::string error = ctx_ ? ctx_->errstr : "no connection";
    ctx_.reset();
    throw RedisDown(error);
  }

  // Sends the commands in one round trip; reads every reply before reporting an error one.
  std::vector<ReplyPtr> Pipeline(const std::vector<std::vector<std::string>>& commands) {
    if (!ctx_) {
      Down();
    }
    for (const auto& cmd : commands) {
      std::vector<const char*> argv;
      std::vector<std::size_t> lengths;
      for (const auto& arg : cmd) {
        argv.push_back(arg.data());
        lengths.push_back(arg.size());
      }
      if (redisAppendCommandArgv(ctx_.get(), static_cast<int>(argv.size()), argv.data(), lengths.data()) != REDIS_OK) {
        Down();
      }
    }
    std::vector<ReplyPtr> replies;
    std::string refused;
    for (std::size_t i = 0; i < commands.size(); ++i) {
      void* raw = nullptr;
      if (redisGetReply(ctx_.get(), &raw) != REDIS_OK || raw == nullptr) {
        Down();
      }
      ReplyPtr reply(static_cast<redisReply*>(raw));
      if (reply->type == REDIS_REPLY_ERROR && refused.empty()) {
        refused.assign(reply->str, reply->len);
      }
      replies.push_back(std::move(reply));
    }
    if (!refused.empty()) {
      throw RedisRefused(refused);
    }
    return replies;
  }

  const config::RedisConfig& config_;
  std::unique_ptr<redisContext, Free> ctx_;
};

// Consumes vote.analytics (competing consumers across instances) into HotPolls. It consumes only
// while Redis is up: losing Redis drops the broker connection too, which returns the unacked
// deliveries to the queue. A message that fails is republished with x-attempts + 1; at
// max_retries, or when it cannot be decoded, it is rejected and dead-letters to events.errors.
class Analytics {
 public:
  Analytics(const config::RabbitmqConfig& rabbit, const config::RedisConfig& redis, Signals& signals)
      : rabbit_(rabbit),
        redis_(redis),
        signals_(signals),
        max_retries_(std::max(1, rabbit.max_retries)),
        hot_(redis) {}

  void Run() {
    while (!signals_.Stopping()) {
      const auto now = Clock::now();
      try {
        if (!hot_.Connected() && now >= next_redis_) {
          ConnectRedis();
        }
        if (hot_.Connected() && now >= next_advance_) {
          next_advance_ = now + kHotAdvanceInterval;
          Advance();
        }
        if (hot_.Connected() && !broker_ && now >= next_broker_) {
          ConnectBroker();
        }
        if (broker_) {
          if (auto delivery = broker_->Next(kSlice)) {
            Process(*delivery);
          }
          continue;
        }
      } catch (const RedisDown& e) {
        DropRedis(e.what());
      } catch (const amqp::Error& e) {
        DropBroker(e.what());
      }
      // Not consuming: everything waits for Redis, or for the next window move or broker attempt.
      signals_.WaitUntil(hot_.Connected() ? std::min(next_advance_, next_broker_) : next_redis_, false);
    }
  }

 private:
  void ConnectRedis() {
    try {
      hot_.Connect();
      redis_outage_.Connected();
    } catch (const RedisDown& e) {
      DropRedis(e.what());
    }
  }

  void DropRedis(const std::string& why) {
    hot_.Disconnect();
    redis_outage_.Failed(why);
    next_redis_ = Clock::now() + redis_.reconnect_interval;
    if (broker_) {
      broker_.reset();
      next_broker_ = Clock::now();
    }
  }

  void ConnectBroker() {
    try {
      auto conn = std::make_unique<amqp::Connection>(rabbit_, "vote analytics");
      DeclareTopology(*conn);
      conn->Consume(kAnalyticsQueue, rabbit_.prefetch_count);
      broker_ = std::move(conn);
      broker_outage_.Connected();
    } catch (const amqp::Error& e) {
      DropBroker(e.what());
    }
  }

  void DropBroker(const std::string& why) {
    broker_.reset();
    broker_outage_.Failed(why);
    next_broker_ = Clock::now() + rabbit_.reconnect_interval;
  }

  void Advance() {
    try {
      hot_.Advance(UnixNow());
    } catch (const RedisRefused& e) {
      spdlog::warn("events: moving {} forward failed: {}", kHotKey, e.what());
    }
  }

  void Process(const amqp::Delivery& delivery) {
    const auto events = DecodeEvents(delivery.body);
    bool decodable = events.has_value();
    if (events) {
      for (const auto& [event, at] : *events) {
        decodable = decodable && (event.type != "vote.cast" || PollId(event.payload).has_value());
      }
    }
    if (!decodable) {
      spdlog::warn("events: undecodable message on {} ({} bytes) goes to {}", kAnalyticsQueue, delivery.body.size(),
                   kErrorQueue);
      broker_->Reject(delivery.tag, false);
      return;
    }
    // One Redis round trip per message: votes summed per (minute, poll). A failure retries the
    // whole message; events are remembered only once counted, so none counts twice.
    const auto now = UnixNow();
    std::map<std::pair<std::int64_t, std::int64_t>, int> counts;
    std::vector<std::string_view> counted;
    for (const auto& [event, at] : *events) {
      if (event.type != "vote.cast" || recent_.Contains(event.id)) {
        continue;
      }
      // Counted in the minute the vote was cast (the outbox row's time), not when it arrives.
      const auto cast_at = std::min(at.value_or(delivery.properties.timestamp.value_or(now)), now);
      // Only minutes still in the window: a bucket that has left it was taken out already.
      if (cast_at / 60 > now / 60 - kHotWindowMinutes) {
        ++counts[{cast_at / 60, *PollId(event.payload)}];
      }
      counted.push_back(event.id);
    }
    try {
      hot_.CountVotes(counts);
    } catch (const RedisRefused& e) {
      Retry(delivery, e.what());
      return;
    }
    for (const auto id : counted) {
      recent_.Insert(id);
    }
    broker_->Ack(delivery.tag);
  }

  // Classic queues do not count deliveries, so the count travels in a header of a new copy.
  void Retry(const amqp::Delivery& delivery, const std::string& error) {
    const int attempts = delivery.properties.attempts + 1;
    if (attempts >= max_retries_) {
      spdlog::warn("events: event {} failed {} times on {} ({}); it goes to {}", delivery.properties.message_id,
                   attempts, kAnalyticsQueue, error, kErrorQueue);
      broker_->Reject(delivery.tag, false);
      return;
    }
    spdlog::debug("events: event {} failed on {} ({}); retrying", delivery.properties.message_id, kAnalyticsQueue,
                  error);
    auto props = delivery.properties;
    props.attempts = attempts;
    broker_->Publish("", kAnalyticsQueue, props, delivery.body);
    broker_->Ack(delivery.tag);
  }

  const config::RabbitmqConfig& rabbit_;
  const config::RedisConfig& redis_;
  Signals& signals_;
  const int max_retries_;
  HotPolls hot_;
  std::unique_ptr<amqp::Connection> broker_;
  Outage redis_outage_{"Redis (analytics)"};
  Outage broker_outage_{"RabbitMQ (analytics consumer)"};
  Clock::time_point next_redis_{};
  Clock::time_point next_broker_{};
  Clock::time_point next_advance_{};
  RecentIds recent_{kRecentIds};
};

// Runs one worker on the calling thread until stop; an unexpected exception restarts it with
// fresh state after a pause instead of ending the thread (or the process).
template <typename MakeAndRun>
void Supervise(const char* name, Signals& signals, config::Duration backoff, MakeAndRun make_and_run) {
  while (!signals.Stopping()) {
    try {
      make_and_run();
      return;
    } catch (const std::exception& e) {
      spdlog::error("events: {} failed: {}; restarting", name, e.what());
    } catch (...) {
      spdlog::error("events: {} failed with an unknown exception; restarting", name);
    }
    signals.WaitUntil(Clock::now() + backoff, false);
  }
}

}  // namespace

struct EventBus::Impl {
  Impl(const config::Config& config, metrics::Metrics& metrics)
      : rabbit(config.rabbitmq), postgres(config.postgres), redis(config.redis), metrics(metrics) {}

  const config::RabbitmqConfig rabbit;
  const config::PostgresConfig postgres;
  const config::RedisConfig redis;
  metrics::Metrics& metrics;
  Handler on_event;
  Signals signals;
  std::atomic<bool> connected{false};
  std::atomic<bool> fanout_up{false};
  std::vector<std::thread> threads;
  std::mutex lifecycle;
};

EventBus::EventBus(const config::Config& config, metrics::Metrics& metrics)
    : impl_(std::make_unique<Impl>(config, metrics)) {}

EventBus::~EventBus() { Stop(); }

void EventBus::Start(Handler on_event) {
  std::lock_guard lock(impl_->lifecycle);
  if (!impl_->threads.empty() || impl_->signals.Stopping()) {
    return;  // started once per instance
  }
  auto* impl = impl_.get();
  impl->on_event = std::move(on_event);
  impl->threads.emplace_back([impl] {
    Supervise("outbox relay", impl->signals, impl->rabbit.reconnect_interval, [impl] {
      Relay(impl->rabbit, impl->postgres, impl->metrics, impl->signals, impl->connected,
            impl->on_event ? &impl->fanout_up : nullptr)
          .Run();
    });
  });
  if (impl->on_event) {
    impl->threads.emplace_back([impl] {
      Supervise("fan-out consumer", impl->signals, impl->rabbit.reconnect_interval,
                [impl] { FanOut(impl->rabbit, impl->metrics, impl->signals, impl->on_event, impl->fanout_up).Run(); });
    });
  }
  if (impl->rabbit.consumers) {
    impl->threads.emplace_back([impl] {
      Supervise("analytics consumer", impl->signals, impl->rabbit.reconnect_interval,
                [impl] { Analytics(impl->rabbit, impl->redis, impl->signals).Run(); });
    });
  }
  spdlog::info("events: started (relay{}{})", impl->on_event ? ", fan-out" : "",
               impl->rabbit.consumers ? ", analytics" : "");
}

void EventBus::Stop() {
  std::lock_guard lock(impl_->lifecycle);
  impl_->signals.Stop();
  for (auto& t : impl_->threads) {
    if (t.joinable()) {
      t.join();
    }
  }
  impl_->threads.clear();
}

void EventBus::NotifyOutbox() { impl_->signals.NotifyOutbox(); }

bool EventBus::Connected() const { return impl_->connected.load(); }

}  // namespace vote::events
