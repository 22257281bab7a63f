#pragma once

#include <roaring/roaring.hh>

#include <chrono>
#include <cstdint>
#include <optional>
#include <set>
#include <vector>

namespace vote::domain {

// One user's answered (voted or skipped) polls as this instance knows them, and how far that
// knowledge is complete. Every answer a user writes takes the next number of the user's answer
// sequence, stored with it in one transaction (answer_seqs). The set is complete through n
// when it holds every answer numbered 1..n; while the stored sequence is still n, the set is
// exact and the feed needs no per-poll check against the database. Answers arrive in any order
// (this instance's own writes, events from other instances, loads); numbers beyond a gap wait
// in `ahead_` until the gap fills. Not thread-safe: the owner guards it.
class AnsweredSet {
 public:
  using SteadyTime = std::chrono::steady_clock::time_point;

  // Numbers ahead of a gap kept at most; beyond that, the set waits for a reload to be complete.
  static constexpr std::size_t kMaxAhead = 4096;

  // An answer numbered `seq` (0: not numbered; it joins the set but completes nothing).
  void Add(std::int64_t poll_id, std::int64_t seq);
  // Polls found answered by a check: in the set, completeness unchanged.
  void AddPolls(const std::vector<std::int64_t>& poll_ids);
  // The user's answers as one snapshot read them, with the sequence in that snapshot.
  void Load(const std::vector<std::int64_t>& poll_ids, std::int64_t seq);

  std::int64_t CompleteThrough() const { return complete_; }
  const Roaring& Polls() const { return polls_; }

  // A check saw the stored sequence `stored` for a page picked while the set was complete
  // through `picked`. True when the set has lagged the stored sequence for at least `patience`
  // (the missing answers' events are late or lost): time to reload it.
  bool Observe(std::int64_t stored, std::int64_t picked, SteadyTime now, std::chrono::milliseconds patience);

 private:
  void Drain();

  Roaring polls_;
  std::int64_t complete_ = 0;
  std::set<std::int64_t> ahead_;
  std::optional<SteadyTime> behind_since_;
};

}  // namespace vote::domain
