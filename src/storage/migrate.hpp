#pragma once

#include <string>
#include <vector>

namespace vote::storage {

struct MigrationStatus {
  std::string version;  // "V001"
  std::string name;     // "init"
  bool applied = false;
};

// Applies migrations/V<NNN>__<name>.sql in order, each in its own transaction, then every
// database function of src/sql/functions whose text differs from the one applied last (a
// checksum per function in schema_functions), all under a session advisory lock so that
// instances starting together migrate exactly once. Runs from the CLI before serving, so it
// uses libpq's blocking API.
class Migrator {
 public:
  Migrator(std::string conninfo, std::string directory);
  // Returns the versions it applied, then "function <name>" for each function (re)applied.
  std::vector<std::string> Up();
  std::vector<MigrationStatus> Status();

 private:
  std::string conninfo_;
  std::string directory_;
};

}  // namespace vote::storage
