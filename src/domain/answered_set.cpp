#include "domain/answered_set.hpp"

#include "domain/feed_index.hpp"

namespace vote::domain {

void AnsweredSet::Add(std::int64_t poll_id, std::int64_t seq) {
  if (Indexable(poll_id)) polls_.add(static_cast<std::uint32_t>(poll_id));
  if (seq <= complete_) return;
  if (seq == complete_ + 1) {
    complete_ = seq;
    Drain();
  } else if (ahead_.size() < kMaxAhead) {
    ahead_.insert(seq);
  }
}

void AnsweredSet::AddPolls(const std::vector<std::int64_t>& poll_ids) {
  for (const auto id : poll_ids) Add(id, 0);
}

void AnsweredSet::Load(const std::vector<std::int64_t>& poll_ids, std::int64_t seq) {
  for (const auto id : poll_ids) {
    if (Indexable(id)) polls_.add(static_cast<std::uint32_t>(id));
  }
  polls_.runOptimize();
  // A load that started before answers this set already counts adds nothing to completeness.
  if (seq > complete_) {
    complete_ = seq;
    Drain();
  }
}

void AnsweredSet::Drain() {
  ahead_.erase(ahead_.begin(), ahead_.upper_bound(complete_));
  while (!ahead_.empty() && *ahead_.begin() == complete_ + 1) {
    complete_ = *ahead_.begin();
    ahead_.erase(ahead_.begin());
  }
}

bool AnsweredSet::Observe(std::int64_t stored, std::int64_t picked, SteadyTime now,
                          std::chrono::milliseconds patience) {
  if (stored == picked || complete_ >= stored) {
    behind_since_.reset();
    return false;
  }
  if (!behind_since_) {
    behind_since_ = now;
    return false;
  }
  if (now - *behind_since_ < patience) return false;
  behind_since_.reset();
  return true;
}

}  // namespace vote::domain
