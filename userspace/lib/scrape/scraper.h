// scraper.h - concurrent HTTP GETs of /metrics endpoints over libcurl multi.
//
// One easy handle per target is kept between rounds, so each target's TCP
// connection is reused (keep-alive). Every transfer has a hard timeout and a hard
// body-size limit; a round returns when every target has answered or failed.
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>
#include <vector>

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

struct ScrapeOptions {
  std::chrono::milliseconds timeout{1000};
  size_t max_body_bytes = 4 * 1024 * 1024;
  uint32_t socket_mark = 0;  // SO_MARK on every scrape socket (0: none)
};

class Scraper {
 public:
  explicit Scraper(ScrapeOptions opts);
  ~Scraper();
  Scraper(const Scraper&) = delete;
  Scraper& operator=(const Scraper&) = delete;

  // Replaces the target list (URLs); handles of unchanged URLs are kept.
  void set_targets(const std::vector<std::string>& urls);
  // Scrapes every target concurrently; results are in target order.
  std::vector<ScrapeResult> scrape_all();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace kvlb
