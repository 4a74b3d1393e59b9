// nats_score_bus.h - the score bus over NATS core (the C client, libnats):
// publish and subscribe on plain subjects, reconnecting forever across the
// configured servers (a NATS cluster of three is the documented deployment),
// TLS verified against a CA file, per-agent credentials.
#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "cluster/score_bus.h"

namespace kvlb::cluster {

struct NatsOptions {
  std::vector<std::string> servers;  // nats://host:port or tls://host:port
  std::string name;                  // the connection's name on the server (agent id)
  std::string ca_file;               // set: TLS, the server verified against this CA
  std::string credentials_file;      // a .creds file (user JWT and nkey seed)
  std::string user, password;        // or user and password
  // Messages taken per drain() at most; the rest wait in the client (65,536
  // per subscription at most, beyond that dropped and counted).
  size_t inbox_limit = 4096;
  int reconnect_wait_ms = 250;
};

class NatsScoreBus : public ScoreBus {
 public:
  // Does not wait for a server: with none reachable it keeps trying in the
  // background and connected() stays false. Throws std::runtime_error for
  // options the client refuses (a CA file that does not load, ...).
  explicit NatsScoreBus(const NatsOptions& o);
  ~NatsScoreBus() override;
  NatsScoreBus(const NatsScoreBus&) = delete;
  NatsScoreBus& operator=(const NatsScoreBus&) = delete;

  bool connected() const override;
  bool publish(const std::string& subject, const std::string& data) override;
  void subscribe(const std::vector<std::string>& subjects) override;
  std::vector<BusMessage> drain() override;
  BusStats stats() const override;
  void flush(int timeout_ms) override;
  // The server this connection is on ("" when none).
  std::string server() const;

  struct State;  // counters the client's threads update (disconnects, slow consumers)

 private:
  struct Handles;  // the connection and subscriptions, destroyed in order
  NatsOptions opts_;
  std::unique_ptr<State> state_;
  std::unique_ptr<Handles> h_;
};

}  // namespace kvlb::cluster
