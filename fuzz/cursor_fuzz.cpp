// Feed cursors come back from clients: anything not issued for the same binding decodes to
// nothing; what was issued decodes to its id.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "domain/cursor.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const vote::domain::CursorCodec codec("fuzz-secret");
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const vote::domain::CursorBinding binding{42, std::string("go"), std::nullopt};
  (void)codec.Decode(binding, text);
  // Round trip: the input's first bytes as an id.
  std::int64_t id = 0;
  for (std::size_t i = 0; i < size && i < 8; ++i) id = (id << 8) | data[i];
  if (id > 0) {
    const auto cursor = codec.Encode(binding, id);
    if (codec.Decode(binding, cursor) != id) std::abort();
    const vote::domain::CursorBinding other{43, std::string("go"), std::nullopt};
    if (codec.Decode(other, cursor).has_value()) std::abort();
  }
  return 0;
}
