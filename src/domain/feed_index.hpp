#pragma once

#include <roaring/roaring.hh>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <list>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

namespace vote::domain {

// The index keeps poll ids in 32-bit bitmaps, so it holds ids 1..2^32-1 (docs/FEED.md says
// what happens above that).
inline constexpr std::int64_t kMaxIndexedPollId = 0xFFFFFFFFll;

inline bool Indexable(std::int64_t poll_id) { return poll_id > 0 && poll_id <= kMaxIndexedPollId; }

// Every poll id known to this instance, with one bitmap per tag. Ids grow with creation, so
// descending id order is newest first. Not thread-safe: the owner guards it.
class PollIndex {
 public:
  // Idempotent. False, and nothing stored, for an id the index cannot hold.
  bool Add(std::int64_t poll_id, const std::vector<std::string>& tags);
  // All polls, or the polls carrying `tag`; nullptr when no poll carries it.
  const Roaring* Candidates(const std::optional<std::string>& tag) const;
  std::uint64_t Size() const { return all_.cardinality(); }
  // Turns dense id ranges into run containers; worth it after a bulk load.
  void Optimize();
  // Bitmap bytes (roaring's own estimate) plus the per-tag map's keys.
  std::size_t SizeInBytes() const;

 private:
  Roaring all_;
  std::unordered_map<std::string, Roaring> by_tag_;
};

// The newest ids of `candidates` below `before` (exclusive; nullopt: no bound) that are not in
// `answered`: the first `skip` such ids are left out, then at most `count` are returned, newest
// first. Walks down the candidates checking `answered` for a few steps per wanted id; when the
// user has answered most of what is on top, it switches to set difference over geometrically
// growing id windows below `before`, so the cost follows how far down the unseen polls are,
// not how many polls exist or how many the user answered.
std::vector<std::int64_t> PickUnseen(const Roaring& candidates, const Roaring& answered,
                                     std::optional<std::int64_t> before, std::size_t skip, std::size_t count);

// A map that keeps at most `capacity` entries (at least one), dropping the least recently
// used. Not thread-safe.
template <typename Key, typename Value>
class LruCache {
 public:
  explicit LruCache(std::size_t capacity) : capacity_(std::max<std::size_t>(capacity, 1)) {}

  // The value, marked as most recently used; nullptr when absent.
  Value* Get(const Key& key) {
    auto it = index_.find(key);
    if (it == index_.end()) return nullptr;
    items_.splice(items_.begin(), items_, it->second);
    return &it->second->second;
  }
  // The value without changing the eviction order.
  Value* Peek(const Key& key) {
    auto it = index_.find(key);
    return it == index_.end() ? nullptr : &it->second->second;
  }
  // Inserts or replaces, marks as most recently used, evicts beyond capacity.
  Value& Put(const Key& key, Value value) {
    if (auto* existing = Get(key)) {
      *existing = std::move(value);
      return *existing;
    }
    items_.emplace_front(key, std::move(value));
    index_.emplace(key, items_.begin());
    while (items_.size() > capacity_) {
      index_.erase(items_.back().first);
      items_.pop_back();
    }
    return items_.front().second;
  }
  bool Erase(const Key& key) {
    auto it = index_.find(key);
    if (it == index_.end()) return false;
    items_.erase(it->second);
    index_.erase(it);
    return true;
  }
  std::size_t Size() const { return items_.size(); }
  std::size_t Capacity() const { return capacity_; }

 private:
  using Items = std::list<std::pair<Key, Value>>;
  std::size_t capacity_;
  Items items_;
  std::unordered_map<Key, typename Items::iterator> index_;
};

}  // namespace vote::domain
