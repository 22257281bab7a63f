#include <gtest/gtest.h>

#include "storage/pg.hpp"

namespace vote::storage {
namespace {

TEST(PgError, ConnectionLossAndRacesAreTransientRuleViolationsAreNot) {
  for (const char* state : {"", "08006", "40001", "40P01", "55P03", "57014", "57P01", "53300"}) {
    EXPECT_TRUE(PgError(state, "x").IsTransient()) << state;
  }
  for (const char* state : {"23505", "22P02", "42P01", "XX000", "P0001"}) {
    EXPECT_FALSE(PgError(state, "x").IsTransient()) << state;
  }
  EXPECT_TRUE(PgError("08006", "x").IsConnectionLost());
  EXPECT_FALSE(PgError("40P01", "x").IsConnectionLost());
}

}  // namespace
}  // namespace vote::storage
