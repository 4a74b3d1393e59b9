// fs_mounts.h - finding the cgroup v2 mount and making sure bpffs is mounted.
#pragma once

#include <filesystem>
#include <optional>
#include <string>

namespace kvlb {

// The mount point of the cgroup v2 hierarchy, read from /proc/self/mountinfo
// (it is /sys/fs/cgroup on unified hosts, /sys/fs/cgroup/unified on hybrid ones).
std::optional<std::filesystem::path> find_cgroup2_mount();

// Resolves a cgroup given as an absolute path inside the cgroup2 mount, or as a
// path relative to that mount. Throws std::runtime_error when it is not a
// directory of a cgroup v2 hierarchy.
std::filesystem::path resolve_cgroup(const std::string& cgroup);

// True when `path` lies on a bpffs instance.
bool is_bpffs(const std::filesystem::path& path);

// Makes sure `dir` exists on bpffs: mounts bpffs at `bpffs_root` when nothing is
// mounted there yet, then creates `dir` (mode 0700: pins are for root only).
// Throws std::runtime_error with the reason on failure.
void ensure_bpffs_dir(const std::filesystem::path& bpffs_root, const std::filesystem::path& dir);

}  // namespace kvlb
