// in_memory_score_bus.h - the score bus inside one process: a hub that every
// bus attached to it publishes through. For unit tests of the cluster logic;
// `set_connected(false)` stands for a lost NATS connection.
#pragma once

#include <memory>
#include <mutex>
#include <set>

#include "cluster/score_bus.h"

namespace kvlb::cluster {

class InMemoryHub;

class InMemoryScoreBus : public ScoreBus {
 public:
  InMemoryScoreBus(std::shared_ptr<InMemoryHub> hub, size_t inbox_limit = 4096);
  ~InMemoryScoreBus() override;
  bool connected() const override;
  bool publish(const std::string& subject, const std::string& data) override;
  void subscribe(const std::vector<std::string>& subjects) override;
  std::vector<BusMessage> drain() override;
  BusStats stats() const override;
  void flush(int) override {}

  void set_connected(bool up);
  void deliver(const BusMessage& m);  // the hub's side

 private:
  std::shared_ptr<InMemoryHub> hub_;
  size_t inbox_limit_;
  mutable std::mutex mu_;
  bool connected_ = true;
  std::set<std::string> subjects_;
  std::vector<BusMessage> inbox_;
  BusStats stats_;
};

class InMemoryHub {
 public:
  void attach(InMemoryScoreBus* bus);
  void detach(InMemoryScoreBus* bus);
  void route(const BusMessage& m);

 private:
  std::mutex mu_;
  std::set<InMemoryScoreBus*> buses_;
};

}  // namespace kvlb::cluster
