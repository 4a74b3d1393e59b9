// wire.h - the little-endian writer and strict reader the bus messages are
// encoded with (score_message.cpp, flow_message.cpp). Every message is untrusted
// input: the reader's first failure sticks and names its field.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>

#include <fmt/format.h>

namespace kvlb::cluster {

// A name as the wire allows it: 1..253 bytes of [A-Za-z0-9._-].
bool valid_name(std::string_view s);

namespace wire {

class Writer {
 public:
  void u8(uint8_t v) { out_.push_back(static_cast<char>(v)); }
  void u16(uint16_t v) {
    for (int i = 0; i < 2; ++i) u8(static_cast<uint8_t>(v >> (8 * i)));
  }
  void u32(uint32_t v) {
    for (int i = 0; i < 4; ++i) u8(static_cast<uint8_t>(v >> (8 * i)));
  }
  void u64(uint64_t v) {
    for (int i = 0; i < 8; ++i) u8(static_cast<uint8_t>(v >> (8 * i)));
  }
  void bytes(const void* p, size_t n) { out_.append(static_cast<const char*>(p), n); }
  void name(const std::string& s, const char* field) {
    if (!valid_name(s)) throw std::invalid_argument(fmt::format("{}: not a valid name", field));
    u8(static_cast<uint8_t>(s.size()));
    out_ += s;
  }
  std::string take() { return std::move(out_); }

 private:
  std::string out_;
};

// Reads little-endian fields; the first failure sticks and names its field.
class Reader {
 public:
  explicit Reader(std::string_view b) : b_(b) {}
  bool need(size_t n, const char* field) {
    if (!error_.empty()) return false;
    if (b_.size() - pos_ < n) {
      error_ = fmt::format("{}: truncated at byte {}", field, pos_);
      return false;
    }
    return true;
  }
  uint64_t le(size_t n, const char* field) {
    if (!need(n, field)) return 0;
    uint64_t v = 0;
    for (size_t i = 0; i < n; ++i) v |= uint64_t(static_cast<uint8_t>(b_[pos_ + i])) << (8 * i);
    pos_ += n;
    return v;
  }
  std::string_view raw(size_t n, const char* field) {
    if (!need(n, field)) return {};
    auto v = b_.substr(pos_, n);
    pos_ += n;
    return v;
  }
  std::string name(const char* field) {
    const size_t n = le(1, field);
    auto s = raw(n, field);
    if (!error_.empty()) return {};
    if (!valid_name(s)) fail(fmt::format("{}: not a valid name", field));
    return std::string(s);
  }
  void fail(std::string why) {
    if (error_.empty()) error_ = std::move(why);
  }
  bool at_end() const { return pos_ == b_.size(); }
  size_t pos() const { return pos_; }
  const std::string& error() const { return error_; }

 private:
  std::string_view b_;
  size_t pos_ = 0;
  std::string error_;
};

}  // namespace wire
}  // namespace kvlb::cluster
