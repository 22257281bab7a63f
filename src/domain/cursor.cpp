#include "domain/cursor.hpp"

#include <sodium.h>

#include <stdexcept>

namespace vote::domain {
namespace {

constexpr unsigned char kVersion = 2;
constexpr std::size_t kPayloadBytes = 1 + 8;  // version, last id
// Keyed BLAKE2b with a 128-bit tag: a quarter of HMAC-SHA512's cost on every feed page, and
// forging a tag still takes ~2^128 guesses, each one a request.
constexpr std::size_t kMacBytes = crypto_generichash_BYTES_MIN;
constexpr std::size_t kTokenBytes = kPayloadBytes + kMacBytes;
constexpr int kVariant = sodium_base64_VARIANT_URLSAFE_NO_PADDING;
constexpr std::size_t kEncodedChars = sodium_base64_ENCODED_LEN(kTokenBytes, kVariant) - 1;  // without the NUL
constexpr std::string_view kKeyContext = "vote/feed-cursor/v1";
static_assert(kMacBytes == 16);
static_assert(crypto_generichash_KEYBYTES_MIN <= 32 && 32 <= crypto_generichash_KEYBYTES_MAX,
              "CursorCodec::key_ keys crypto_generichash");

using Token = std::array<unsigned char, kTokenBytes>;

void PutU64(std::string& out, std::uint64_t value) {
  for (int shift = 56; shift >= 0; shift -= 8) {
    out.push_back(static_cast<char>((value >> shift) & 0xFF));
  }
}

void PutField(std::string& out, const std::optional<std::string>& field) {
  if (!field) {
    out.push_back('\0');
    return;
  }
  out.push_back('\1');
  PutU64(out, field->size());
  out.append(*field);
}

// The MAC covers the payload and the binding, each field length-prefixed so that no two
// bindings share an encoding.
std::string MacInput(const Token& token, const CursorBinding& binding) {
  std::string input(reinterpret_cast<const char*>(token.data()), kPayloadBytes);
  PutU64(input, static_cast<std::uint64_t>(binding.user_id));
  PutField(input, binding.tag);
  PutField(input, binding.text);
  return input;
}

}  // namespace

CursorCodec::CursorCodec(std::string_view secret) {
  if (secret.empty()) throw std::invalid_argument("feed cursor key must not be empty");
  if (sodium_init() < 0) throw std::runtime_error("sodium_init failed");
  // A key of its own, so a cursor MAC can never be confused with anything else signed with
  // the same secret.
  std::string input(kKeyContext);
  input.push_back('\0');
  input.append(secret);
  crypto_generichash(key_.data(), key_.size(), reinterpret_cast<const unsigned char*>(input.data()), input.size(),
                     nullptr, 0);
}

void CursorCodec::Mac(const std::string& input, unsigned char* out) const {
  crypto_generichash(out, kMacBytes, reinterpret_cast<const unsigned char*>(input.data()), input.size(), key_.data(),
                     key_.size());
}

std::string CursorCodec::Encode(const CursorBinding& binding, std::int64_t last_id) const {
  Token token{};
  token[0] = kVersion;
  const auto id = static_cast<std::uint64_t>(last_id);
  for (std::size_t i = 0; i < 8; ++i) {
    token[1 + i] = static_cast<unsigned char>((id >> (56 - 8 * i)) & 0xFF);
  }
  const auto input = MacInput(token, binding);
  Mac(input, token.data() + kPayloadBytes);
  std::string out(kEncodedChars + 1, '\0');
  sodium_bin2base64(out.data(), out.size(), token.data(), token.size(), kVariant);
  out.resize(kEncodedChars);
  return out;
}

std::optional<std::int64_t> CursorCodec::Decode(const CursorBinding& binding, std::string_view cursor) const {
  if (cursor.size() != kEncodedChars) return std::nullopt;
  Token token{};
  std::size_t decoded = 0;
  const char* end = nullptr;
  // libsodium refuses non-zero trailing bits, so every token has exactly one spelling.
  if (sodium_base642bin(token.data(), token.size(), cursor.data(), cursor.size(), nullptr, &decoded, &end,
                        kVariant) != 0 ||
      decoded != token.size() || end != cursor.data() + cursor.size()) {
    return std::nullopt;
  }
  const auto input = MacInput(token, binding);
  std::array<unsigned char, kMacBytes> expected{};
  Mac(input, expected.data());
  if (sodium_memcmp(expected.data(), token.data() + kPayloadBytes, kMacBytes) != 0) return std::nullopt;
  if (token[0] != kVersion) return std::nullopt;
  std::uint64_t id = 0;
  for (std::size_t i = 0; i < 8; ++i) {
    id = (id << 8) | token[1 + i];
  }
  const auto last_id = static_cast<std::int64_t>(id);
  if (last_id <= 0) return std::nullopt;
  return last_id;
}

}  // namespace vote::domain
