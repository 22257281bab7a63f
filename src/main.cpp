#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include <iostream>

#include "app.hpp"
#include "config/config.hpp"
#include "storage/migrate.hpp"

int main(int argc, char** argv) {
  CLI::App cli{"Vote: a polling platform"};
  cli.require_subcommand(1);
  std::string config_path = "config/config.yaml";
  cli.add_option("-c,--config", config_path, "YAML configuration file")->check(CLI::ExistingFile);
  // Subcommands inherit this, so `vote serve --config x` and `vote migrate up --config x` work too.
  cli.fallthrough();

  auto* serve = cli.add_subcommand("serve", "Serve the HTTP API (and run the event consumers)");
  auto* worker = cli.add_subcommand("worker", "Run only the outbox relay and the event consumers");
  auto* migrate = cli.add_subcommand("migrate", "Apply or list database migrations");
  migrate->require_subcommand(1);
  auto* migrate_up = migrate->add_subcommand("up", "Apply pending migrations");
  auto* migrate_status = migrate->add_subcommand("status", "List migrations and whether they are applied");
  auto* version = cli.add_subcommand("version", "Print the version");
  CLI11_PARSE(cli, argc, argv);

  if (version->parsed()) {
    std::cout << "vote " << VOTE_VERSION << "\n";
    return 0;
  }
  try {
    const auto config = vote::config::Load(config_path);
    vote::config::CheckProductionSecrets(config);
    if (migrate->parsed()) {
      vote::storage::Migrator migrator(vote::config::PostgresConninfo(config.postgres),
                                       config.postgres.migrations_dir);
      if (migrate_up->parsed()) {
        const auto applied = migrator.Up();
        std::cout << (applied.empty() ? "migrations: up to date" : "migrations: applied") ;
        for (const auto& v : applied) std::cout << " " << v;
        std::cout << "\n";
      } else if (migrate_status->parsed()) {
        for (const auto& m : migrator.Status()) {
          std::cout << m.version << " " << m.name << " " << (m.applied ? "applied" : "pending") << "\n";
        }
      }
      return 0;
    }
    vote::App app(config, serve->parsed() ? vote::App::Mode::kServe : vote::App::Mode::kWorker);
    return app.Run();
  } catch (const vote::config::ConfigError& e) {
    std::cerr << "configuration error: " << e.what() << "\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
  (void)worker;
}
