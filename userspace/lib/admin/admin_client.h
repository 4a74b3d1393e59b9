// admin_client.h - one HTTP request to a kvlb admin API over its unix socket
// (the agent's, the autoscaler's): kvlbctl and the autoscaler use it. Bounded:
// 5 s for the whole exchange and 16 MiB of answer.
#pragma once

#include <string>

namespace kvlb::admin {

struct Reply {
  long status = 0;  // HTTP status (0: no answer)
  std::string body;
  std::string error;  // "" when the exchange completed
  bool ok() const { return error.empty() && status == 200; }
};

Reply call(const std::string& socket, const std::string& method, const std::string& path);

}  // namespace kvlb::admin
