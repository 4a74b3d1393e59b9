// scrape_result.h - the outcome of one scrape of one target.
#pragma once

#include <chrono>
#include <string>
#include <string_view>

namespace kvlb {

enum class ScrapeError { None, Timeout, TooLarge, Connect, HttpStatus, Other };
std::string_view scrape_error_name(ScrapeError e);

struct ScrapeResult {
  ScrapeError error = ScrapeError::None;
  std::string detail;  // human-readable reason when error != None
  long http_status = 0;
  std::string body;
  std::chrono::nanoseconds latency{0};
  bool ok() const { return error == ScrapeError::None; }
};

}  // namespace kvlb
