#include "cluster/in_memory_score_bus.h"

namespace kvlb::cluster {

InMemoryScoreBus::InMemoryScoreBus(std::shared_ptr<InMemoryHub> hub, size_t inbox_limit)
    : hub_(std::move(hub)), inbox_limit_(inbox_limit) {
  hub_->attach(this);
}

InMemoryScoreBus::~InMemoryScoreBus() {
  hub_->detach(this);
}

bool InMemoryScoreBus::connected() const {
  std::lock_guard lock(mu_);
  return connected_;
}

bool InMemoryScoreBus::publish(const std::string& subject, const std::string& data) {
  {
    std::lock_guard lock(mu_);
    if (!connected_) {
      ++stats_.publish_errors;
      return false;
    }
    ++stats_.published;
    stats_.publish_bytes += data.size();
  }
  hub_->route({subject, data});
  return true;
}

void InMemoryScoreBus::subscribe(const std::vector<std::string>& subjects) {
  std::lock_guard lock(mu_);
  subjects_ = {subjects.begin(), subjects.end()};
}

std::vector<BusMessage> InMemoryScoreBus::drain() {
  std::lock_guard lock(mu_);
  std::vector<BusMessage> out;
  out.swap(inbox_);
  return out;
}

BusStats InMemoryScoreBus::stats() const {
  std::lock_guard lock(mu_);
  return stats_;
}

void InMemoryScoreBus::set_connected(bool up) {
  std::lock_guard lock(mu_);
  if (connected_ && !up) ++stats_.disconnects;
  if (!connected_ && up) ++stats_.reconnects;
  connected_ = up;
}

void InMemoryScoreBus::deliver(const BusMessage& m) {
  std::lock_guard lock(mu_);
  if (!connected_ || !subjects_.count(m.subject)) return;
  if (inbox_.size() >= inbox_limit_) {
    ++stats_.dropped;
    return;
  }
  ++stats_.received;
  stats_.received_bytes += m.data.size();
  inbox_.push_back(m);
}

void InMemoryHub::attach(InMemoryScoreBus* bus) {
  std::lock_guard lock(mu_);
  buses_.insert(bus);
}

void InMemoryHub::detach(InMemoryScoreBus* bus) {
  std::lock_guard lock(mu_);
  buses_.erase(bus);
}

void InMemoryHub::route(const BusMessage& m) {
  std::lock_guard lock(mu_);
  for (auto* b : buses_) b->deliver(m);
}

}  // namespace kvlb::cluster
