#include "cluster/nats_score_bus.h"

#include <nats/nats.h>

#include <map>

#include <stdexcept>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

namespace kvlb::cluster {

struct NatsScoreBus::State {
  size_t inbox_limit = 0;
  std::mutex mu;
  BusStats stats;
};

namespace {

void check(natsStatus s, const char* what) {
  if (s != NATS_OK)
    throw std::runtime_error(fmt::format("nats: {}: {}", what, natsStatus_GetText(s)));
}

struct OptionsDeleter {
  void operator()(natsOptions* o) const { natsOptions_Destroy(o); }
};
struct ConnectionDeleter {
  void operator()(natsConnection* c) const {
    natsConnection_Close(c);
    natsConnection_Destroy(c);
  }
};
struct SubscriptionDeleter {
  void operator()(natsSubscription* s) const {
    natsSubscription_Unsubscribe(s);
    natsSubscription_Destroy(s);
  }
};

void on_disconnected(natsConnection*, void* closure) {
  auto* st = static_cast<NatsScoreBus::State*>(closure);
  std::lock_guard lock(st->mu);
  ++st->stats.disconnects;
}

void on_reconnected(natsConnection*, void* closure) {
  auto* st = static_cast<NatsScoreBus::State*>(closure);
  std::lock_guard lock(st->mu);
  ++st->stats.reconnects;
}

void on_error(natsConnection*, natsSubscription*, natsStatus err, void* closure) {
  auto* st = static_cast<NatsScoreBus::State*>(closure);
  // The client drops messages for a subscription that is not drained fast
  // enough (slow consumer): counted as dropped like the inbox's own refusals.
  if (err == NATS_SLOW_CONSUMER) {
    std::lock_guard lock(st->mu);
    ++st->stats.dropped;
  }
}

}  // namespace

struct NatsScoreBus::Handles {
  std::unique_ptr<natsConnection, ConnectionDeleter> conn;
  std::map<std::string, std::unique_ptr<natsSubscription, SubscriptionDeleter>> subs;
  ~Handles() {
    subs.clear();  // before the connection they belong to
    conn.reset();
  }
};

NatsScoreBus::NatsScoreBus(const NatsOptions& o)
    : opts_(o), state_(std::make_unique<State>()), h_(std::make_unique<Handles>()) {
  state_->inbox_limit = o.inbox_limit;
  if (o.servers.empty()) throw std::runtime_error("nats: no servers");
  natsOptions* raw = nullptr;
  check(natsOptions_Create(&raw), "options");
  std::unique_ptr<natsOptions, OptionsDeleter> opts(raw);
  std::vector<const char*> urls;
  for (const auto& s : o.servers) urls.push_back(s.c_str());
  check(natsOptions_SetServers(opts.get(), urls.data(), static_cast<int>(urls.size())), "servers");
  if (!o.name.empty()) check(natsOptions_SetName(opts.get(), o.name.c_str()), "name");
  if (!o.ca_file.empty()) {
    check(natsOptions_SetSecure(opts.get(), true), "TLS");
    check(natsOptions_LoadCATrustedCertificates(opts.get(), o.ca_file.c_str()), "CA file");
  }
  if (!o.credentials_file.empty())
    check(natsOptions_SetUserCredentialsFromFiles(opts.get(), o.credentials_file.c_str(), nullptr),
          "credentials file");
  if (!o.user.empty())
    check(natsOptions_SetUserInfo(opts.get(), o.user.c_str(), o.password.c_str()), "user");
  // Reconnect forever, across the servers in random order (the client's
  // default), quickly: an agent off the bus falls back to scraping itself.
  check(natsOptions_SetAllowReconnect(opts.get(), true), "reconnect");
  check(natsOptions_SetMaxReconnect(opts.get(), -1), "reconnect");
  check(natsOptions_SetReconnectWait(opts.get(), o.reconnect_wait_ms), "reconnect wait");
  check(natsOptions_SetTimeout(opts.get(), 2000), "timeout");
  // A server that stops answering without closing the socket is noticed in ~3 s.
  check(natsOptions_SetPingInterval(opts.get(), 1000), "ping interval");
  check(natsOptions_SetMaxPingsOut(opts.get(), 2), "pings");
  // An agent does not need its own messages back.
  check(natsOptions_SetNoEcho(opts.get(), true), "no echo");
  // A publish is written by the caller at once (one or two per round), not
  // handed to the client's flusher thread: measured, the thread wake-ups per
  // message were most of an agent's CPU.
  check(natsOptions_SetSendAsap(opts.get(), true), "send asap");
  check(natsOptions_SetDisconnectedCB(opts.get(), on_disconnected, state_.get()), "callbacks");
  check(natsOptions_SetReconnectedCB(opts.get(), on_reconnected, state_.get()), "callbacks");
  check(natsOptions_SetErrorHandler(opts.get(), on_error, state_.get()), "callbacks");
  // Start even with no server up: the connection is made in the background.
  check(natsOptions_SetRetryOnFailedConnect(opts.get(), true, nullptr, nullptr), "retry");
  natsConnection* conn = nullptr;
  natsStatus s = natsConnection_Connect(&conn, opts.get());
  if (s != NATS_OK && s != NATS_NOT_YET_CONNECTED) check(s, "connect");
  h_->conn.reset(conn);
}

NatsScoreBus::~NatsScoreBus() {
  h_.reset();
}

bool NatsScoreBus::connected() const {
  return natsConnection_Status(h_->conn.get()) == NATS_CONN_STATUS_CONNECTED;
}

bool NatsScoreBus::publish(const std::string& subject, const std::string& data) {
  natsStatus s = natsConnection_Publish(h_->conn.get(), subject.c_str(), data.data(),
                                        static_cast<int>(data.size()));
  std::lock_guard lock(state_->mu);
  if (s != NATS_OK) {
    ++state_->stats.publish_errors;
    return false;
  }
  ++state_->stats.published;
  state_->stats.publish_bytes += data.size();
  return true;
}

void NatsScoreBus::subscribe(const std::vector<std::string>& subjects) {
  std::map<std::string, std::unique_ptr<natsSubscription, SubscriptionDeleter>> next;
  for (const auto& subj : subjects) {
    if (auto it = h_->subs.find(subj); it != h_->subs.end()) {
      next.emplace(subj, std::move(it->second));
      continue;
    }
    // Synchronous: the agent's loop takes what arrived once per round
    // (drain()), so no delivery thread is woken per message.
    natsSubscription* sub = nullptr;
    check(natsConnection_SubscribeSync(&sub, h_->conn.get(), subj.c_str()), "subscribe");
    std::unique_ptr<natsSubscription, SubscriptionDeleter> owned(sub);
    check(natsSubscription_SetPendingLimits(sub, 65536, 64 << 20), "pending limits");
    next.emplace(subj, std::move(owned));
  }
  h_->subs = std::move(next);  // the ones not kept are unsubscribed here
}

std::vector<BusMessage> NatsScoreBus::drain() {
  std::vector<BusMessage> out;
  uint64_t bytes = 0;
  for (auto& [subject, sub] : h_->subs) {
    while (out.size() < state_->inbox_limit) {
      natsMsg* msg = nullptr;
      if (natsSubscription_NextMsg(&msg, sub.get(), 0) != NATS_OK || !msg) break;
      const int n = natsMsg_GetDataLength(msg);
      bytes += static_cast<uint64_t>(n);
      out.push_back({natsMsg_GetSubject(msg), std::string(natsMsg_GetData(msg), n)});
      natsMsg_Destroy(msg);
    }
  }
  std::lock_guard lock(state_->mu);
  state_->stats.received += out.size();
  state_->stats.received_bytes += bytes;
  return out;
}

BusStats NatsScoreBus::stats() const {
  std::lock_guard lock(state_->mu);
  return state_->stats;
}

void NatsScoreBus::flush(int timeout_ms) {
  natsConnection_FlushTimeout(h_->conn.get(), timeout_ms);
}

std::string NatsScoreBus::server() const {
  char buf[256] = {};
  if (natsConnection_GetConnectedUrl(h_->conn.get(), buf, sizeof(buf)) != NATS_OK) return "";
  return buf;
}

}  // namespace kvlb::cluster
