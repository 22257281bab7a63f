#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <random>
#include <vector>

#include "domain/answered_set.hpp"

namespace vote::domain {
namespace {

using namespace std::chrono_literals;
using Ids = std::vector<std::int64_t>;

Ids Polls(const AnsweredSet& set) {
  Ids out;
  for (const auto id : set.Polls()) out.push_back(id);
  return out;
}

TEST(AnsweredSet, InOrderAnswersCompleteTheSet) {
  AnsweredSet set;
  set.Add(10, 1);
  set.Add(20, 2);
  EXPECT_EQ(set.CompleteThrough(), 2);
  EXPECT_EQ(Polls(set), (Ids{10, 20}));
}

TEST(AnsweredSet, AGapHoldsCompletenessBackUntilItFills) {
  AnsweredSet set;
  set.Add(10, 1);
  set.Add(30, 3);
  set.Add(40, 4);
  EXPECT_EQ(set.CompleteThrough(), 1) << "answer 2 is missing";
  EXPECT_EQ(Polls(set), (Ids{10, 30, 40})) << "answers past the gap are in the set already";
  set.Add(20, 2);
  EXPECT_EQ(set.CompleteThrough(), 4);
}

TEST(AnsweredSet, DuplicatesAndUnnumberedAnswersCompleteNothing) {
  AnsweredSet set;
  set.Add(10, 1);
  set.Add(10, 1);
  set.Add(50, 0);
  set.AddPolls({60, 70});
  EXPECT_EQ(set.CompleteThrough(), 1);
  EXPECT_EQ(Polls(set), (Ids{10, 50, 60, 70}));
}

TEST(AnsweredSet, ALoadCompletesThroughItsSnapshotAndKeepsLaterAnswers) {
  AnsweredSet set;
  // Answers 5 and 7 arrive (events) before the load that started at sequence 4 returns.
  set.Add(500, 5);
  set.Add(700, 7);
  set.Load({100, 200, 300, 400}, 4);
  EXPECT_EQ(set.CompleteThrough(), 5);
  set.Add(600, 6);
  EXPECT_EQ(set.CompleteThrough(), 7);
  EXPECT_EQ(Polls(set), (Ids{100, 200, 300, 400, 500, 600, 700}));
}

TEST(AnsweredSet, AnOlderLoadNeverMovesCompletenessBack) {
  AnsweredSet set;
  set.Load({1, 2, 3}, 3);
  set.Add(4, 4);
  set.Load({1, 2}, 2);
  EXPECT_EQ(set.CompleteThrough(), 4);
  EXPECT_EQ(Polls(set), (Ids{1, 2, 3, 4}));
}

TEST(AnsweredSet, AnyArrivalOrderEndsCompleteAndExact) {
  std::mt19937 random(7);
  for (int round = 0; round < 50; ++round) {
    std::vector<std::int64_t> seqs(200);
    for (std::size_t i = 0; i < seqs.size(); ++i) seqs[i] = static_cast<std::int64_t>(i) + 1;
    std::shuffle(seqs.begin(), seqs.end(), random);
    AnsweredSet set;
    std::int64_t highest_prefix = 0;
    std::vector<bool> seen(seqs.size() + 2, false);
    for (const auto seq : seqs) {
      set.Add(seq * 10, seq);
      seen[static_cast<std::size_t>(seq)] = true;
      while (seen[static_cast<std::size_t>(highest_prefix) + 1]) ++highest_prefix;
      ASSERT_EQ(set.CompleteThrough(), highest_prefix);
    }
    EXPECT_EQ(set.CompleteThrough(), 200);
    EXPECT_EQ(set.Polls().cardinality(), 200u);
  }
}

TEST(AnsweredSet, ObserveAsksForAReloadOnlyAfterLaggingForThePatience) {
  AnsweredSet set;
  set.Load({1}, 1);
  const auto t0 = std::chrono::steady_clock::time_point{} + 1h;
  EXPECT_FALSE(set.Observe(1, 1, t0, 1000ms)) << "current";
  EXPECT_FALSE(set.Observe(3, 1, t0, 1000ms)) << "behind: the clock starts";
  EXPECT_FALSE(set.Observe(3, 1, t0 + 999ms, 1000ms));
  EXPECT_TRUE(set.Observe(3, 1, t0 + 1000ms, 1000ms));
  EXPECT_FALSE(set.Observe(3, 1, t0 + 1001ms, 1000ms)) << "the clock restarts after asking";
  // Caught up through events before the next check: the lag is over.
  set.Add(2, 2);
  set.Add(3, 3);
  EXPECT_FALSE(set.Observe(3, 1, t0 + 5000ms, 1000ms));
  EXPECT_FALSE(set.Observe(4, 3, t0 + 5001ms, 1000ms));
  EXPECT_FALSE(set.Observe(4, 3, t0 + 5500ms, 1000ms));
  EXPECT_TRUE(set.Observe(4, 3, t0 + 6001ms, 1000ms));
}

TEST(AnsweredSet, TooManyAnswersPastAGapWaitForAReload) {
  AnsweredSet set;
  for (std::int64_t seq = 2; seq < 2 + static_cast<std::int64_t>(AnsweredSet::kMaxAhead) + 10; ++seq) set.Add(seq, seq);
  set.Add(1, 1);
  EXPECT_EQ(set.CompleteThrough(), static_cast<std::int64_t>(AnsweredSet::kMaxAhead) + 1);
  EXPECT_EQ(set.Polls().cardinality(), AnsweredSet::kMaxAhead + 11);
  set.Load({}, static_cast<std::int64_t>(AnsweredSet::kMaxAhead) + 11);
  EXPECT_EQ(set.CompleteThrough(), static_cast<std::int64_t>(AnsweredSet::kMaxAhead) + 11);
}

}  // namespace
}  // namespace vote::domain
