// kernel_socket_closer.h - keep-alive rebalancing in the kernel: the socket
// iterator of bpf/rebalance.bpf.c over the socket LB's pinned maps.
//
// A TCP socket iterator walks the sockets of the network namespace it is
// created in; the balanced clients live in the namespaces of the processes in
// the balanced cgroup (pods, or the harness's client namespaces). Each round
// lists those namespaces from the cgroup's processes and, on a worker thread
// that enters each in turn (setns: that thread only), creates and reads one
// iterator there.
#pragma once

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "dataplane/dataplane.h"
#include "dataplane/socket_closer.h"

namespace kvlb {

// "" when this kernel can close sockets from an iterator (bpf_sock_destroy(),
// Linux 6.5), else why not.
std::string socket_closer_unsupported();

// The network namespaces of the processes in `cgroup` and its descendants, one
// /proc/<pid>/ns/net path per namespace (the first process found in it); at
// most `max` namespaces. What could not be looked at goes to `errors`: a
// process listed as pid 0 (it is outside the agent's pid namespace: the agent
// needs hostPID) or whose namespace cannot be read (CAP_SYS_PTRACE).
std::vector<std::string> cgroup_network_namespaces(const std::filesystem::path& cgroup,
                                                   std::vector<std::string>* errors = nullptr,
                                                   size_t max = 4096);

class KernelSocketCloser : public SocketCloser {
 public:
  // Loads the iterator over the maps pinned in pin_dir (the socket LB's data
  // plane loads first). Throws std::runtime_error with the reason (the kernel
  // lacks bpf_sock_destroy(), the verifier refused...).
  static std::unique_ptr<KernelSocketCloser> open(const std::filesystem::path& pin_dir,
                                                  const std::filesystem::path& cgroup);
  // Loads the iterator with private maps and reports what the verifier accepted
  // (kvlb-bpf-check); nothing is pinned.
  static ProgramStats verify();
  ~KernelSocketCloser() override;
  KernelSocketCloser(const KernelSocketCloser&) = delete;
  KernelSocketCloser& operator=(const KernelSocketCloser&) = delete;

  void set_shed(const std::vector<std::pair<uint32_t, uint32_t>>& shed) override;
  CloseRound close_idle(uint64_t idle_ns, uint32_t budget) override;

 private:
  struct Impl;
  explicit KernelSocketCloser(std::unique_ptr<Impl> impl);
  // On the round's worker thread: enter each namespace, read one iterator there.
  static void walk_namespaces(const std::vector<std::string>& namespaces, int link_fd,
                              CloseRound& r);
  std::unique_ptr<Impl> impl_;
};

}  // namespace kvlb
