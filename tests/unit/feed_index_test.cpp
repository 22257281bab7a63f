#include <gtest/gtest.h>

#include <cctype>
#include <cstdint>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "domain/cursor.hpp"
#include "domain/feed_index.hpp"

namespace vote::domain {
namespace {

using Ids = std::vector<std::int64_t>;

Roaring Range(std::uint32_t first, std::uint32_t last) {
  Roaring r;
  r.addRange(first, std::uint64_t{last} + 1);
  return r;
}

Ids Descending(std::int64_t from, std::int64_t to) {
  Ids ids;
  for (auto id = from; id >= to; --id) ids.push_back(id);
  return ids;
}

// The definition PickUnseen must match, by brute force.
Ids Expected(const std::set<std::uint32_t>& candidates, const std::set<std::uint32_t>& answered,
             std::optional<std::int64_t> before, std::size_t skip, std::size_t count) {
  Ids out;
  std::size_t skipped = 0;
  for (auto it = candidates.rbegin(); it != candidates.rend() && out.size() < count; ++it) {
    if (before && static_cast<std::int64_t>(*it) >= *before) continue;
    if (answered.contains(*it)) continue;
    if (skipped < skip) {
      ++skipped;
      continue;
    }
    out.push_back(*it);
  }
  return out;
}

TEST(PickUnseen, ReturnsTheNewestPollsFirst) {
  EXPECT_EQ(PickUnseen(Range(1, 100), Roaring(), std::nullopt, 0, 10), Descending(100, 91));
}

TEST(PickUnseen, LeavesOutAnsweredPolls) {
  const Roaring answered = Roaring::bitmapOf(3, 100, 98, 95);
  EXPECT_EQ(PickUnseen(Range(1, 100), answered, std::nullopt, 0, 4), (Ids{99, 97, 96, 94}));
}

TEST(PickUnseen, StartsBelowTheCursorIdExclusive) {
  EXPECT_EQ(PickUnseen(Range(1, 100), Roaring(), 50, 0, 3), (Ids{49, 48, 47}));
  EXPECT_EQ(PickUnseen(Range(1, 100), Roaring(), 1, 0, 3), Ids{});
  EXPECT_EQ(PickUnseen(Range(1, 100), Roaring(), 5000, 0, 2), (Ids{100, 99}));
}

TEST(PickUnseen, SkipsTheOffsetAmongUnseenPollsOnly) {
  const Roaring answered = Roaring::bitmapOf(2, 100, 99);
  EXPECT_EQ(PickUnseen(Range(1, 100), answered, std::nullopt, 5, 3), (Ids{93, 92, 91}));
}

TEST(PickUnseen, ReturnsWhatIsLeftWhenFewerThanCount) {
  const Roaring answered = Range(1, 97);
  EXPECT_EQ(PickUnseen(Range(1, 100), answered, std::nullopt, 0, 10), (Ids{100, 99, 98}));
  EXPECT_EQ(PickUnseen(Range(1, 100), Range(1, 100), std::nullopt, 0, 10), Ids{});
  EXPECT_EQ(PickUnseen(Roaring(), Roaring(), std::nullopt, 0, 10), Ids{});
}

TEST(PickUnseen, FindsOldPollsWhenTheUserAnsweredTensOfThousandsOfTheNewest) {
  Roaring all = Range(1, 1'000'000);
  all.runOptimize();
  Roaring answered = Range(960'001, 1'000'000);  // the newest 40k
  answered.add(959'999);
  EXPECT_EQ(PickUnseen(all, answered, std::nullopt, 0, 3), (Ids{960'000, 959'998, 959'997}));
  EXPECT_EQ(PickUnseen(all, answered, std::nullopt, 2, 2), (Ids{959'997, 959'996}));
  EXPECT_EQ(PickUnseen(all, answered, 959'997, 0, 2), (Ids{959'996, 959'995}));
}

TEST(PickUnseen, HandlesLargeOffsets) {
  const Roaring answered = Roaring::bitmapOf(1, 150'000);
  EXPECT_EQ(PickUnseen(Range(1, 200'000), answered, std::nullopt, 60'000, 2), (Ids{139'999, 139'998}));
}

TEST(PickUnseen, MatchesBruteForceOnRandomIndexes) {
  std::mt19937 rng(20240601);
  for (int trial = 0; trial < 400; ++trial) {
    const std::uint32_t span = trial % 3 == 0 ? 300'000 : 3'000;
    std::set<std::uint32_t> candidates;
    std::set<std::uint32_t> answered;
    Roaring candidate_bitmap;
    Roaring answered_bitmap;
    const int n = static_cast<int>(rng() % 4000);
    for (int i = 0; i < n; ++i) {
      const std::uint32_t id = 1 + rng() % span;
      candidates.insert(id);
      candidate_bitmap.add(id);
    }
    // From "a few answered" to "nearly everything on top answered".
    const double density = (trial % 5) / 4.0;
    for (const auto id : candidates) {
      if (std::uniform_real_distribution<double>(0, 1)(rng) < density) {
        answered.insert(id);
        answered_bitmap.add(id);
      }
    }
    if (trial % 2 == 0) {
      candidate_bitmap.runOptimize();
      answered_bitmap.runOptimize();
    }
    const std::optional<std::int64_t> before =
        trial % 4 == 0 ? std::nullopt : std::optional<std::int64_t>(1 + rng() % (span + 10));
    const std::size_t skip = trial % 7 == 0 ? rng() % 300 : 0;
    const std::size_t count = 1 + rng() % 51;
    EXPECT_EQ(PickUnseen(candidate_bitmap, answered_bitmap, before, skip, count),
              Expected(candidates, answered, before, skip, count))
        << "trial " << trial;
  }
}

TEST(PollIndex, KeepsOneCandidateSetPerTag) {
  PollIndex index;
  EXPECT_TRUE(index.Add(1, {"sports"}));
  EXPECT_TRUE(index.Add(2, {"news", "sports"}));
  EXPECT_TRUE(index.Add(3, {}));
  EXPECT_TRUE(index.Add(2, {"news", "sports"}));  // idempotent
  EXPECT_EQ(index.Size(), 3u);
  ASSERT_NE(index.Candidates("sports"), nullptr);
  EXPECT_EQ(PickUnseen(*index.Candidates("sports"), Roaring(), std::nullopt, 0, 10), (Ids{2, 1}));
  EXPECT_EQ(PickUnseen(*index.Candidates(std::nullopt), Roaring(), std::nullopt, 0, 10), (Ids{3, 2, 1}));
  EXPECT_EQ(index.Candidates("unknown"), nullptr);
}

TEST(PollIndex, RefusesIdsOutsideThirtyTwoBits) {
  PollIndex index;
  EXPECT_FALSE(index.Add(0, {}));
  EXPECT_FALSE(index.Add(kMaxIndexedPollId + 1, {"x"}));
  EXPECT_TRUE(index.Add(kMaxIndexedPollId, {"x"}));
  EXPECT_EQ(index.Size(), 1u);
  EXPECT_EQ(PickUnseen(*index.Candidates(std::nullopt), Roaring(), std::nullopt, 0, 1), Ids{kMaxIndexedPollId});
}

TEST(PollIndex, OptimizeKeepsTheContentAndShrinksDenseIds) {
  PollIndex index;
  for (std::int64_t id = 1; id <= 200'000; ++id) index.Add(id, {id % 2 == 0 ? "even" : "odd"});
  const auto before = index.SizeInBytes();
  index.Optimize();
  EXPECT_LT(index.SizeInBytes(), before);
  EXPECT_EQ(index.Size(), 200'000u);
  EXPECT_EQ(PickUnseen(*index.Candidates("odd"), Roaring(), std::nullopt, 0, 2), (Ids{199'999, 199'997}));
}

const CursorBinding kAlice{7, std::string("sports"), std::nullopt};

TEST(CursorCodec, DecodesWhatItEncoded) {
  const CursorCodec codec("secret");
  const auto cursor = codec.Encode(kAlice, 12345);
  EXPECT_EQ(codec.Decode(kAlice, cursor), 12345);
  for (const char c : cursor) {
    EXPECT_TRUE(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_') << cursor;
  }
}

TEST(CursorCodec, RefusesACursorOfAnotherUserOrFilter) {
  const CursorCodec codec("secret");
  const auto cursor = codec.Encode(kAlice, 12345);
  EXPECT_EQ(codec.Decode({8, std::string("sports"), std::nullopt}, cursor), std::nullopt);
  EXPECT_EQ(codec.Decode({7, std::string("news"), std::nullopt}, cursor), std::nullopt);
  EXPECT_EQ(codec.Decode({7, std::nullopt, std::nullopt}, cursor), std::nullopt);
  EXPECT_EQ(codec.Decode({7, std::string("sports"), std::string("cats")}, cursor), std::nullopt);
  // Length prefixes keep ("ab", "c") and ("a", "bc") apart.
  const CursorBinding split{7, std::string("ab"), std::string("c")};
  EXPECT_EQ(codec.Decode({7, std::string("a"), std::string("bc")}, codec.Encode(split, 5)), std::nullopt);
}

TEST(CursorCodec, RefusesATamperedCursor) {
  const CursorCodec codec("secret");
  const auto cursor = codec.Encode(kAlice, 12345);
  for (std::size_t i = 0; i < cursor.size(); ++i) {
    auto tampered = cursor;
    tampered[i] = tampered[i] == 'A' ? 'B' : 'A';
    EXPECT_EQ(codec.Decode(kAlice, tampered), std::nullopt) << "changed position " << i;
  }
  EXPECT_EQ(codec.Decode(kAlice, cursor.substr(1)), std::nullopt);
  EXPECT_EQ(codec.Decode(kAlice, cursor + "A"), std::nullopt);
}

TEST(CursorCodec, RefusesCursorsItDidNotIssue) {
  const CursorCodec codec("secret");
  EXPECT_EQ(codec.Decode(kAlice, ""), std::nullopt);
  EXPECT_EQ(codec.Decode(kAlice, "abc"), std::nullopt);
  EXPECT_EQ(codec.Decode(kAlice, "12345"), std::nullopt);
  EXPECT_EQ(codec.Decode(kAlice, std::string(55, '=')), std::nullopt);
  EXPECT_EQ(codec.Decode(kAlice, CursorCodec("other secret").Encode(kAlice, 12345)), std::nullopt);
}

TEST(CursorCodec, RequiresAKey) { EXPECT_THROW(CursorCodec(""), std::invalid_argument); }

TEST(LruCache, KeepsAtMostCapacityEntriesDroppingTheLeastRecentlyUsed) {
  LruCache<int, std::string> cache(2);
  cache.Put(1, "one");
  cache.Put(2, "two");
  ASSERT_NE(cache.Get(1), nullptr);  // 2 is now the least recently used
  cache.Put(3, "three");
  EXPECT_EQ(cache.Size(), 2u);
  EXPECT_EQ(cache.Get(2), nullptr);
  ASSERT_NE(cache.Get(1), nullptr);
  EXPECT_EQ(*cache.Get(1), "one");
  EXPECT_EQ(*cache.Get(3), "three");
}

TEST(LruCache, PeekDoesNotKeepAnEntryAlive) {
  LruCache<int, int> cache(2);
  cache.Put(1, 10);
  cache.Put(2, 20);
  ASSERT_NE(cache.Peek(1), nullptr);
  cache.Put(3, 30);
  EXPECT_EQ(cache.Peek(1), nullptr);
  EXPECT_EQ(cache.Size(), 2u);
}

TEST(LruCache, ReplacesAnExistingKeyWithoutGrowing) {
  LruCache<int, int> cache(3);
  cache.Put(1, 10);
  cache.Put(1, 11);
  EXPECT_EQ(cache.Size(), 1u);
  EXPECT_EQ(*cache.Get(1), 11);
  EXPECT_TRUE(cache.Erase(1));
  EXPECT_FALSE(cache.Erase(1));
  EXPECT_EQ((LruCache<int, int>(0).Capacity()), 1u);
}

}  // namespace
}  // namespace vote::domain
