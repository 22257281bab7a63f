#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace vote::domain {

// What a feed cursor is bound to: the caller and the filters of the feed it came from. A cursor
// decodes only with the same binding, so it cannot be replayed by another user or on another
// filter.
struct CursorBinding {
  std::int64_t user_id = 0;
  std::optional<std::string> tag;
  std::optional<std::string> text;
};

// Opaque, tamper-evident feed cursors: base64url(version | last id | keyed BLAKE2b-128), where
// the MAC also covers the binding. The position is the last id shown (ids grow with creation,
// the feed is id-descending), so the next page stays right whatever the caller answers in
// between.
class CursorCodec {
 public:
  // The MAC key is derived from `secret`, which must not be empty.
  explicit CursorCodec(std::string_view secret);

  std::string Encode(const CursorBinding& binding, std::int64_t last_id) const;
  // The last id of a cursor this codec issued for the same binding; nothing for anything else.
  std::optional<std::int64_t> Decode(const CursorBinding& binding, std::string_view cursor) const;

 private:
  // The 16-byte MAC of `input` under key_, written to `out`.
  void Mac(const std::string& input, unsigned char* out) const;

  std::array<unsigned char, 32> key_{};
};

}  // namespace vote::domain
