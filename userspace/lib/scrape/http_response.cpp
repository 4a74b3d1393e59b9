#include "scrape/http_response.h"

#include <algorithm>
#include <charconv>
#include <cstring>

#include <fmt/format.h>

#include "common/printable.h"
#include "common/strings.h"

namespace kvlb {
namespace {

constexpr size_t kMaxHeaderBytes = 64 * 1024;
constexpr size_t kMaxChunkHeaderBytes = 1024;  // "<hex size>[;extensions]"
constexpr size_t kMaxTrailerBytes = 16 * 1024;

// Case-insensitive search for a token in a comma-separated header value.
bool has_token(std::string_view value, std::string_view token) {
  size_t pos = 0;
  while (pos <= value.size()) {
    size_t end = value.find(',', pos);
    if (end == std::string_view::npos) end = value.size();
    if (iequals(trim_blanks(value.substr(pos, end - pos)), token)) return true;
    pos = end + 1;
  }
  return false;
}

}  // namespace

size_t HttpResponseParser::max_wire_bytes() const {
  return 2 * max_body_ + kMaxHeaderBytes;
}

void HttpResponseParser::reset(size_t max_body, std::string* body) {
  max_body_ = max_body;
  body_ = body;
  body_->clear();
  len_ = received_ = head_scan_ = header_end_ = 0;
  status_ = 0;
  chunked_ = close_delimited_ = chunk_crlf_ = in_trailer_ = false;
  keep_alive_ = true;
  content_length_ = scan_ = chunk_left_ = trailer_bytes_ = 0;
  error_ = ScrapeError::None;
  detail_.clear();
}

char* HttpResponseParser::prepare(size_t n) {
  if (buf_.size() < len_ + n) buf_.resize(std::max(len_ + n, buf_.size() * 2));
  return buf_.data() + len_;
}

HttpResponseParser::Status HttpResponseParser::commit(size_t n) {
  if (error_ != ScrapeError::None) return Status::Failed;
  len_ += n;
  received_ += n;
  if (received_ > max_wire_bytes()) {
    fail(ScrapeError::TooLarge,
         fmt::format("answer larger than {} bytes on the wire", max_wire_bytes()));
    return Status::Failed;
  }
  int r = parse();
  return r > 0 ? Status::Done : r < 0 ? Status::Failed : Status::More;
}

HttpResponseParser::Status HttpResponseParser::on_eof() {
  if (error_ != ScrapeError::None) return Status::Failed;
  if (close_delimited_ && header_end_) {
    if (len_ - header_end_ > max_body_) {
      fail(ScrapeError::TooLarge, fmt::format("body larger than {} bytes", max_body_));
      return Status::Failed;
    }
    body_->assign(raw().substr(header_end_));
    keep_alive_ = false;
    return Status::Done;
  }
  fail(ScrapeError::Other, received_ == 0 ? "connection closed before any answer"
                                          : "connection closed in the middle of the answer");
  return Status::Failed;
}

int HttpResponseParser::fail(ScrapeError e, std::string detail) {
  error_ = e;
  detail_ = std::move(detail);
  body_->clear();
  return -1;
}

int HttpResponseParser::parse() {
  if (!header_end_) {
    int r = parse_head();
    if (r != 1) return r;
  }
  const std::string_view raw = this->raw();
  const size_t body_bytes = raw.size() - header_end_;
  if (chunked_) return parse_chunked();
  if (close_delimited_) {
    if (body_bytes > max_body_) {
      fail(ScrapeError::TooLarge, fmt::format("body larger than {} bytes", max_body_));
      return -1;
    }
    return 0;  // complete at EOF
  }
  if (body_bytes < content_length_) return 0;
  if (body_bytes > content_length_) {
    fail(ScrapeError::Other, "more bytes than Content-Length");
    return -1;
  }
  body_->assign(raw.substr(header_end_, content_length_));
  return 1;
}

// The status line and headers: 1 once complete (header_end_ set), 0 for more, -1 failed.
int HttpResponseParser::parse_head() {
  const std::string_view raw = this->raw();
  // Resume where the last search stopped (a head dripped byte by byte must not
  // be searched from its start on every read).
  size_t end = raw.find("\r\n\r\n", head_scan_);
  if (end == std::string_view::npos) {
    if (raw.size() > kMaxHeaderBytes) {
      fail(ScrapeError::Other, "response headers larger than 64 KiB");
      return -1;
    }
    head_scan_ = raw.size() > 3 ? raw.size() - 3 : 0;
    return 0;
  }
  header_end_ = end + 4;
  std::string_view head = raw.substr(0, end);
  size_t eol = head.find("\r\n");
  std::string_view status_line = head.substr(0, eol);
  // "HTTP/1.1 200 OK"
  if (status_line.size() < 12 || status_line.substr(0, 5) != "HTTP/" || status_line[8] != ' ') {
    fail(ScrapeError::Other, "not an HTTP/1.x response");
    return -1;
  }
  const bool http10 = status_line.substr(5, 3) == "1.0";
  long status = 0;
  auto [p, ec] = std::from_chars(status_line.data() + 9, status_line.data() + 12, status);
  if (ec != std::errc() || p != status_line.data() + 12) {
    fail(ScrapeError::Other, "malformed HTTP status line");
    return -1;
  }
  status_ = status;
  keep_alive_ = !http10;
  bool have_length = false;
  size_t pos = eol == std::string_view::npos ? head.size() : eol + 2;
  while (pos < head.size()) {
    size_t next = head.find("\r\n", pos);
    if (next == std::string_view::npos) next = head.size();
    auto line = head.substr(pos, next - pos);
    pos = next + 2;
    size_t colon = line.find(':');
    if (colon == std::string_view::npos) continue;
    auto name = line.substr(0, colon);
    auto value = trim_blanks(line.substr(colon + 1));
    if (iequals(name, "content-length")) {
      size_t v = 0;
      auto [q, e2] = std::from_chars(value.data(), value.data() + value.size(), v);
      if (e2 != std::errc() || q != value.data() + value.size()) {
        fail(ScrapeError::Other, "malformed Content-Length");
        return -1;
      }
      content_length_ = v;
      have_length = true;
    } else if (iequals(name, "transfer-encoding")) {
      chunked_ = has_token(value, "chunked");
    } else if (iequals(name, "connection")) {
      if (has_token(value, "close")) keep_alive_ = false;
      if (has_token(value, "keep-alive")) keep_alive_ = true;
    } else if (iequals(name, "content-encoding") && !iequals(value, "identity")) {
      // The value comes from the replica: quoted and escaped, never raw into a log.
      fail(ScrapeError::Other, fmt::format("unsupported Content-Encoding {}", quoted(value)));
      return -1;
    }
  }
  if (status != 200) {
    fail(ScrapeError::HttpStatus, fmt::format("HTTP status {}", status));
    return -1;
  }
  if (!chunked_ && have_length && content_length_ > max_body_) {
    fail(ScrapeError::TooLarge, fmt::format("body larger than {} bytes", max_body_));
    return -1;
  }
  close_delimited_ = !chunked_ && !have_length;
  if (close_delimited_) keep_alive_ = false;
  scan_ = header_end_;
  return 1;
}

int HttpResponseParser::parse_chunked() {
  int r = 0;
  for (;;) {
    const std::string_view raw = this->raw();
    if (in_trailer_) {
      r = parse_trailer();
      break;
    }
    if (chunk_left_ > 0) {
      size_t take = std::min(chunk_left_, raw.size() - scan_);
      body_->append(raw.substr(scan_, take));
      scan_ += take;
      chunk_left_ -= take;
      if (chunk_left_ > 0) break;
      chunk_crlf_ = true;
    }
    if (chunk_crlf_) {
      if (raw.size() - scan_ < 2) break;
      if (raw.substr(scan_, 2) != "\r\n") {
        fail(ScrapeError::Other, "malformed chunked encoding");
        return -1;
      }
      scan_ += 2;
      chunk_crlf_ = false;
    }
    size_t eol = raw.find("\r\n", scan_);
    if (eol == std::string_view::npos) {
      if (raw.size() - scan_ > kMaxChunkHeaderBytes) {
        fail(ScrapeError::Other,
             fmt::format("chunk header longer than {} bytes", kMaxChunkHeaderBytes));
        return -1;
      }
      break;
    }
    std::string_view size_text = raw.substr(scan_, eol - scan_);
    size_text = size_text.substr(0, size_text.find(';'));  // chunk extensions
    size_t size = 0;
    auto [p, ec] = std::from_chars(size_text.data(), size_text.data() + size_text.size(), size, 16);
    if (ec == std::errc::result_out_of_range) {
      fail(ScrapeError::TooLarge, fmt::format("body larger than {} bytes", max_body_));
      return -1;
    }
    if (ec != std::errc() || p == size_text.data()) {
      fail(ScrapeError::Other, "malformed chunk size");
      return -1;
    }
    scan_ = eol + 2;
    if (size == 0) {
      in_trailer_ = true;  // then optional trailer lines and an empty line
      continue;
    }
    // body.size() <= max_body_ holds, so this cannot wrap (a sum could).
    if (size > max_body_ - body_->size()) {
      fail(ScrapeError::TooLarge, fmt::format("body larger than {} bytes", max_body_));
      return -1;
    }
    chunk_left_ = size;
  }
  if (r != 0) return r;
  // Drop what was parsed: the buffer keeps only an unfinished line or chunk.
  if (scan_ > header_end_) {
    std::memmove(buf_.data() + header_end_, buf_.data() + scan_, len_ - scan_);
    len_ -= scan_ - header_end_;
    scan_ = header_end_;
  }
  return 0;
}

// Trailer lines after the last chunk, up to the empty line: 1 complete, 0 more,
// -1 failed. Each line is looked at once; their total is bounded.
int HttpResponseParser::parse_trailer() {
  const std::string_view raw = this->raw();
  for (;;) {
    size_t eol = raw.find("\r\n", scan_);
    if (eol == std::string_view::npos) {
      if (trailer_bytes_ + (raw.size() - scan_) > kMaxTrailerBytes) break;
      return 0;
    }
    const size_t line = eol - scan_;
    scan_ = eol + 2;
    trailer_bytes_ += line + 2;
    if (trailer_bytes_ > kMaxTrailerBytes) break;
    if (line > 0) continue;
    if (scan_ != raw.size()) {
      fail(ScrapeError::Other, "bytes after the last chunk");
      return -1;
    }
    return 1;
  }
  fail(ScrapeError::Other, fmt::format("chunked trailer longer than {} bytes", kMaxTrailerBytes));
  return -1;
}

}  // namespace kvlb
