#include "common/printable.h"

#include <algorithm>
#include <cstdint>

namespace kvlb {
namespace {

// Length of the well-formed UTF-8 sequence at s[i] (2..4), or 0. Overlong forms,
// surrogates and code points above U+10FFFF are not well-formed (RFC 3629).
size_t utf8_sequence(std::string_view s, size_t i, uint32_t* cp) {
  const auto b = [&](size_t k) { return static_cast<uint8_t>(s[i + k]); };
  const uint8_t c = b(0);
  size_t n;
  uint32_t v;
  if (c >= 0xC2 && c <= 0xDF) {
    n = 2, v = c & 0x1F;
  } else if (c >= 0xE0 && c <= 0xEF) {
    n = 3, v = c & 0x0F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    n = 4, v = c & 0x07;
  } else {
    return 0;
  }
  if (i + n > s.size()) return 0;
  for (size_t k = 1; k < n; ++k) {
    if ((b(k) & 0xC0) != 0x80) return 0;
    v = (v << 6) | (b(k) & 0x3F);
  }
  if ((n == 3 && v < 0x800) || (n == 4 && v < 0x10000) || v > 0x10FFFF ||
      (v >= 0xD800 && v <= 0xDFFF))
    return 0;
  *cp = v;
  return n;
}

void escape_byte(std::string& out, unsigned char c) {
  static constexpr char kHex[] = "0123456789abcdef";
  out += "\\x";
  out += kHex[c >> 4];
  out += kHex[c & 0xF];
}

void append_printable(std::string& out, std::string_view s, size_t max, char quote) {
  const bool cut = s.size() > max;
  if (cut) s = s.substr(0, max);
  for (size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c < 0x7F) {
      if (c == '\\')
        out += "\\\\";
      else if (quote && c == static_cast<unsigned char>(quote))
        escape_byte(out, c);
      else
        out += static_cast<char>(c);
      ++i;
      continue;
    }
    uint32_t cp = 0;
    size_t n = c >= 0x80 ? utf8_sequence(s, i, &cp) : 0;
    if (n > 0 && !(cp >= 0x80 && cp <= 0x9F)) {
      out.append(s.substr(i, n));
      i += n;
      continue;
    }
    escape_byte(out, c);
    ++i;
  }
  if (cut) out += "...";
}

}  // namespace

std::string printable(std::string_view s, size_t max) {
  std::string out;
  out.reserve(std::min(s.size(), max) + 8);
  append_printable(out, s, max, 0);
  return out;
}

std::string quoted(std::string_view s, size_t max) {
  std::string out = "\"";
  append_printable(out, s, max, '"');
  out += '"';
  return out;
}

}  // namespace kvlb
