// http_response.h - one HTTP/1.1 response to a GET, framed and parsed from its
// bytes as they arrive: status line and headers, then the body by
// Content-Length, chunked encoding or connection close.
//
// Everything is bounded, since the bytes come from a replica: the head 64 KiB,
// a chunk header 1 KiB, trailers 16 KiB, the body `max_body`, and the bytes on
// the wire twice the body limit plus a head (framing overhead of a legitimate
// page is a few percent). A chunked body is copied out as it is parsed and its
// framing dropped from the buffer, so memory stays at the body plus one read.
// No I/O: HttpTransfer feeds it from its socket, the fuzz target from bytes.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "scrape/scrape_result.h"

namespace kvlb {

class HttpResponseParser {
 public:
  enum class Status { More, Done, Failed };

  // Starts a new response; the body is written into *body (cleared first;
  // its capacity is kept from response to response).
  void reset(size_t max_body, std::string* body);
  // Space for up to `n` more bytes; then commit() the number written there.
  char* prepare(size_t n);
  Status commit(size_t n);
  // The peer closed the connection: a close-delimited body ends here.
  Status on_eof();

  bool started() const { return received_ > 0; }
  long http_status() const { return status_; }
  bool keep_alive() const { return keep_alive_; }
  ScrapeError error() const { return error_; }
  const std::string& detail() const { return detail_; }
  size_t max_wire_bytes() const;

 private:
  // 1 complete, 0 more to come, -1 failed (error_ set).
  int parse();
  int parse_head();
  int parse_chunked();
  int parse_trailer();
  int fail(ScrapeError e, std::string detail);

  size_t max_body_ = 0;
  std::string* body_ = nullptr;
  std::vector<char> buf_;  // only grows: std::string::resize would zero each read
  size_t len_ = 0;         // raw() = buf_[0, len_): received and not yet dropped
  std::string_view raw() const { return {buf_.data(), len_}; }
  size_t received_ = 0;
  size_t head_scan_ = 0;   // where the search for the end of the head resumes
  size_t header_end_ = 0;  // 0 until the head is complete
  long status_ = 0;
  bool chunked_ = false;
  bool close_delimited_ = false;
  bool keep_alive_ = true;
  size_t content_length_ = 0;
  size_t scan_ = 0;        // chunked: next unparsed byte of raw()
  size_t chunk_left_ = 0;  // chunked: bytes of the current chunk still to copy
  bool chunk_crlf_ = false;
  bool in_trailer_ = false;
  size_t trailer_bytes_ = 0;
  ScrapeError error_ = ScrapeError::None;
  std::string detail_;
};

}  // namespace kvlb
