#include "common/failpoint.h"

#include <cstdlib>
#include <map>
#include <mutex>
#include <stdexcept>
#include <string>

#include "common/strings.h"

namespace kvlb {
namespace {

struct Armed {
  unsigned at = 0;  // fail on this hit (1-based); 0: on every hit
  unsigned hits = 0;
};

}  // namespace

void failpoint(std::string_view name) {
  static std::map<std::string, Armed, std::less<>> armed = [] {
    std::map<std::string, Armed, std::less<>> out;
    const char* env = std::getenv("KVLB_FAILPOINTS");
    for (const auto& item : split_list(env ? env : "")) {
      auto at = item.find('@');
      Armed a;
      if (at != std::string::npos) a.at = static_cast<unsigned>(std::atoi(item.c_str() + at + 1));
      out[item.substr(0, at)] = a;
    }
    return out;
  }();
  static std::mutex mu;
  if (armed.empty()) return;
  std::lock_guard lock(mu);
  auto it = armed.find(name);
  if (it == armed.end()) return;
  ++it->second.hits;
  if (it->second.at == 0 || it->second.at == it->second.hits)
    throw std::runtime_error("failpoint " + std::string(name));
}

}  // namespace kvlb
