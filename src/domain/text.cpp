#include "domain/text.hpp"

#include <algorithm>

namespace vote::domain {

std::string Trim(std::string_view text) {
  constexpr std::string_view kSpace = " \t\r\n\v\f";
  const auto begin = text.find_first_not_of(kSpace);
  if (begin == std::string_view::npos) return {};
  const auto end = text.find_last_not_of(kSpace);
  return std::string(text.substr(begin, end - begin + 1));
}

std::string AsciiLower(std::string_view text) {
  std::string out(text);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char ch) { return ch < 0x80 ? static_cast<char>(std::tolower(ch)) : static_cast<char>(ch); });
  return out;
}

long Utf8Length(std::string_view text) {
  long count = 0;
  for (std::size_t i = 0; i < text.size();) {
    const auto ch = static_cast<unsigned char>(text[i]);
    std::size_t width = 0;
    if (ch < 0x80) width = 1;
    else if ((ch & 0xE0) == 0xC0 && ch >= 0xC2) width = 2;
    else if ((ch & 0xF0) == 0xE0) width = 3;
    else if ((ch & 0xF8) == 0xF0 && ch <= 0xF4) width = 4;
    else return -1;
    if (i + width > text.size()) return -1;
    for (std::size_t k = 1; k < width; ++k) {
      if ((static_cast<unsigned char>(text[i + k]) & 0xC0) != 0x80) return -1;
    }
    // Overlong forms, UTF-16 surrogates (U+D800-DFFF) and code points past U+10FFFF are not
    // UTF-8 either (RFC 3629 4); PostgreSQL refuses them.
    const auto second = width > 1 ? static_cast<unsigned char>(text[i + 1]) : 0x80;
    if ((ch == 0xE0 && second < 0xA0) || (ch == 0xED && second > 0x9F) || (ch == 0xF0 && second < 0x90) ||
        (ch == 0xF4 && second > 0x8F)) {
      return -1;
    }
    i += width;
    ++count;
  }
  return count;
}

bool HasControlCharacters(std::string_view text) {
  for (std::size_t i = 0; i < text.size(); ++i) {
    const auto ch = static_cast<unsigned char>(text[i]);
    if (ch < 0x20 || ch == 0x7F) return true;
    // C1 controls, U+0080-U+009F: C2 80 .. C2 9F.
    if (ch == 0xC2 && i + 1 < text.size() && static_cast<unsigned char>(text[i + 1]) <= 0x9F) return true;
  }
  return false;
}

}  // namespace vote::domain
