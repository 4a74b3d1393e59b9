// strings.h - small string helpers shared by the command-line tools.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace kvlb {

// "a,b,,c" -> {"a", "b", "c"}: the items of a separated list, empty ones skipped.
inline std::vector<std::string> split_list(std::string_view text, char sep = ',') {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= text.size()) {
    size_t end = text.find(sep, start);
    if (end == std::string_view::npos) end = text.size();
    if (end > start) out.emplace_back(text.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

}  // namespace kvlb
