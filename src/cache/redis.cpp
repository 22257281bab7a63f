#include "cache/redis.hpp"

#include <hiredis/async.h>
#include <spdlog/spdlog.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <atomic>
#include <cstdint>
#include <optional>
#include <unordered_map>
#include <utility>

namespace vote::cache {
namespace {

Reply Copy(const redisReply& r) {
  Reply out;
  switch (r.type) {
    case REDIS_REPLY_STRING:
      out.type = Reply::Type::kString;
      out.str.assign(r.str, r.len);
      break;
    case REDIS_REPLY_STATUS:
      out.type = Reply::Type::kStatus;
      out.str.assign(r.str, r.len);
      break;
    case REDIS_REPLY_ERROR:
      out.type = Reply::Type::kError;
      out.str.assign(r.str, r.len);
      break;
    case REDIS_REPLY_INTEGER:
      out.type = Reply::Type::kInteger;
      out.integer = r.integer;
      break;
    case REDIS_REPLY_ARRAY:
      out.type = Reply::Type::kArray;
      out.elements.reserve(r.elements);
      for (std::size_t i = 0; i < r.elements; ++i) out.elements.push_back(Copy(*r.element[i]));
      break;
    default:
      break;
  }
  return out;
}

// One exchange with hiredis (a command, or the connect). hiredis' callback records the outcome
// and cancels the timer; the waiting coroutine wakes then, or when the timer expires.
struct Waiter {
  explicit Waiter(const asio::any_io_executor& ex) : timer(ex) {}
  void Finish() {
    done = true;
    timer.cancel();
  }

  asio::steady_timer timer;
  bool done = false;
  bool ok = false;
  std::optional<Reply> reply;
  std::string error;
};

// hiredis' event hooks for one context, served by Asio: hiredis says when it wants to read or
// write, Asio waits until the descriptor is ready and hands control back to hiredis. Interest
// stays on until hiredis withdraws it, as hiredis expects of an event library.
class Watcher : public std::enable_shared_from_this<Watcher> {
 public:
  Watcher(const asio::any_io_executor& ex, redisAsyncContext* ac) : ac_(ac), socket_(ex, ac->c.fd) {}

  ~Watcher() {
    // hiredis owns the descriptor and closes it itself.
    if (socket_.is_open()) socket_.release();
  }

  // The context must be freed (hiredis then calls cleanup) before the watcher goes away.
  void Attach() {
    ac_->ev.data = this;
    ac_->ev.addRead = [](void* self) { static_cast<Watcher*>(self)->Want(kRead, true); };
    ac_->ev.delRead = [](void* self) { static_cast<Watcher*>(self)->Want(kRead, false); };
    ac_->ev.addWrite = [](void* self) { static_cast<Watcher*>(self)->Want(kWrite, true); };
    ac_->ev.delWrite = [](void* self) { static_cast<Watcher*>(self)->Want(kWrite, false); };
    ac_->ev.cleanup = [](void* self) { static_cast<Watcher*>(self)->Detach(); };
  }

 private:
  enum Direction { kRead = 0, kWrite = 1 };

  void Want(Direction dir, bool on) {
    want_[dir] = on;
    if (on) Arm(dir);
  }

  // Called by hiredis while it frees the context, before it closes the descriptor: the
  // descriptor leaves the reactor and every later event is ignored.
  void Detach() {
    ac_ = nullptr;
    want_[kRead] = want_[kWrite] = false;
    if (socket_.is_open()) socket_.release();
  }

  void Arm(Direction dir) {
    if (ac_ == nullptr || !want_[dir] || waiting_[dir]) return;
    waiting_[dir] = true;
    const auto type = dir == kRead ? asio::posix::descriptor_base::wait_read : asio::posix::descriptor_base::wait_write;
    // The handler keeps the watcher alive: hiredis may free the context (and call Detach) from
    // within redisAsyncHandleRead/Write.
    socket_.async_wait(type, [self = shared_from_this(), dir](const boost::system::error_code& ec) {
      self->waiting_[dir] = false;
      if (ec || self->ac_ == nullptr || !self->want_[dir]) return;
      if (dir == kRead) {
        redisAsyncHandleRead(self->ac_);
      } else {
        redisAsyncHandleWrite(self->ac_);
      }
      self->Arm(dir);
    });
  }

  redisAsyncContext* ac_;
  asio::posix::stream_descriptor socket_;
  bool want_[2] = {false, false};
  bool waiting_[2] = {false, false};
};

// Runs `op` on the connection's executor, which owns hiredis and all connection state.
template <typename T>
asio::awaitable<T> OnExecutor(asio::any_io_executor ex, asio::awaitable<T> op) {
  const auto current = co_await asio::this_coro::executor;
  if (current == ex) co_return co_await std::move(op);
  co_return co_await asio::co_spawn(ex, std::move(op), asio::use_awaitable);
}

std::vector<std::string> EvalshaCommand(const std::string& sha, const std::vector<std::string>& keys,
                                        const std::vector<std::string>& args) {
  std::vector<std::string> command{"EVALSHA", sha, std::to_string(keys.size())};
  command.insert(command.end(), keys.begin(), keys.end());
  command.insert(command.end(), args.begin(), args.end());
  return command;
}

}  // namespace

// Everything here runs on `ex`. hiredis frees a context by itself when the connection fails;
// `ac` is cleared in the callbacks that announce it, so it never points at freed memory.
struct Redis::Impl {
  Impl(asio::any_io_executor executor, config::RedisConfig cfg)
      : ex(std::move(executor)), config(std::move(cfg)), wake(ex) {}
  ~Impl() { Drop("client destroyed"); }

  static asio::awaitable<void> Run(std::shared_ptr<Impl> self);
  asio::awaitable<std::string> Resolve();
  asio::awaitable<void> Connect();
  asio::awaitable<Reply> Call(std::vector<std::string> args, bool setup = false);
  asio::awaitable<std::string> Load(const std::string& script);
  asio::awaitable<Reply> Eval(std::string script, std::vector<std::string> keys, std::vector<std::string> args);
  void Drop(const std::string& reason);

  static void OnConnect(const redisAsyncContext* c, int status);
  static void OnDisconnect(const redisAsyncContext* c, int status);
  static void OnReply(redisAsyncContext* c, void* reply, void* privdata);

  asio::any_io_executor ex;
  config::RedisConfig config;
  asio::steady_timer wake;  // the connection loop sleeps here; cancelled when the connection drops
  redisAsyncContext* ac = nullptr;
  std::shared_ptr<Watcher> watcher;
  std::shared_ptr<Waiter> connecting;
  std::uint64_t generation = 0;  // counts contexts, so a late timeout cannot drop a newer one
  std::atomic<bool> ready{false};  // connected, authenticated, database selected
  bool started = false;
  bool running = false;
  std::string last_error;
  std::unordered_map<std::string, std::string> shas;  // script text -> SHA1 the server knows
};

void Redis::Impl::OnConnect(const redisAsyncContext* c, int status) {
  auto* self = static_cast<Impl*>(c->data);
  if (status != REDIS_OK && self->ac == c) self->ac = nullptr;  // hiredis frees it on return
  if (auto waiter = self->connecting) {
    waiter->ok = status == REDIS_OK;
    if (!waiter->ok) waiter->error = c->errstr[0] != '\0' ? c->errstr : "connect failed";
    waiter->Finish();
  }
}

void Redis::Impl::OnDisconnect(const redisAsyncContext* c, int status) {
  auto* self = static_cast<Impl*>(c->data);
  if (self->ac != c) return;  // we dropped it ourselves
  self->ac = nullptr;  // hiredis frees it on return
  self->ready = false;
  self->last_error = status == REDIS_OK ? "closed" : (c->errstr[0] != '\0' ? c->errstr : "connection error");
  self->wake.cancel();
}

void Redis::Impl::OnReply(redisAsyncContext* c, void* reply, void* privdata) {
  const std::unique_ptr<std::shared_ptr<Waiter>> holder(static_cast<std::shared_ptr<Waiter>*>(privdata));
  Waiter& waiter = **holder;
  if (reply != nullptr) {
    waiter.reply = Copy(*static_cast<const redisReply*>(reply));
    waiter.ok = true;
  } else {
    // hiredis answers every pending command with NULL when the context goes away.
    waiter.error = c->err != 0 && c->errstr[0] != '\0' ? c->errstr : "connection closed";
  }
  waiter.Finish();
}

void Redis::Impl::Drop(const std::string& reason) {
  ready = false;
  if (connecting && !connecting->done) {
    connecting->error = reason;
    connecting->Finish();
  }
  if (ac != nullptr) {
    last_error = reason;
    auto* c = std::exchange(ac, nullptr);
    const auto keep = watcher;  // hiredis calls its cleanup hook from within redisAsyncFree
    redisAsyncFree(c);  // answers every pending command with NULL
  }
  wake.cancel();
}

asio::awaitable<std::string> Redis::Impl::Resolve() {
  boost::system::error_code ec;
  (void)asio::ip::make_address(config.host, ec);
  if (!ec) co_return config.host;
  // hiredis would resolve a host name with a blocking getaddrinfo; Asio's resolver does not block.
  asio::ip::tcp::resolver resolver(ex);
  const auto port = std::to_string(config.port);
  const auto results = co_await resolver.async_resolve(config.host, port, asio::redirect_error(asio::use_awaitable, ec));
  if (ec || results.empty()) throw RedisError("cannot resolve " + config.host + ": " + ec.message());
  co_return results.begin()->endpoint().address().to_string();
}

asio::awaitable<void> Redis::Impl::Connect() {
  const auto address = co_await Resolve();
  if (!running) throw RedisError("stopped");
  redisAsyncContext* c = redisAsyncConnect(address.c_str(), config.port);  // non-blocking for an address
  if (c == nullptr) throw RedisError("cannot allocate a connection");
  if (c->err != 0) {
    const std::string message = c->errstr;
    redisAsyncFree(c);
    throw RedisError(message);
  }
  try {
    watcher = std::make_shared<Watcher>(ex, c);
  } catch (const boost::system::system_error& e) {
    redisAsyncFree(c);
    throw RedisError(e.what());
  }
  ac = c;
  ++generation;
  c->data = this;
  watcher->Attach();
  redisAsyncSetDisconnectCallback(c, &OnDisconnect);
  auto waiter = std::make_shared<Waiter>(ex);
  connecting = waiter;
  redisAsyncSetConnectCallback(c, &OnConnect);  // waits for the descriptor to become writable

  waiter->timer.expires_after(config.connect_timeout);
  boost::system::error_code ec;
  if (!waiter->done) co_await waiter->timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  connecting.reset();
  if (!waiter->done) {
    Drop("connect timed out");
    throw RedisError("connect timed out");
  }
  if (!waiter->ok) throw RedisError(waiter->error);

  // The connection counts as up only after a round trip: a server that accepts connections but
  // does not answer (paused, overloaded) stays down, so commands fail at once instead of each
  // waiting for its timeout.
  std::vector<std::vector<std::string>> setup;
  if (!config.password.empty()) setup.push_back({"AUTH", config.password});
  if (config.db != 0) setup.push_back({"SELECT", std::to_string(config.db)});
  setup.push_back({"PING"});
  for (auto& command : setup) {
    const auto name = command.front();
    const auto reply = co_await Call(std::move(command), true);
    if (reply.type == Reply::Type::kError) {
      Drop(name + " failed");
      throw RedisError(name + ": " + reply.str);
    }
  }
  ready = true;
}

asio::awaitable<void> Redis::Impl::Run(std::shared_ptr<Impl> self) {
  const auto& cfg = self->config;
  bool failing = false;
  while (self->running) {
    std::string failure;
    try {
      co_await self->Connect();
    } catch (const std::exception& e) {
      failure = e.what();
    }
    if (!self->running) break;
    boost::system::error_code ec;
    if (failure.empty()) {
      spdlog::info("redis: connected to {}:{}", cfg.host, cfg.port);
      failing = false;
      while (self->running && self->ready) {
        self->wake.expires_at(asio::steady_timer::time_point::max());
        co_await self->wake.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      }
      if (!self->running) break;
      spdlog::warn("redis: connection to {}:{} lost: {}; reconnecting every {} ms", cfg.host, cfg.port,
                   self->last_error, cfg.reconnect_interval.count());
    } else if (!failing) {
      failing = true;
      spdlog::warn("redis: cannot connect to {}:{}: {}; retrying every {} ms", cfg.host, cfg.port, failure,
                   cfg.reconnect_interval.count());
    }
    self->wake.expires_after(cfg.reconnect_interval);
    co_await self->wake.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  }
}

asio::awaitable<Reply> Redis::Impl::Call(std::vector<std::string> args, bool setup) {
  if (ac == nullptr || (!setup && !ready)) throw RedisError("redis: not connected");
  if (args.empty()) throw RedisError("redis: empty command");
  std::vector<const char*> argv;
  std::vector<std::size_t> lengths;
  argv.reserve(args.size());
  lengths.reserve(args.size());
  for (const auto& arg : args) {
    argv.push_back(arg.data());
    lengths.push_back(arg.size());
  }
  auto waiter = std::make_shared<Waiter>(ex);
  auto holder = std::make_unique<std::shared_ptr<Waiter>>(waiter);
  if (redisAsyncCommandArgv(ac, &OnReply, holder.get(), static_cast<int>(argv.size()), argv.data(), lengths.data()) !=
      REDIS_OK) {
    throw RedisError("redis: cannot send the command");
  }
  (void)holder.release();  // hiredis hands it back to OnReply exactly once
  const auto sent_on = generation;

  waiter->timer.expires_after(config.command_timeout);
  boost::system::error_code ec;
  if (!waiter->done) co_await waiter->timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  if (waiter->ok) co_return std::move(*waiter->reply);
  if (waiter->done) throw RedisError("redis: " + waiter->error);
  // Cancelled by the caller: the reply will still arrive and be discarded.
  if (ec) throw RedisError("redis: command cancelled");
  // Replies come in order, so one that is late leaves every later one late too: start afresh.
  if (sent_on == generation && ac != nullptr) {
    spdlog::warn("redis: {} timed out after {} ms; reconnecting", args.front(), config.command_timeout.count());
    Drop("command timed out");
  }
  throw RedisError("redis: command timed out");
}

asio::awaitable<std::string> Redis::Impl::Load(const std::string& script) {
  std::vector<std::string> command{"SCRIPT", "LOAD", script};
  auto reply = co_await Call(std::move(command));
  if (reply.type != Reply::Type::kString) throw RedisError("SCRIPT LOAD: " + reply.str);
  shas[script] = reply.str;
  co_return reply.str;
}

asio::awaitable<Reply> Redis::Impl::Eval(std::string script, std::vector<std::string> keys,
                                         std::vector<std::string> args) {
  std::string sha;
  if (const auto known = shas.find(script); known != shas.end()) sha = known->second;
  if (sha.empty()) sha = co_await Load(script);
  auto command = EvalshaCommand(sha, keys, args);
  auto reply = co_await Call(std::move(command));
  if (reply.type != Reply::Type::kError || !reply.str.starts_with("NOSCRIPT")) co_return reply;
  // The server lost its script cache (restart, SCRIPT FLUSH, failover).
  sha = co_await Load(script);
  auto retry = EvalshaCommand(sha, keys, args);
  co_return co_await Call(std::move(retry));
}

Redis::Redis(asio::any_io_executor ex, config::RedisConfig config)
    : impl_(std::make_shared<Impl>(std::move(ex), std::move(config))) {}

Redis::~Redis() { Stop(); }

void Redis::Start() {
  if (impl_->started) return;
  impl_->started = true;
  impl_->running = true;
  asio::co_spawn(impl_->ex, Impl::Run(impl_), asio::detached);
}

void Redis::Stop() {
  impl_->running = false;
  impl_->Drop("stopped");
}

bool Redis::Connected() const { return impl_->ready; }

asio::awaitable<Reply> Redis::Command(std::vector<std::string> args) {
  const auto impl = impl_;
  auto op = impl->Call(std::move(args));
  auto reply = co_await OnExecutor(impl->ex, std::move(op));
  if (reply.type == Reply::Type::kError) throw RedisError(reply.str);
  co_return reply;
}

asio::awaitable<Reply> Redis::Eval(const std::string& script, std::vector<std::string> keys,
                                   std::vector<std::string> args) {
  const auto impl = impl_;
  auto op = impl->Eval(script, std::move(keys), std::move(args));
  auto reply = co_await OnExecutor(impl->ex, std::move(op));
  if (reply.type == Reply::Type::kError) throw RedisError(reply.str);
  co_return reply;
}

}  // namespace vote::cache
