#include "app.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <spdlog/spdlog.h>

#include <fstream>
#include <mutex>
#include <random>
#include <thread>

#include "api/routes.hpp"
#include "api/services.hpp"
#include "cache/redis.hpp"
#include "domain/token.hpp"
#include "events/event_bus.hpp"
#include "http/pipeline.hpp"
#include "http/server.hpp"
#include "log.hpp"
#include "metrics/metrics.hpp"
#include "realtime/ws_hub.hpp"
#include "services/auth_service.hpp"
#include "services/feed_service.hpp"
#include "services/idempotency.hpp"
#include "services/password_hasher.hpp"
#include "services/poll_service.hpp"
#include "services/rate_limiter.hpp"
#include "services/stats_cache.hpp"
#include "services/vote_service.hpp"
#include "storage/pg.hpp"

namespace vote {
namespace {

namespace asio = boost::asio;
namespace json = boost::json;
using asio::use_awaitable;

// Connections of the event loops and of the vote writer: statement_timeout bounds every
// statement; `more_options` adds further `-c name=value` settings.
std::string PoolConninfo(const config::PostgresConfig& pg, const std::string& more_options = {}) {
  return config::PostgresConninfo(pg) + " options='-c statement_timeout=" + std::to_string(pg.statement_timeout.count()) +
         (more_options.empty() ? "" : " " + more_options) + "'";
}

storage::PoolLimits PoolLimitsOf(const config::PostgresConfig& pg, int size) {
  // A statement gets statement_timeout inside PostgreSQL; the client waits 2 s more for its
  // answer (or the error) before it takes the server for gone.
  return {size, pg.connect_timeout, pg.statement_timeout + std::chrono::seconds(2), pg.acquire_timeout,
          static_cast<std::size_t>(pg.max_waiters)};
}

// The instance's clock: the system's, ahead by server.clock_offset (tests of clock skew).
domain::Clock InstanceClock(const config::Config& config) {
  const auto offset = config.server.clock_offset;
  if (offset.count() == 0) return domain::SystemClock();
  return [offset] { return std::chrono::system_clock::now() + offset; };
}

int ThreadCount(const config::Config& config) {
  if (config.server.threads > 0) return config.server.threads;
  return static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
}

}  // namespace

// Process-wide state, shared by every event-loop thread.
struct App::Shared : services::AnswerListener, services::PollCreatedListener {
  explicit Shared(const config::Config& c)
      : config(c),
        tokens(c.jwt.secret_key, std::chrono::duration_cast<std::chrono::seconds>(c.jwt.token_duration), c.jwt.issuer,
               InstanceClock(c)),
        hasher(c.auth),
        limiter_fallback(InstanceClock(c)),
        // Counter shards start at a random place per instance, so instances spread over them.
        votes(c.votes.batches_in_flight, static_cast<int>(std::random_device{}() % 1024)),
        feed(c.feed),
        bus(c, metrics),
        site(c.server.web_root) {}

  void OnAnswered(std::int64_t user_id, std::int64_t poll_id, std::int64_t seq) override {
    feed.MarkAnswered(user_id, poll_id, seq);
    bus.NotifyOutbox();
  }
  void OnPollCreated(const domain::Poll& poll) override {
    feed.AddPoll(poll);
    bus.NotifyOutbox();
  }

  const config::Config& config;
  metrics::Metrics metrics;
  domain::TokenCodec tokens;
  services::PasswordHasher hasher;
  services::LocalRateLimiter limiter_fallback;
  services::VoteQueue votes;
  services::FeedState feed;
  events::EventBus bus;
  http::StaticSite site;
  std::atomic<bool> stopping{false};
};

// Everything one event-loop thread owns.
struct App::Worker : api::Readiness {
  Worker(Shared& s, int threads)
      : shared(s),
        pg(ioc.get_executor(), PoolConninfo(s.config.postgres),
           PoolLimitsOf(s.config.postgres, std::max(1, s.config.postgres.max_connections / threads))),
        redis(ioc.get_executor(), s.config.redis),
        feed(pg, s.feed, s.config.feed, s.metrics, s.config.jwt.secret_key),
        stats(pg, redis, s.config.redis, s.metrics),
        polls(pg, feed, stats, redis, s, s.metrics, s.config.jwt.secret_key),
        votes(pg, stats, s, s.votes, s.config, s.metrics, InstanceClock(s.config)),
        auth(pg, s.hasher, s.tokens, s.config, s.metrics, InstanceClock(s.config)),
        idempotency(pg, s.config.votes),
        limiter(redis, s.limiter_fallback, s.config.ratelimit, s.metrics, InstanceClock(s.config)),
        tickets(redis, std::chrono::duration_cast<std::chrono::seconds>(s.config.server.ws_ticket_ttl)),
        hub(ioc, s.metrics, [this](std::int64_t id) { return StatsJson(id); }),
        services{s.config, auth, polls, votes, feed, idempotency, tickets, *this},
        router(api::MakeRouter(services)),
        pipeline(router, s.tokens, limiter, tickets, s.site, [this](std::int64_t id) { return auth.Exists(id); },
                 s.metrics, s.config),
        server(ioc,
               http::ServerOptions{s.config.server.idle_timeout, s.config.server.read_timeout,
                                   static_cast<std::uint64_t>(s.config.server.max_body_bytes),
                                   static_cast<std::uint32_t>(s.config.server.max_header_bytes)},
               [this](http::Request& r) { return pipeline.Handle(r); },
               [this](http::Request&& r, asio::ip::tcp::socket&& sock, boost::beast::flat_buffer&& buf) {
                 const auto user = *r.user_id;
                 hub.Accept(std::move(r), std::move(sock), std::move(buf), user);
               }) {}

  asio::awaitable<std::optional<json::object>> StatsJson(std::int64_t poll_id) {
    auto result = co_await stats.Get(poll_id);
    if (!result) co_return std::nullopt;
    co_return domain::ToJson(*result);
  }

  asio::awaitable<Report> Check() override {
    Report report;
    try {
      co_await pg.Execute(sql::kPing, storage::Params{});
      report.postgres = true;
    } catch (const std::exception&) {
    }
    if (redis.Connected()) {
      try {
        std::vector<std::string> ping{"PING"};
        co_await redis.Command(std::move(ping));
        report.redis = true;
      } catch (const std::exception&) {
      }
    }
    report.rabbitmq = shared.bus.Connected();
    shared.metrics.Dependency("postgres").Set(report.postgres);
    shared.metrics.Dependency("redis").Set(report.redis);
    shared.metrics.Dependency("rabbitmq").Set(report.rabbitmq);
    co_return report;
  }

  std::string MetricsText() override {
    const auto pool = pg.Stats();
    shared.metrics.PoolGauge("postgres", "size").Set(pool.size);
    shared.metrics.PoolGauge("postgres", "idle").Set(pool.idle);
    shared.metrics.PoolGauge("postgres", "waiting").Set(pool.waiting);
    shared.metrics.PoolGauge("redis", "connected").Set(redis.Connected() ? 1 : 0);
    return shared.metrics.Serialize();
  }

  // A poll's counts changed (called from the event consumer's thread). Votes arriving while a
  // hand-over is pending ride along with it: one wake-up of this loop per burst, not per vote.
  void QueueVote(std::int64_t poll_id) {
    std::lock_guard lock(changed_mutex);
    changed_polls.push_back(poll_id);
    if (changed_scheduled) return;
    changed_scheduled = true;
    asio::post(ioc, [this] {
      std::vector<std::int64_t> polls;
      {
        std::lock_guard inner(changed_mutex);
        polls.swap(changed_polls);
        changed_scheduled = false;
      }
      for (const auto id : polls) hub.OnVote(id);
    });
  }

  // Accepts connections once this thread's Redis client is connected, or after
  // redis.connect_timeout: a first request must not find the rate limiter on its per-instance
  // fallback only because the process has just started.
  asio::awaitable<void> StartServing() {
    asio::steady_timer wait(ioc);
    const auto deadline = std::chrono::steady_clock::now() + shared.config.redis.connect_timeout;
    while (!redis.Connected() && std::chrono::steady_clock::now() < deadline) {
      wait.expires_after(std::chrono::milliseconds(5));
      co_await wait.async_wait(use_awaitable);
    }
    if (!shared.stopping) server.Start();
  }

  // Periodic work of this thread; ends when the app stops.
  asio::awaitable<void> Background(bool refresh_feed) {
    auto& timer = background_timer;
    auto last_purge = std::chrono::steady_clock::now();
    while (!shared.stopping) {
      timer.expires_after(shared.config.feed.refresh_interval);
      boost::system::error_code ec;
      co_await timer.async_wait(asio::redirect_error(use_awaitable, ec));
      if (shared.stopping) break;
      try {
        co_await stats.CatchUp();
        if (refresh_feed) co_await feed.Refresh();
        if (refresh_feed && std::chrono::steady_clock::now() - last_purge > std::chrono::minutes(1)) {
          last_purge = std::chrono::steady_clock::now();
          co_await pg.Execute(sql::kPurgeIdempotency, storage::Params{});
        }
      } catch (const std::exception& e) {
        spdlog::warn("background refresh failed: {}", e.what());
      }
    }
  }

  Shared& shared;
  asio::io_context ioc{1};
  storage::Pool pg;
  cache::Redis redis;
  services::FeedService feed;
  services::StatsCache stats;
  services::PollService polls;
  services::VoteService votes;
  services::AuthService auth;
  services::IdempotencyStore idempotency;
  services::RateLimiter limiter;
  services::WsTickets tickets;
  realtime::WsHub hub;
  api::Services services;
  http::Router router;
  http::Pipeline pipeline;
  http::Server server;
  asio::steady_timer background_timer{ioc};  // cancelled at shutdown
  std::mutex changed_mutex;
  std::vector<std::int64_t> changed_polls;
  bool changed_scheduled = false;
  std::thread thread;
};

App::App(config::Config config, Mode mode) : config_(std::move(config)), mode_(mode) {
  SetUpLogging(config_.server.log_level);
  shared_ = std::make_unique<Shared>(config_);
}

App::~App() = default;

int App::RunWorkerOnly() {
  asio::io_context ioc{1};
  asio::signal_set signals(ioc, SIGINT, SIGTERM);
  shared_->bus.Start({});
  signals.async_wait([](const boost::system::error_code&, int) {});
  spdlog::info("worker running: outbox relay and event consumers");
  ioc.run();
  shared_->bus.Stop();
  return 0;
}

int App::Run() {
  if (mode_ == Mode::kWorker) return RunWorkerOnly();
  // Binding comes before any thread starts: an exception after that would have to stop them.
  auto address = asio::ip::make_address(config_.server.host);
  unsigned short port = static_cast<unsigned short>(config_.server.port);
  http::EnsurePortFree({address, port});

  const int threads = ThreadCount(config_);
  for (int i = 0; i < threads; ++i) workers_.push_back(std::make_unique<Worker>(*shared_, threads));
  // Listen on every thread; the first bind picks the port when 0 was asked for.
  for (auto& w : workers_) port = w->server.Listen({address, port});

  // Vote groups are written from a thread of their own (services::VoteQueue::UseWriter), over
  // one connection of their own. Its two statements (and those inside cast_votes()) take their
  // generic plan from the first run: left to choose, PostgreSQL planned the counts read of a
  // group afresh on every run (a custom plan for each array of poll ids, 0.17 ms of the
  // database's time per group) to arrive at the same plan.
  asio::io_context vote_ioc(1);
  auto vote_work = asio::make_work_guard(vote_ioc);
  storage::Pool vote_pool(vote_ioc.get_executor(),
                          PoolConninfo(config_.postgres, "-c plan_cache_mode=force_generic_plan"),
                          PoolLimitsOf(config_.postgres, config_.votes.batches_in_flight));
  shared_->votes.UseWriter(vote_ioc.get_executor(), vote_pool);
  std::thread vote_thread([&vote_ioc] { vote_ioc.run(); });

  if (!config_.server.port_file.empty()) {
    std::ofstream(config_.server.port_file) << port << "\n";
  }

  // Load the feed index before taking traffic, so the first feed is complete.
  {
    auto& first = *workers_.front();
    std::exception_ptr failure;
    asio::co_spawn(first.ioc, first.feed.Refresh(), [&failure](std::exception_ptr e) { failure = e; });
    first.ioc.run();
    first.ioc.restart();
    if (failure) {
      try {
        std::rethrow_exception(failure);
      } catch (const std::exception& e) {
        spdlog::warn("feed index not loaded at start ({}); it will load in the background", e.what());
      }
    }
  }

  // Events from every instance (including this one) reach every thread.
  events::EventBus::Handler on_event;
  if (config_.rabbitmq.consumers) {
    on_event = [this](const events::Event& event) {
      const auto poll_id = event.payload.contains("pollId") && event.payload.at("pollId").is_int64()
                               ? event.payload.at("pollId").as_int64()
                               : 0;
      const auto user_id = event.payload.contains("userId") && event.payload.at("userId").is_int64()
                               ? event.payload.at("userId").as_int64()
                               : 0;
      if (event.type == "vote.cast" || event.type == "poll.skipped") {
        const auto* seq = event.payload.if_contains("seq");
        if (user_id > 0 && poll_id > 0) {
          shared_->feed.MarkAnswered(user_id, poll_id, seq != nullptr && seq->is_int64() ? seq->as_int64() : 0);
        }
        if (event.type == "vote.cast") {
          for (auto& w : workers_) w->QueueVote(poll_id);
        }
      } else if (event.type == "poll.created" && poll_id > 0) {
        domain::Poll poll;
        poll.id = poll_id;
        try {
          poll.title = std::string(event.payload.at("title").as_string());
          for (const auto& o : event.payload.at("options").as_array()) poll.options.emplace_back(o.as_string());
          for (const auto& t : event.payload.at("tags").as_array()) poll.tags.emplace_back(t.as_string());
          poll.creator_id = event.payload.at("creatorId").as_int64();
          poll.created_at = std::string(event.payload.at("createdAt").as_string());
        } catch (const std::exception&) {
          return;
        }
        shared_->feed.AddPoll(poll);
        const auto body = domain::ToJson(poll);
        for (auto& w : workers_) asio::post(w->ioc, [w = w.get(), body] { w->hub.OnPollCreated(body); });
      }
    };
  }
  shared_->bus.Start(on_event);

  for (std::size_t i = 0; i < workers_.size(); ++i) {
    auto& w = *workers_[i];
    w.redis.Start();
    asio::co_spawn(w.ioc, w.StartServing(), asio::detached);
    asio::co_spawn(w.ioc, w.Background(i == 0), asio::detached);
  }

  // Graceful shutdown: stop accepting, let in-flight requests finish (bounded), then close.
  auto& main = *workers_.front();
  asio::signal_set signals(main.ioc, SIGINT, SIGTERM);
  signals.async_wait([this](const boost::system::error_code& ec, int signal) {
    if (ec) return;
    spdlog::info("signal {}: shutting down", signal);
    shared_->stopping = true;
    for (auto& w : workers_) {
      asio::post(w->ioc, [w = w.get()] { w->server.BeginShutdown(); });
    }
    std::thread([this] {
      const auto deadline = std::chrono::steady_clock::now() + config_.server.shutdown_timeout;
      while (std::chrono::steady_clock::now() < deadline) {
        std::size_t open = 0;
        for (auto& w : workers_) open += w->server.Connections();
        if (open == 0) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
      for (auto& w : workers_) {
        asio::post(w->ioc, [w = w.get()] {
          w->server.ForceClose();
          w->background_timer.cancel();
          w->hub.Shutdown();
          w->redis.Stop();
        });
      }
    }).detach();
  });

  spdlog::info("listening on {}:{} with {} threads", config_.server.host, port, threads);
  for (std::size_t i = 1; i < workers_.size(); ++i) {
    auto* w = workers_[i].get();
    w->thread = std::thread([w] { w->ioc.run(); });
  }
  main.ioc.run();
  for (std::size_t i = 1; i < workers_.size(); ++i) workers_[i]->thread.join();
  // The writer's last group finishes on its own (statement_timeout bounds it); its coroutine
  // must not be destroyed halfway, holding a connection of vote_pool.
  vote_work.reset();
  vote_thread.join();
  shared_->bus.Stop();
  spdlog::info("stopped");
  return 0;
}

}  // namespace vote
