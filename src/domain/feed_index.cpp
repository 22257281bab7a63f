#include "domain/feed_index.hpp"

namespace vote::domain {
namespace {

// Walking down checks one candidate per step; a handful of steps per wanted id finds the page
// when the user has answered a few of the newest polls, which is the common case.
constexpr std::size_t kWalkStepsPerId = 4;
constexpr std::size_t kWalkSlack = 16;
constexpr std::size_t kMaxWalkSteps = 1024;
// Set difference starts with one roaring container's worth of ids below the bound.
constexpr std::uint64_t kFirstWindow = std::uint64_t{1} << 16;
constexpr std::uint64_t kWindowGrowth = 4;
constexpr std::uint64_t kIdSpace = std::uint64_t{1} << 32;

// The exclusive upper bound in the 32-bit id space.
std::uint64_t UpperBound(std::optional<std::int64_t> before) {
  if (!before) return kIdSpace;
  if (*before <= 0) return 0;
  return std::min<std::uint64_t>(static_cast<std::uint64_t>(*before), kIdSpace);
}

// Positions `it` on the largest value of `bitmap` below `bound`; false when there is none.
bool SeekBelow(const Roaring& bitmap, std::uint64_t bound, roaring_uint32_iterator_t& it) {
  if (bound == 0) return false;
  roaring_init_iterator(&bitmap.roaring, &it);
  if (!it.has_value) return false;
  if (bound < kIdSpace && roaring_move_uint32_iterator_equalorlarger(&it, static_cast<std::uint32_t>(bound))) {
    return roaring_previous_uint32_iterator(&it);
  }
  roaring_init_iterator_last(&bitmap.roaring, &it);
  return it.has_value;
}

// The ids of `unseen` ranked skip .. skip+count-1 from the top.
std::vector<std::int64_t> TakeTop(const Roaring& unseen, std::size_t skip, std::size_t count) {
  std::vector<std::int64_t> out;
  const std::uint64_t size = unseen.cardinality();
  if (size <= skip) return out;
  std::uint32_t start = 0;
  if (!unseen.select(static_cast<std::uint32_t>(size - 1 - skip), &start)) return out;
  roaring_uint32_iterator_t it;
  roaring_init_iterator(&unseen.roaring, &it);
  bool has = roaring_move_uint32_iterator_equalorlarger(&it, start);
  out.reserve(count);
  while (has && out.size() < count) {
    out.push_back(it.current_value);
    has = roaring_previous_uint32_iterator(&it);
  }
  return out;
}

std::vector<std::int64_t> PickByDifference(const Roaring& candidates, const Roaring& answered, std::uint64_t bound,
                                           std::size_t skip, std::size_t count) {
  if (candidates.isEmpty()) return {};
  // Windows never reach outside the candidates, so a range bitmap never spans empty id space.
  const std::uint64_t lowest = candidates.minimum();
  const std::uint64_t top = std::min<std::uint64_t>(bound, std::uint64_t{candidates.maximum()} + 1);
  if (top <= lowest) return {};
  const std::uint64_t wanted = std::uint64_t{skip} + count;
  for (std::uint64_t width = kFirstWindow;; width *= kWindowGrowth) {
    const std::uint64_t low = top - lowest > width ? top - width : lowest;
    Roaring window;
    window.addRange(low, top);
    const Roaring unseen = (candidates & window) - answered;
    if (unseen.cardinality() >= wanted || low == lowest) return TakeTop(unseen, skip, count);
  }
}

}  // namespace

bool PollIndex::Add(std::int64_t poll_id, const std::vector<std::string>& tags) {
  if (!Indexable(poll_id)) return false;
  const auto id = static_cast<std::uint32_t>(poll_id);
  all_.add(id);
  for (const auto& tag : tags) {
    by_tag_[tag].add(id);
  }
  return true;
}

const Roaring* PollIndex::Candidates(const std::optional<std::string>& tag) const {
  if (!tag) return &all_;
  const auto it = by_tag_.find(*tag);
  return it == by_tag_.end() ? nullptr : &it->second;
}

void PollIndex::Optimize() {
  all_.runOptimize();
  all_.shrinkToFit();
  for (auto& [tag, ids] : by_tag_) {
    ids.runOptimize();
    ids.shrinkToFit();
  }
}

std::size_t PollIndex::SizeInBytes() const {
  // A node of std::unordered_map<std::string, Roaring>: roughly the key, the bitmap header and
  // two pointers of bucket bookkeeping.
  constexpr std::size_t kNodeOverhead = sizeof(std::string) + sizeof(Roaring) + 2 * sizeof(void*);
  std::size_t bytes = all_.getSizeInBytes();
  for (const auto& [tag, ids] : by_tag_) {
    bytes += kNodeOverhead + tag.capacity() + ids.getSizeInBytes();
  }
  return bytes;
}

std::vector<std::int64_t> PickUnseen(const Roaring& candidates, const Roaring& answered,
                                     std::optional<std::int64_t> before, std::size_t skip, std::size_t count) {
  std::vector<std::int64_t> out;
  const std::uint64_t bound = UpperBound(before);
  if (count == 0 || bound == 0) return out;

  const std::uint64_t wanted = std::uint64_t{skip} + count;
  if (wanted * kWalkStepsPerId + kWalkSlack <= kMaxWalkSteps) {
    const std::uint64_t budget = wanted * kWalkStepsPerId + kWalkSlack;
    roaring_uint32_iterator_t it;
    bool has = SeekBelow(candidates, bound, it);
    std::size_t skipped = 0;
    out.reserve(count);
    for (std::uint64_t steps = 0; has && steps < budget; ++steps) {
      const std::uint32_t id = it.current_value;
      if (!answered.contains(id)) {
        if (skipped < skip) {
          ++skipped;
        } else {
          out.push_back(id);
          if (out.size() == count) return out;
        }
      }
      has = roaring_previous_uint32_iterator(&it);
    }
    // Ran out of candidates: what was found is the whole answer.
    if (!has) return out;
    out.clear();
  }
  return PickByDifference(candidates, answered, bound, skip, count);
}

}  // namespace vote::domain
