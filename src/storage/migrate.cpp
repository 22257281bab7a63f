#include "storage/migrate.hpp"

#include <libpq-fe.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <memory>
#include <regex>
#include <set>
#include <sstream>
#include <stdexcept>

#include "sql/queries.hpp"

namespace vote::storage {
namespace {

// Two-key advisory locks live apart from the one-key locks the application may take.
constexpr const char* kLock = "SELECT pg_advisory_lock(1987, 1)";
constexpr const char* kUnlock = "SELECT pg_advisory_unlock(1987, 1)";

struct File {
  std::string version;
  std::string name;
  std::filesystem::path path;
};

using ConnPtr = std::unique_ptr<PGconn, void (*)(PGconn*)>;

ConnPtr Open(const std::string& conninfo) {
  ConnPtr conn(PQconnectdb(conninfo.c_str()), &PQfinish);
  if (PQstatus(conn.get()) != CONNECTION_OK) {
    throw std::runtime_error(std::string("cannot connect to PostgreSQL: ") + PQerrorMessage(conn.get()));
  }
  return conn;
}

void Exec(PGconn* conn, const std::string& sql) {
  std::unique_ptr<PGresult, void (*)(PGresult*)> res(PQexec(conn, sql.c_str()), &PQclear);
  const auto status = PQresultStatus(res.get());
  if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) {
    throw std::runtime_error(PQresultErrorMessage(res.get()));
  }
}

std::set<std::string> Applied(PGconn* conn) {
  Exec(conn,
       "CREATE TABLE IF NOT EXISTS schema_migrations (version text PRIMARY KEY, name text NOT NULL, "
       "applied_at timestamptz NOT NULL DEFAULT now())");
  std::unique_ptr<PGresult, void (*)(PGresult*)> res(PQexec(conn, "SELECT version FROM schema_migrations"),
                                                      &PQclear);
  std::set<std::string> versions;
  for (int i = 0; i < PQntuples(res.get()); ++i) versions.insert(PQgetvalue(res.get(), i, 0));
  return versions;
}

std::vector<File> Files(const std::string& directory) {
  static const std::regex kPattern(R"((V\d+)__(\w+)\.sql)");
  std::vector<File> files;
  if (!std::filesystem::is_directory(directory)) {
    throw std::runtime_error("migrations directory not found: " + directory);
  }
  for (const auto& entry : std::filesystem::directory_iterator(directory)) {
    std::smatch m;
    const auto filename = entry.path().filename().string();
    if (std::regex_match(filename, m, kPattern)) files.push_back({m[1], m[2], entry.path()});
  }
  std::sort(files.begin(), files.end(), [](const File& a, const File& b) { return a.version < b.version; });
  return files;
}

using ResultPtr = std::unique_ptr<PGresult, void (*)(PGresult*)>;

ResultPtr ExecParams(PGconn* conn, const char* sql, std::initializer_list<const char*> values) {
  const std::vector<const char*> params(values);
  ResultPtr res(PQexecParams(conn, sql, static_cast<int>(params.size()), nullptr, params.data(), nullptr, nullptr, 0),
                &PQclear);
  const auto status = PQresultStatus(res.get());
  if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) throw std::runtime_error(PQresultErrorMessage(res.get()));
  return res;
}

// Runs `work` in a transaction: committed when it returns, rolled back when it throws.
template <typename Work>
void InTransaction(PGconn* conn, const std::string& what, Work work) {
  Exec(conn, "BEGIN");
  try {
    work();
    Exec(conn, "COMMIT");
  } catch (const std::exception& e) {
    Exec(conn, "ROLLBACK");
    throw std::runtime_error(what + " failed: " + e.what());
  }
}

// (Re)creates each function whose text changed since it was last applied (md5 by the server).
void ApplyFunctions(PGconn* conn, std::vector<std::string>& done) {
  Exec(conn,
       "CREATE TABLE IF NOT EXISTS schema_functions (name text PRIMARY KEY, checksum text NOT NULL, "
       "applied_at timestamptz NOT NULL DEFAULT now())");
  for (const auto& function : sql::kFunctions) {
    const auto current = ExecParams(conn,
                                    "SELECT EXISTS (SELECT 1 FROM schema_functions WHERE name = $1 AND checksum = md5($2))",
                                    {function.name, function.text});
    if (std::string_view(PQgetvalue(current.get(), 0, 0)) == "t") continue;
    InTransaction(conn, std::string("function ") + function.name, [&] {
      Exec(conn, function.text);
      ExecParams(conn,
                 "INSERT INTO schema_functions (name, checksum) VALUES ($1, md5($2)) "
                 "ON CONFLICT (name) DO UPDATE SET checksum = excluded.checksum, applied_at = now()",
                 {function.name, function.text});
    });
    done.push_back(std::string("function ") + function.name);
  }
}

}  // namespace

Migrator::Migrator(std::string conninfo, std::string directory)
    : conninfo_(std::move(conninfo)), directory_(std::move(directory)) {}

std::vector<std::string> Migrator::Up() {
  const auto files = Files(directory_);
  auto conn = Open(conninfo_);
  Exec(conn.get(), "SET client_min_messages = warning");
  Exec(conn.get(), kLock);
  std::vector<std::string> done;
  try {
    const auto applied = Applied(conn.get());
    for (const auto& file : files) {
      if (applied.contains(file.version)) continue;
      std::ifstream in(file.path);
      std::stringstream sql;
      sql << in.rdbuf();
      InTransaction(conn.get(), "migration " + file.version + "__" + file.name, [&] {
        Exec(conn.get(), sql.str());
        ExecParams(conn.get(), "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                   {file.version.c_str(), file.name.c_str()});
      });
      done.push_back(file.version);
    }
    ApplyFunctions(conn.get(), done);
  } catch (...) {
    Exec(conn.get(), kUnlock);
    throw;
  }
  Exec(conn.get(), kUnlock);
  return done;
}

std::vector<MigrationStatus> Migrator::Status() {
  const auto files = Files(directory_);
  auto conn = Open(conninfo_);
  Exec(conn.get(), "SET client_min_messages = warning");
  const auto applied = Applied(conn.get());
  std::vector<MigrationStatus> out;
  for (const auto& f : files) out.push_back({f.version, f.name, applied.contains(f.version)});
  return out;
}

}  // namespace vote::storage
