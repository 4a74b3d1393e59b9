#include "cluster/nats_score_bus.h"

#include <nats/nats.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <map>

#include <stdexcept>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

namespace kvlb::cluster {

struct NatsScoreBus::State {
  size_t inbox_limit = 0;
  std::mutex mu;
  BusStats stats;
  // The client's callbacks run on its own thread, also after the connection
  // is destroyed: the destructor waits for the closed callback (the last one
  // the client delivers) before this state goes away.
  std::condition_variable closed_cv;
  bool closed = false;
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

void on_closed(natsConnection*, void* closure) {
  auto* st = static_cast<NatsScoreBus::State*>(closure);
  std::lock_guard lock(st->mu);
  st->closed = true;
  st->closed_cv.notify_all();
}

void on_error(natsConnection*, natsSubscription*, natsStatus, void*) {
  // Slow consumers (a subscription past its pending limits) are counted from
  // natsSubscription_GetDropped in drain(); nothing else needs handling here.
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
  check(natsOptions_SetClosedCB(opts.get(), on_closed, state_.get()), "callbacks");
  // A write that cannot proceed (a peer gone silent, a full socket buffer)
  // fails after this long instead of blocking the agent's loop.
  check(natsOptions_SetWriteDeadline(opts.get(), 200), "write deadline");
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
  // Not connected: nothing is buffered for later. A score queued now would
  // arrive after the reconnect carrying the age it had when queued.
  if (!connected()) {
    std::lock_guard lock(state_->mu);
    ++state_->stats.publish_errors;
    return false;
  }
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
  // New subscriptions first: if one fails, nothing already held is lost.
  std::map<std::string, std::unique_ptr<natsSubscription, SubscriptionDeleter>> fresh;
  for (const auto& subj : subjects) {
    if (h_->subs.count(subj) || fresh.count(subj)) continue;
    // Synchronous: the agent's loop takes what arrived once per round
    // (drain()), so no delivery thread is woken per message.
    natsSubscription* sub = nullptr;
    check(natsConnection_SubscribeSync(&sub, h_->conn.get(), subj.c_str()), "subscribe");
    std::unique_ptr<natsSubscription, SubscriptionDeleter> owned(sub);
    check(natsSubscription_SetPendingLimits(sub, 65536, 64 << 20), "pending limits");
    fresh.emplace(subj, std::move(owned));
  }
  std::map<std::string, std::unique_ptr<natsSubscription, SubscriptionDeleter>> next;
  for (const auto& subj : subjects) {
    if (auto it = h_->subs.find(subj); it != h_->subs.end()) {
      next.emplace(subj, std::move(it->second));
    } else if (auto f = fresh.find(subj); f != fresh.end()) {
      next.emplace(subj, std::move(f->second));
    }
  }
  h_->subs = std::move(next);  // the ones not kept are unsubscribed here
}

std::vector<BusMessage> NatsScoreBus::drain() {
  // At most inbox_limit messages a call, shared out over the subscriptions so
  // a flood on one subject cannot starve the others; what is left waits in the
  // client for the next round (beyond its pending limits the client drops, and
  // natsSubscription_GetDropped counts).
  std::vector<BusMessage> out;
  uint64_t bytes = 0, dropped = 0;
  const size_t share =
      std::max<size_t>(1, state_->inbox_limit / std::max<size_t>(1, h_->subs.size()));
  for (auto& [subject, sub] : h_->subs) {
    for (size_t n = 0; n < share; ++n) {
      natsMsg* msg = nullptr;
      if (natsSubscription_NextMsg(&msg, sub.get(), 0) != NATS_OK || !msg) break;
      const int len = natsMsg_GetDataLength(msg);
      bytes += static_cast<uint64_t>(len);
      out.push_back({natsMsg_GetSubject(msg), std::string(natsMsg_GetData(msg), len)});
      natsMsg_Destroy(msg);
    }
    int64_t d = 0;
    if (natsSubscription_GetDropped(sub.get(), &d) == NATS_OK && d > 0) dropped += d;
  }
  std::lock_guard lock(state_->mu);
  state_->stats.received += out.size();
  state_->stats.received_bytes += bytes;
  state_->stats.dropped = std::max<uint64_t>(state_->stats.dropped, dropped);
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
