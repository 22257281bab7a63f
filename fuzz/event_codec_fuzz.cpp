// Messages from the broker and from WebSocket clients: malformed ones decode to nothing (and
// are dead-lettered or answered bad_message), never a crash.
#include <cstdint>
#include <string_view>

#include "events/event_codec.hpp"
#include "realtime/ws_protocol.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  if (auto events = vote::events::DecodeEvents(text)) {
    for (const auto& e : *events) (void)vote::events::PollId(e.event.payload);
  }
  (void)vote::realtime::ParseClientMessage(text);
  return 0;
}
