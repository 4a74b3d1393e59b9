// Any bytes as a replica's HTTP response, split into reads of any size: the
// parser frames it or fails with a reason, and its bounds hold (body at most
// max_body, bytes taken at most max_wire_bytes, memory: no growth past them).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>

#include "scrape/http_response.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  // The first byte picks the read size (1..256), the second the body limit.
  const size_t step = 1 + data[0];
  const size_t max_body = 16 + 64 * static_cast<size_t>(data[1]);
  data += 2;
  size -= 2;
  std::string body;
  kvlb::HttpResponseParser p;
  p.reset(max_body, &body);
  auto status = kvlb::HttpResponseParser::Status::More;
  size_t fed = 0;
  while (fed < size && status == kvlb::HttpResponseParser::Status::More) {
    size_t n = std::min(step, size - fed);
    std::memcpy(p.prepare(n), data + fed, n);
    status = p.commit(n);
    fed += n;
  }
  if (status == kvlb::HttpResponseParser::Status::More) status = p.on_eof();
  if (body.size() > max_body) std::abort();
  if (fed > p.max_wire_bytes() + step) std::abort();
  if (status == kvlb::HttpResponseParser::Status::Failed) {
    if (p.detail().empty() || !body.empty()) std::abort();
    for (unsigned char c : p.detail())
      if (c < 0x20 || c == 0x7f) std::abort();
  }
  return 0;
}
