#pragma once

#include <string>
#include <string_view>

namespace vote::domain {

// Strips ASCII and common Unicode-agnostic whitespace (space, tab, CR, LF, VT, FF) at both ends.
std::string Trim(std::string_view text);
std::string AsciiLower(std::string_view text);
// Length in Unicode code points; -1 when the text is not valid UTF-8.
long Utf8Length(std::string_view text);
// C0 controls (NUL, tab, newline...), DEL or C1 controls anywhere in the (valid UTF-8) text.
bool HasControlCharacters(std::string_view text);

}  // namespace vote::domain
