// runtime.h - kvlb-autoscaler's rounds: every interval, for each service,
// observe (the agent's scores and in-flight counts, the workload's scale and
// pods), let the scaler decide (autoscale/scaler.h), and carry out its actions
// against Kubernetes and the agent, only while this process holds the lease.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "autoscale/scaler.h"
#include "autoscaler/config.h"
#include "k8s/kube_client.h"
#include "k8s/pods.h"

namespace kvlb::autoscaler {

class Runtime {
 public:
  // `is_leader` is asked before every write: losing the lease stops a round's
  // remaining actions at once.
  Runtime(AutoscalerConfig cfg, k8s::KubeClient client, bool dry_run,
          std::function<bool()> is_leader);

  // One round at monotonic time `now`.
  void round(autoscale::Millis now);
  // Leadership was lost: drains this process started are undone and every
  // scaler starts afresh (a new leader decides from what it sees).
  void lost_leadership();

  nlohmann::json status() const;
  std::string metrics() const;

 private:
  struct Service {
    ServiceConfig cfg;
    std::unique_ptr<autoscale::Scaler> scaler;
    int32_t spec = 0, seen_pods = 0;
    std::string last_error;
    std::map<std::string, uint64_t> errors;  // by kind
    std::string last_event;
  };
  bool act(Service& s, const std::vector<autoscale::Action>& actions);
  bool agent_drain(const std::string& address, bool on, std::string& err);
  void sync_drain_labels(Service& s, const std::vector<k8s::PodInfo>& pods);

  AutoscalerConfig cfg_;
  k8s::KubeClient client_;
  bool dry_run_;
  std::function<bool()> is_leader_;
  mutable std::mutex mu_;  // status()/metrics() run on the admin thread
  std::vector<Service> services_;
  uint64_t rounds_ = 0, agent_errors_ = 0;
};

}  // namespace kvlb::autoscaler
