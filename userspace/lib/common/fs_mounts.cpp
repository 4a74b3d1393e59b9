#include "fs_mounts.h"

#include <sys/mount.h>
#include <sys/statfs.h>
#include <sys/vfs.h>
#include <sys/stat.h>
#include <fcntl.h>
#include <unistd.h>
#include <linux/magic.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include <fmt/format.h>

#include "common/unique_fd.h"

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

namespace {

bool under_sys_fs_bpf(const fs::path& p) {
  auto rel = p.lexically_normal().lexically_relative("/sys/fs/bpf");
  return !rel.empty() && *rel.begin() != "..";
}

// One directory already opened: on bpffs, owned by us, not writable by others.
void check_pin_dir(int fd, const fs::path& path) {
  struct statfs sfs {};
  if (::fstatfs(fd, &sfs) != 0 || static_cast<long>(sfs.f_type) != BPF_FS_MAGIC)
    throw std::runtime_error(fmt::format("{} is not on bpffs", path.string()));
  struct stat st {};
  if (::fstat(fd, &st) != 0)
    throw std::runtime_error(fmt::format("stat {}: {}", path.string(), std::strerror(errno)));
  if (st.st_uid != ::geteuid())
    throw std::runtime_error(fmt::format(
        "{} is owned by uid {}, not by the agent's user (uid {}): another user may have "
        "created it to capture the pins; remove it",
        path.string(), st.st_uid, ::geteuid()));
  if (st.st_mode & (S_IWGRP | S_IWOTH))
    throw std::runtime_error(
        fmt::format("{} is writable by group or others (mode {:o}): pins must be root's alone",
                    path.string(), st.st_mode & 07777));
}

}  // namespace

void ensure_bpffs_dir(const fs::path& bpffs_root, const fs::path& dir) {
  const fs::path root = bpffs_root.lexically_normal();
  const fs::path rel = dir.lexically_normal().lexically_relative(root);
  if (!root.is_absolute() || rel.empty() || rel == "." || *rel.begin() == "..")
    throw std::runtime_error(
        fmt::format("{} is not a directory below {}", dir.string(), root.string()));
  for (const auto& part : rel)
    if (part == ".." || part == ".")
      throw std::runtime_error(fmt::format("{}: no '..' or '.' allowed", dir.string()));

  if (!is_bpffs(root)) {
    if (!under_sys_fs_bpf(root))
      throw std::runtime_error(
          fmt::format("{} is not a bpffs mount, and kvlb mounts bpffs only at or below /sys/fs/bpf "
                      "(mount it there yourself, or use /sys/fs/bpf)",
                      root.string()));
    std::error_code ec;
    fs::create_directories(root, ec);
    if (::mount("bpf", root.c_str(), "bpf", 0, "mode=0700") != 0)
      throw std::runtime_error(
          fmt::format("cannot mount bpffs at {}: {}", root.string(), std::strerror(errno)));
  }
  UniqueFd cur(::open(root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!cur)
    throw std::runtime_error(fmt::format("open {}: {}", root.string(), std::strerror(errno)));
  fs::path here = root;
  for (const auto& part : rel) {
    here /= part;
    if (::mkdirat(cur.get(), part.c_str(), 0700) != 0 && errno != EEXIST)
      throw std::runtime_error(
          fmt::format("cannot create {}: {}", here.string(), std::strerror(errno)));
    UniqueFd next(
        ::openat(cur.get(), part.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!next)
      throw std::runtime_error(
          fmt::format("open {}: {}{}", here.string(), std::strerror(errno),
                      errno == ELOOP || errno == ENOTDIR ? " (a symlink or a file: refused)" : ""));
    check_pin_dir(next.get(), here);
    cur = std::move(next);
  }
  if (::fchmod(cur.get(), 0700) != 0)
    throw std::runtime_error(fmt::format("chmod {}: {}", dir.string(), std::strerror(errno)));
}

}  // namespace kvlb
