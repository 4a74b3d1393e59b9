// scraper.h - concurrent HTTP GETs of /metrics endpoints over libcurl multi.
//
// One easy handle per target is kept between rounds, so each target's TCP
// connection is reused (keep-alive). Every transfer has a hard timeout and a hard
// body-size limit; a round returns when every target has answered or failed.
// Transfers are driven by curl's socket API on an epoll set (curl_multi_socket_
// action): a wake-up costs in proportion to the sockets that are ready, not to
// the number of targets, which is what keeps a thousand targets at 20 Hz cheap.
// Bodies are received into buffers kept from round to round.
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "scrape/scrape_result.h"

namespace kvlb {

// Which HTTP client scrapes a target. Auto: kvlb's own HTTP/1.1 transfer
// (http_transfer.h) for http:// URLs with a literal IP address, libcurl for the
// rest (https, host names). Curl: libcurl for every target.
enum class ScrapeClient { Auto, Curl };

struct ScrapeOptions {
  std::chrono::milliseconds timeout{1000};
  size_t max_body_bytes = 4 * 1024 * 1024;
  uint32_t socket_mark = 0;  // SO_MARK on every scrape socket (0: none)
  ScrapeClient client = ScrapeClient::Auto;
};

class Scraper {
 public:
  explicit Scraper(ScrapeOptions opts);
  ~Scraper();
  Scraper(const Scraper&) = delete;
  Scraper& operator=(const Scraper&) = delete;

  // Replaces the target list (URLs); handles of unchanged URLs are kept.
  void set_targets(const std::vector<std::string>& urls);
  // Scrapes every target concurrently; results are in target order and stay
  // valid until the next scrape_all() or set_targets().
  const std::vector<ScrapeResult>& scrape_all();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace kvlb
