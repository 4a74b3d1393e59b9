#include "fs_mounts.h"

#include <sys/mount.h>
#include <sys/statfs.h>
#include <sys/vfs.h>
#include <linux/magic.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include <fmt/format.h>

namespace kvlb {
namespace fs = std::filesystem;

std::optional<fs::path> find_cgroup2_mount() {
  // mountinfo: id parent major:minor root mountpoint options [optional...] - fstype source
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  while (std::getline(in, line)) {
    auto sep = line.find(" - ");
    if (sep == std::string::npos) continue;
    std::istringstream tail(line.substr(sep + 3));
    std::string fstype;
    tail >> fstype;
    if (fstype != "cgroup2") continue;
    std::istringstream head(line.substr(0, sep));
    std::string id, parent, devno, root, mountpoint;
    head >> id >> parent >> devno >> root >> mountpoint;
    if (!mountpoint.empty()) return fs::path(mountpoint);
  }
  return std::nullopt;
}

static bool fs_magic_is(const fs::path& p, long magic) {
  struct statfs st {};
  return ::statfs(p.c_str(), &st) == 0 && static_cast<long>(st.f_type) == magic;
}

fs::path resolve_cgroup(const std::string& cgroup) {
  auto mount = find_cgroup2_mount();
  if (!mount) throw std::runtime_error("no cgroup v2 hierarchy is mounted");
  fs::path p(cgroup);
  if (p.is_relative()) p = *mount / p;
  std::error_code ec;
  if (!fs::is_directory(p, ec))
    throw std::runtime_error(fmt::format("cgroup {} does not exist", p.string()));
  if (!fs_magic_is(p, CGROUP2_SUPER_MAGIC))
    throw std::runtime_error(fmt::format("{} is not in a cgroup v2 hierarchy (cgroup2 is at {})",
                                         p.string(), mount->string()));
  return p;
}

bool is_bpffs(const fs::path& path) {
  return fs_magic_is(path, BPF_FS_MAGIC);
}

void ensure_bpffs_dir(const fs::path& bpffs_root, const fs::path& dir) {
  std::error_code ec;
  if (!is_bpffs(bpffs_root)) {
    fs::create_directories(bpffs_root, ec);
    if (::mount("bpf", bpffs_root.c_str(), "bpf", 0, "mode=0700") != 0)
      throw std::runtime_error(
          fmt::format("cannot mount bpffs at {}: {}", bpffs_root.string(), std::strerror(errno)));
  }
  fs::create_directories(dir, ec);
  if (ec) throw std::runtime_error(fmt::format("cannot create {}: {}", dir.string(), ec.message()));
  fs::permissions(dir, fs::perms::owner_all, fs::perm_options::replace, ec);
  if (!is_bpffs(dir)) throw std::runtime_error(fmt::format("{} is not on bpffs", dir.string()));
}

}  // namespace kvlb
