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

// Makes sure `dir`, a directory below `bpffs_root`, exists on bpffs and is safe
// for root's pins, without following a symlink anywhere below the root:
//   - `bpffs_root` must be a bpffs mount; when nothing is mounted there, bpffs is
//     mounted (mode 0700) only if it is /sys/fs/bpf or below it;
//   - each directory from the root to `dir` is opened with O_NOFOLLOW (created
//     mode 0700 when missing) and must be on bpffs, owned by the caller's user
//     and not writable by group or others; `dir` itself is then set to 0700
//     through its descriptor (never by path).
// A pre-created directory owned by another user, a symlink, or a directory others
// may write to is refused with the reason. Throws std::runtime_error.
void ensure_bpffs_dir(const std::filesystem::path& bpffs_root, const std::filesystem::path& dir);

}  // namespace kvlb
