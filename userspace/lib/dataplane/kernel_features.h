// kernel_features.h - what kvlb's programs need from the kernel, and a check
// that names the first missing piece in one line instead of a verifier dump.
//
// The minimum kernel is Linux 5.18 (bpf_set_retval() in cgroup sock_addr
// programs is the newest need). Debian 12's 6.1 and every later kernel have all
// of it; the kernel matrix (scripts/kernel-matrix) loads the programs on them.
#pragma once

#include <functional>
#include <string>
#include <vector>

namespace kvlb {

// One requirement: a program type with an attach type, optionally calling a helper.
struct KernelFeature {
  std::string name;   // what an operator reads: "bpf_loop() helper"
  std::string since;  // first Linux version with it: "5.17"
  std::string used_for;
  unsigned prog_type = 0;    // enum bpf_prog_type
  unsigned attach_type = 0;  // enum bpf_attach_type (expected_attach_type)
  int helper = -1;           // enum bpf_func_id, or -1: the hook alone
};

// Every feature kvlb's socket load balancer uses, oldest first.
const std::vector<KernelFeature>& socket_lb_features();

// The minimum Linux version: the newest `since` among the features.
std::string minimum_kernel();

// Answers "does this kernel have it?"; the real one loads a two-instruction
// program (probe_kernel_feature), tests substitute their own.
using FeatureProbe = std::function<bool(const KernelFeature&)>;

// Loads a minimal program of the feature's type and attach type (calling its
// helper, if any) and tells whether the kernel knows them. Needs CAP_BPF.
bool probe_kernel_feature(const KernelFeature& f);

// The features `probe` says are missing (empty when all are there).
std::vector<KernelFeature> missing_kernel_features(const FeatureProbe& probe);

// Throws std::runtime_error with one line naming the first missing feature, the
// kernel it arrived in and the running kernel's release, e.g. "this kernel
// (5.15.0-91) lacks bpf_set_retval() in cgroup sock_addr programs (Linux 5.18,
// used to refuse connect() with an errno): kvlb needs Linux 5.18 or newer".
void require_kernel_features(const FeatureProbe& probe = probe_kernel_feature);

// The running kernel's release (uname -r).
std::string kernel_release();

}  // namespace kvlb
