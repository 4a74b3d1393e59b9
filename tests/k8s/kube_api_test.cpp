// The Kubernetes writes (k8s/workload_scale.h, pods.h, leader_election.h,
// events.h) against the strict API test double, over TLS with a CA made for
// this run: one double per test (fresh state, a free port), killed after it.
#include <curl/curl.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <set>
#include <thread>

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "k8s/draining_pods.h"
#include "k8s/events.h"
#include "k8s/leader_election.h"
#include "k8s/pods.h"
#include "k8s/workload_scale.h"

extern char** environ;

using namespace kvlb::k8s;
using namespace std::chrono_literals;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

// The CA, server certificate and token, made once for the whole run.
struct Pki {
  fs::path dir;
  Pki() {
    char tmpl[] = "/tmp/kvlb-kube-api-test.XXXXXX";
    dir = mkdtemp(tmpl);
    auto d = dir.string();
    auto run = [](const std::string& cmd) {
      if (std::system((cmd + " 2>/dev/null").c_str()) != 0)
        throw std::runtime_error("failed: " + cmd);
    };
    run(
        fmt::format("openssl req -x509 -newkey rsa:2048 -nodes -keyout {0}/ca.key -out {0}/ca.crt "
                    "-subj /CN=kvlb-test-ca -days 1",
                    d));
    run(
        fmt::format("openssl req -newkey rsa:2048 -nodes -keyout {0}/srv.key -out {0}/srv.csr "
                    "-subj /CN=kube-apiserver",
                    d));
    std::ofstream(dir / "san.ext") << "subjectAltName=IP:127.0.0.1\n";
    run(
        fmt::format("openssl x509 -req -in {0}/srv.csr -CA {0}/ca.crt -CAkey {0}/ca.key "
                    "-CAcreateserial -out {0}/srv.crt -days 1 -extfile {0}/san.ext",
                    d));
    std::ofstream(dir / "token") << "test-token\n";
  }
  ~Pki() {
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
};

const Pki& pki() {
  static Pki p;
  return p;
}

struct CurlDeleter {
  void operator()(CURL* c) const { curl_easy_cleanup(c); }
};
struct SlistDeleter {
  void operator()(curl_slist* l) const { curl_slist_free_all(l); }
};

size_t collect(char* p, size_t s, size_t n, void* u) {
  static_cast<std::string*>(u)->append(p, s * n);
  return s * n;
}

// One kube-api-double process on a free port.
class ApiDouble {
 public:
  ApiDouble() {
    auto port_file = pki().dir / fmt::format("port.{}", counter_++);
    std::vector<std::string> args = {KVLB_KUBE_API_DOUBLE,
                                     "--port",
                                     "0",
                                     "--port-file",
                                     port_file.string(),
                                     "--cert",
                                     (pki().dir / "srv.crt").string(),
                                     "--key",
                                     (pki().dir / "srv.key").string(),
                                     "--token-file",
                                     (pki().dir / "token").string(),
                                     "--bookmark-ms",
                                     "200"};
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    auto log = (pki().dir / "double.log").string();
    posix_spawn_file_actions_addopen(&fa, 2, log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
    int rc = posix_spawn(&pid_, argv[0], &fa, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0) throw std::runtime_error("cannot start kube-api-double");
    for (int i = 0; i < 200 && port_ == 0; ++i) {
      std::ifstream in(port_file);
      if (!(in >> port_)) std::this_thread::sleep_for(25ms);
    }
    if (port_ == 0) throw std::runtime_error("kube-api-double did not report its port");
  }
  ~ApiDouble() {
    kill(pid_, SIGTERM);
    int st;
    waitpid(pid_, &st, 0);
  }
  ApiDouble(const ApiDouble&) = delete;
  ApiDouble& operator=(const ApiDouble&) = delete;

  KubeConfig config() const {
    KubeConfig c;
    c.server = fmt::format("https://127.0.0.1:{}", port_);
    c.ca_file = (pki().dir / "ca.crt").string();
    c.token_file = (pki().dir / "token").string();
    return c;
  }

  // The double's test control; returns {status, body}.
  std::pair<long, json> control(const std::string& method, const std::string& path,
                                const json& body = nullptr) const {
    std::unique_ptr<CURL, CurlDeleter> c(curl_easy_init());
    std::string url = config().server + path, out, data = body.is_null() ? "" : body.dump();
    std::string ca = config().ca_file;
    std::unique_ptr<curl_slist, SlistDeleter> h(
        curl_slist_append(nullptr, "X-Kvlb-Test-Control: yes"));
    curl_easy_setopt(c.get(), CURLOPT_URL, url.c_str());
    curl_easy_setopt(c.get(), CURLOPT_CUSTOMREQUEST, method.c_str());
    curl_easy_setopt(c.get(), CURLOPT_HTTPHEADER, h.get());
    curl_easy_setopt(c.get(), CURLOPT_CAINFO, ca.c_str());
    curl_easy_setopt(c.get(), CURLOPT_TIMEOUT_MS, 10000L);
    curl_easy_setopt(c.get(), CURLOPT_WRITEFUNCTION, &collect);
    curl_easy_setopt(c.get(), CURLOPT_WRITEDATA, &out);
    if (method != "GET") {
      curl_easy_setopt(c.get(), CURLOPT_POSTFIELDS, data.c_str());
      curl_easy_setopt(c.get(), CURLOPT_POSTFIELDSIZE, static_cast<long>(data.size()));
    }
    long code = 0;
    if (curl_easy_perform(c.get()) == CURLE_OK)
      curl_easy_getinfo(c.get(), CURLINFO_RESPONSE_CODE, &code);
    return {code, json::parse(out, nullptr, false)};
  }
  void must(const std::string& method, const std::string& path, const json& body = nullptr) const {
    auto [code, out] = control(method, path, body);
    ASSERT_EQ(code, 200) << method << " " << path << ": " << out.dump();
  }

 private:
  static inline int counter_ = 0;
  pid_t pid_ = 0;
  int port_ = 0;
};

json deployment(int replicas, int ready) {
  return {{"spec",
           {{"replicas", replicas},
            {"selector", {{"matchLabels", {{"tier", "gpu"}, {"app", "llm"}}}}}}},
          {"status", {{"replicas", ready}}}};
}

json pod(const std::string& app, bool ready, bool deleting = false) {
  json p = {{"metadata",
             {{"labels", {{"app", app}, {"tier", "gpu"}}},
              {"creationTimestamp", "2024-01-01T00:00:00Z"}}},
            {"spec", {{"containers", {{{"name", "vllm"}, {"image", "vllm"}}}}}},
            {"status",
             {{"phase", "Running"},
              {"podIP", "10.0.0.1"},
              {"conditions", {{{"type", "Ready"}, {"status", ready ? "True" : "False"}}}}}}};
  if (deleting) p["metadata"]["deletionTimestamp"] = "2024-01-01T00:05:00Z";
  return p;
}

class KubeApi : public ::testing::Test {
 protected:
  ApiDouble api;
  KubeClient client{api.config()};
};

}  // namespace

TEST_F(KubeApi, ScaleGetAndSet) {
  api.must("PUT", "/_test/deployments/default/llm", deployment(2, 2));
  api.must("PUT", "/_test/statefulsets/default/db", deployment(1, 1));
  auto s = get_scale(client, "default", WorkloadKind::Deployment, "llm");
  ASSERT_TRUE(s) << s.error().text();
  EXPECT_EQ(s->spec_replicas, 2);
  EXPECT_EQ(s->status_replicas, 2);
  EXPECT_EQ(s->selector, "app=llm,tier=gpu");
  auto set =
      set_replicas(client, "default", WorkloadKind::Deployment, "llm", 5, s->resource_version);
  ASSERT_TRUE(set) << set.error().text();
  EXPECT_EQ(set->spec_replicas, 5);
  EXPECT_NE(set->resource_version, s->resource_version);
  // The Deployment itself changed.
  auto d = json::parse(client.get("/apis/apps/v1/namespaces/default/deployments/llm").body);
  EXPECT_EQ(d["spec"]["replicas"], 5);
  EXPECT_EQ(d["metadata"]["resourceVersion"], set->resource_version);
  auto sts = get_scale(client, "default", WorkloadKind::StatefulSet, "db");
  ASSERT_TRUE(sts) << sts.error().text();
  EXPECT_EQ(sts->spec_replicas, 1);
  EXPECT_TRUE(
      set_replicas(client, "default", WorkloadKind::StatefulSet, "db", 0, sts->resource_version));
}

TEST_F(KubeApi, ConflictThenRetryFromTheFreshScale) {
  api.must("PUT", "/_test/deployments/default/llm", deployment(2, 2));
  auto s = get_scale(client, "default", WorkloadKind::Deployment, "llm");
  ASSERT_TRUE(s);
  api.must("POST", "/_test/touch/deployments/default/llm");
  auto stale =
      set_replicas(client, "default", WorkloadKind::Deployment, "llm", 3, s->resource_version);
  ASSERT_FALSE(stale);
  EXPECT_EQ(stale.error().code, ApiErrc::Conflict);
  EXPECT_EQ(stale.error().status, 409);

  // Someone writes between our read and our patch, once: the retry re-reads.
  std::vector<std::string> seen;
  auto r = scale_to(client, "default", WorkloadKind::Deployment, "llm", [&](const Scale& cur) {
    seen.push_back(cur.resource_version);
    if (seen.size() == 1) api.must("POST", "/_test/touch/deployments/default/llm");
    return std::optional<int32_t>(cur.spec_replicas + 1);
  });
  ASSERT_TRUE(r) << r.error().text();
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_NE(seen[0], seen[1]);
  EXPECT_EQ(r->spec_replicas, 3);

  // Always conflicting: bounded, and the error says so.
  int calls = 0;
  auto never = scale_to(
      client, "default", WorkloadKind::Deployment, "llm",
      [&](const Scale& cur) {
        ++calls;
        api.must("POST", "/_test/touch/deployments/default/llm");
        return std::optional<int32_t>(cur.spec_replicas + 1);
      },
      3);
  ASSERT_FALSE(never);
  EXPECT_EQ(never.error().code, ApiErrc::Conflict);
  EXPECT_EQ(calls, 3);
  // Declining to scale writes nothing.
  auto before = api.control("GET", "/_test/requests").second.value("scale_patches", 0);
  EXPECT_TRUE(scale_to(client, "default", WorkloadKind::Deployment, "llm",
                       [](const Scale&) { return std::nullopt; }));
  EXPECT_EQ(api.control("GET", "/_test/requests").second.value("scale_patches", 0), before);
}

TEST_F(KubeApi, ForbiddenAndNotFoundAreDistinct) {
  api.must("PUT", "/_test/deployments/default/llm", deployment(2, 2));
  api.must("POST", "/_test/deny?verb=patch&resource=deployments/scale");
  auto s = get_scale(client, "default", WorkloadKind::Deployment, "llm");
  ASSERT_TRUE(s) << "only patch is denied";
  auto denied =
      set_replicas(client, "default", WorkloadKind::Deployment, "llm", 4, s->resource_version);
  ASSERT_FALSE(denied);
  EXPECT_EQ(denied.error().code, ApiErrc::Forbidden);
  EXPECT_EQ(denied.error().status, 403);
  EXPECT_NE(denied.error().text().find("cannot patch resource \"deployments/scale\""),
            std::string::npos)
      << denied.error().text();
  api.must("POST", "/_test/allow");
  EXPECT_TRUE(
      set_replicas(client, "default", WorkloadKind::Deployment, "llm", 4, s->resource_version));

  auto missing = get_scale(client, "default", WorkloadKind::Deployment, "nope");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, ApiErrc::NotFound);
  EXPECT_EQ(missing.error().status, 404);
  auto bad = get_scale(client, "default", WorkloadKind::Deployment, "../../pods");
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code, ApiErrc::BadInput);
  EXPECT_EQ(api.control("GET", "/_test/requests").second.value("scale_gets", 0), 2)
      << "an invalid name never reaches the server";
}

TEST_F(KubeApi, TheDoubleIsStrictAboutScalePatches) {
  api.must("PUT", "/_test/deployments/default/llm", deployment(2, 2));
  const std::string path = "/apis/apps/v1/namespaces/default/deployments/llm/scale";
  EXPECT_EQ(client.request("PATCH", path, R"({"spec":{"replicas":3}})", kJson).status, 415);
  EXPECT_EQ(client.patch_merge(path, R"({"spec":{"replicas":-1}})").status, 422);
  EXPECT_EQ(client.patch_merge(path, R"({"spec":{"replicas":"3"}})").status, 422);
  EXPECT_EQ(client.patch_merge(path, R"({"spec":{"replicas":1.5}})").status, 422);
  EXPECT_EQ(client.patch_merge(path, R"({"metadata":{"resourceVersion":"1"}})").status, 409);
  EXPECT_EQ(client.patch_merge(path, R"({"spec":{"replicas":3}})").status, 200)
      << "no resourceVersion: no precondition";
  api.must("POST", "/_test/fail?n=1");
  auto failed = get_scale(client, "default", WorkloadKind::Deployment, "llm");
  ASSERT_FALSE(failed);
  EXPECT_EQ(failed.error().code, ApiErrc::Server);
}

TEST_F(KubeApi, DeploymentListAndWatchByName) {
  api.must("PUT", "/_test/deployments/default/llm", deployment(2, 2));
  api.must("PUT", "/_test/deployments/default/other", deployment(1, 1));
  const std::string base = "/apis/apps/v1/namespaces/default/deployments";
  auto list = json::parse(client.get(base + "?fieldSelector=metadata.name%3Dllm").body);
  ASSERT_EQ(list["kind"], "DeploymentList");
  ASSERT_EQ(list["items"].size(), 1u);
  std::string rv = list["metadata"]["resourceVersion"];
  api.must("PUT", "/_test/deployments/default/other", deployment(7, 1));
  auto s = get_scale(client, "default", WorkloadKind::Deployment, "llm");
  ASSERT_TRUE(
      set_replicas(client, "default", WorkloadKind::Deployment, "llm", 6, s->resource_version));
  std::vector<json> events;
  auto r = client.watch(
      base + "?watch=1&fieldSelector=metadata.name%3Dllm&resourceVersion=" + rv,
      [&](std::string_view line) {
        events.push_back(json::parse(line));
        return false;  // the first event is enough
      },
      [] { return false; });
  ASSERT_EQ(events.size(), 1u) << r.error;
  EXPECT_EQ(events[0]["type"], "MODIFIED");
  EXPECT_EQ(events[0]["object"]["metadata"]["name"], "llm") << "other is filtered out";
  EXPECT_EQ(events[0]["object"]["spec"]["replicas"], 6);
}

TEST_F(KubeApi, PodsBySelectorAndDeletionCost) {
  api.must("PUT", "/_test/deployments/default/llm", deployment(2, 2));
  api.must("PUT", "/_test/pods/default/llm-a", pod("llm", true));
  api.must("PUT", "/_test/pods/default/llm-b", pod("llm", false, true));
  api.must("PUT", "/_test/pods/default/web-a", pod("web", true));
  auto s = get_scale(client, "default", WorkloadKind::Deployment, "llm");
  ASSERT_TRUE(s);
  auto pods = list_pods(client, "default", s->selector);
  ASSERT_TRUE(pods) << pods.error().text();
  ASSERT_EQ(pods->size(), 2u);
  EXPECT_EQ((*pods)[0].name, "llm-a");
  EXPECT_TRUE((*pods)[0].ready);
  EXPECT_FALSE((*pods)[0].terminating);
  EXPECT_EQ((*pods)[0].pod_ip, "10.0.0.1");
  EXPECT_EQ((*pods)[1].name, "llm-b");
  EXPECT_FALSE((*pods)[1].ready);
  EXPECT_TRUE((*pods)[1].terminating);

  auto patched = set_deletion_cost(client, "default", "llm-a", -100);
  ASSERT_TRUE(patched) << patched.error().text();
  EXPECT_EQ(patched->annotations.at(std::string(kPodDeletionCost)), "-100");
  auto got = json::parse(client.get("/api/v1/namespaces/default/pods/llm-a").body);
  EXPECT_EQ(got["metadata"]["annotations"][std::string(kPodDeletionCost)], "-100");
  EXPECT_EQ(got["spec"]["containers"][0]["name"], "vllm") << "the rest of the pod is kept";

  EXPECT_EQ(client.get("/api/v1/namespaces/default/pods?labelSelector=app%20in%20(x)").status, 400);
  EXPECT_EQ(
      client.patch_merge("/api/v1/namespaces/default/pods/llm-a", R"({"spec":{"nodeName":"n2"}})")
          .status,
      422);
  EXPECT_EQ(client
                .patch_merge("/api/v1/namespaces/default/pods/llm-a",
                             R"({"metadata":{"annotations":{")" + std::string(kPodDeletionCost) +
                                 R"(":"cheap"}}})")
                .status,
            422);
  auto missing = set_deletion_cost(client, "default", "llm-z", 1);
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, ApiErrc::NotFound);
  api.must("POST", "/_test/deny?verb=list&resource=pods");
  auto denied = list_pods(client, "default", s->selector);
  ASSERT_FALSE(denied);
  EXPECT_EQ(denied.error().code, ApiErrc::Forbidden);
}

namespace {

struct FakeClock {
  MonoTime mono{std::chrono::hours(1)};
  WallTime wall = std::chrono::system_clock::now();
  void advance(std::chrono::milliseconds d) {
    mono += d;
    wall += d;
  }
  ElectionClock clock() {
    return {[this] { return mono; }, [this] { return wall; }};
  }
};

ElectionConfig election(const std::string& id) {
  return {"kvlb", "kvlb-autoscaler", id, 15s, 10s, 2s};
}

}  // namespace

// The drain that reaches every node's agent: the autoscaler labels the pod, the
// agents watch the label-selected pods (k8s/draining_pods.h).
TEST_F(KubeApi, DrainingLabelIsWatchedAsASelection) {
  api.must("PUT", "/_test/pods/default/llm-a", pod("llm", true));
  api.must("PUT", "/_test/pods/default/llm-b", pod("llm", true));
  json elsewhere = pod("llm", true);
  elsewhere["metadata"]["labels"][std::string(kDrainingLabel)] = "true";
  api.must("PUT", "/_test/pods/other/llm-x", elsewhere);

  DrainingPods drained;
  auto list = client.get(draining_pods_path("default"));
  ASSERT_EQ(list.status, 200) << list.body;
  drained.apply_list(json::parse(list.body));
  EXPECT_TRUE(drained.names().empty()) << "another namespace's drained pod is not listed here";
  const std::string rv = drained.resource_version();
  ASSERT_FALSE(rv.empty());

  auto a = set_draining(client, "default", "llm-a", true);
  ASSERT_TRUE(a) << a.error().text();
  EXPECT_TRUE(a->draining());
  EXPECT_EQ(a->labels.at("app"), "llm") << "the other labels are kept";
  ASSERT_TRUE(set_draining(client, "default", "llm-b", true));
  auto undone = set_draining(client, "default", "llm-a", false);
  ASSERT_TRUE(undone);
  EXPECT_FALSE(undone->draining());
  EXPECT_FALSE(undone->labels.count(std::string(kDrainingLabel))) << "removed, not emptied";
  ASSERT_TRUE(set_deletion_cost(client, "default", "llm-b", -5));  // still selected
  // A last event ends the watch, so a missing event fails the comparison below
  // instead of leaving the watch waiting.
  api.must("PUT", "/_test/pods/default/llm-end", pod("llm", true));
  ASSERT_TRUE(set_draining(client, "default", "llm-end", true));

  std::vector<std::string> types;
  auto r = client.watch(
      draining_pods_path("default") + "&watch=1&resourceVersion=" + rv,
      [&](std::string_view line) {
        auto e = json::parse(line);
        types.push_back(e["type"].get<std::string>() + " " +
                        e["object"]["metadata"]["name"].get<std::string>());
        drained.apply_event(e);
        return e["object"]["metadata"]["name"] != "llm-end";
      },
      [] { return false; });
  EXPECT_EQ(types, (std::vector<std::string>{"ADDED llm-a", "ADDED llm-b", "DELETED llm-a",
                                             "MODIFIED llm-b", "ADDED llm-end"}))
      << "a pod enters the selection as ADDED and leaves it as DELETED; " << r.error;
  EXPECT_EQ(drained.names(), (std::set<std::string>{"llm-b", "llm-end"}));
  EXPECT_EQ(
      drained.resource_version(),
      json::parse(
          client.get("/api/v1/namespaces/default/pods/llm-end").body)["metadata"]["resourceVersion"]
          .get<std::string>());

  api.must("POST", "/_test/deny?verb=patch&resource=pods");
  auto denied = set_draining(client, "default", "llm-a", true);
  ASSERT_FALSE(denied);
  EXPECT_EQ(denied.error().code, ApiErrc::Forbidden);
  EXPECT_EQ(set_draining(client, "default", "llm-zz", true).error().code, ApiErrc::Forbidden);
  api.must("POST", "/_test/allow");
  EXPECT_EQ(set_draining(client, "default", "llm-zz", true).error().code, ApiErrc::NotFound);
}

TEST_F(KubeApi, LeaseAcquireRenewTakeover) {
  FakeClock ca, cb;
  LeaderElector a(client, election("a"), ca.clock());
  LeaderElector b(client, election("b"), cb.clock());
  const std::string path = a.lease_path();
  EXPECT_FALSE(a.step());
  EXPECT_TRUE(a.is_leader());
  EXPECT_FALSE(b.step());
  EXPECT_FALSE(b.is_leader());
  auto lease = json::parse(client.get(path).body);
  EXPECT_EQ(lease["spec"]["holderIdentity"], "a");
  std::string rv = lease["metadata"]["resourceVersion"];

  ca.advance(2s);
  EXPECT_FALSE(a.step());  // renew
  lease = json::parse(client.get(path).body);
  EXPECT_NE(lease["metadata"]["resourceVersion"], rv);
  EXPECT_EQ(lease["spec"]["leaseTransitions"], 0);
  cb.advance(14s);
  EXPECT_FALSE(b.step());
  EXPECT_FALSE(b.is_leader()) << "a renewed: still fresh on b's clock";

  // a stops renewing; b waits out the lease duration from its last change.
  cb.advance(15s);
  EXPECT_FALSE(b.step());
  EXPECT_TRUE(b.is_leader());
  lease = json::parse(client.get(path).body);
  EXPECT_EQ(lease["spec"]["holderIdentity"], "b");
  EXPECT_EQ(lease["spec"]["leaseTransitions"], 1);
  // a's deadline passed long ago on its own clock, and the next read shows b.
  ca.advance(1s);
  EXPECT_TRUE(a.is_leader()) << "a's own clock: 1 s after its last renewal";
  EXPECT_FALSE(a.step());
  EXPECT_FALSE(a.is_leader());
  auto counters = api.control("GET", "/_test/requests").second;
  EXPECT_EQ(counters.value("lease_creates", 0), 1);
}

TEST_F(KubeApi, LeaseRaceHasOneWinner) {
  FakeClock ca, cb;
  LeaderElector a(client, election("a"), ca.clock());
  LeaderElector b(client, election("b"), cb.clock());
  // Both see no lease; both create; one gets 409 AlreadyExists.
  auto pa = a.plan(), pb = b.plan();
  ASSERT_TRUE(pa && pb);
  ASSERT_EQ(pa->action, LeaseAction::Create);
  ASSERT_EQ(pb->action, LeaseAction::Create);
  EXPECT_FALSE(a.write(*pa));
  EXPECT_FALSE(b.write(*pb)) << "losing a race is not an error";
  EXPECT_TRUE(a.is_leader());
  EXPECT_FALSE(b.is_leader());

  // a dies; b and c both see the lease expired and both take over: the second
  // PUT carries a stale resourceVersion and gets 409.
  FakeClock cc;
  LeaderElector c(client, election("c"), cc.clock());
  ASSERT_TRUE(b.plan() && c.plan());
  cb.advance(16s);
  cc.advance(16s);
  pb = b.plan();
  auto pc = c.plan();
  ASSERT_TRUE(pb && pc);
  ASSERT_EQ(pb->action, LeaseAction::Update);
  ASSERT_EQ(pc->action, LeaseAction::Update);
  EXPECT_FALSE(c.write(*pc));
  EXPECT_FALSE(b.write(*pb));
  EXPECT_TRUE(c.is_leader());
  EXPECT_FALSE(b.is_leader());
  EXPECT_GE(api.control("GET", "/_test/requests").second.value("conflicts", 0), 1);
  auto lease = json::parse(client.get(c.lease_path()).body);
  EXPECT_EQ(lease["spec"]["holderIdentity"], "c");
  EXPECT_EQ(lease["spec"]["leaseTransitions"], 1);
}

TEST_F(KubeApi, LosingTheLeaseMidDecision) {
  FakeClock ca;
  LeaderElector a(client, election("a"), ca.clock());
  ASSERT_FALSE(a.step());
  ASSERT_TRUE(a.is_leader());
  // Another holder writes the lease behind a's back (a forced takeover).
  auto lease = json::parse(client.get(a.lease_path()).body);
  lease["spec"]["holderIdentity"] = "intruder";
  lease["spec"]["leaseTransitions"] = 1;
  ASSERT_EQ(client.put(a.lease_path(), lease.dump()).status, 200);
  EXPECT_TRUE(a.is_leader()) << "a has not looked yet";
  ca.advance(2s);
  EXPECT_FALSE(a.step());
  EXPECT_FALSE(a.is_leader()) << "the next step sees the other holder";
  EXPECT_EQ(json::parse(client.get(a.lease_path()).body)["spec"]["holderIdentity"], "intruder")
      << "a did not write over a fresh lease";
}

TEST_F(KubeApi, LeaderStopsAtTheRenewDeadlineWhenTheServerFails) {
  FakeClock ca;
  LeaderElector a(client, election("a"), ca.clock());
  ASSERT_FALSE(a.step());
  api.must("POST", "/_test/fail?n=100");
  for (int i = 0; i < 4; ++i) {
    ca.advance(2s);
    auto err = a.step();
    ASSERT_TRUE(err);
    EXPECT_EQ(err->code, ApiErrc::Server);
    EXPECT_TRUE(a.is_leader()) << "within the renew deadline at " << (i + 1) * 2 << " s";
  }
  ca.advance(2s);
  EXPECT_TRUE(a.step());
  EXPECT_FALSE(a.is_leader()) << "10 s without a renewal";
  api.must("POST", "/_test/fail?n=0");
  ca.advance(2s);
  EXPECT_FALSE(a.step());
  EXPECT_TRUE(a.is_leader()) << "nobody took it: renewed";
}

TEST_F(KubeApi, ReleaseHandsTheLeaseOverAtOnce) {
  FakeClock ca, cb;
  LeaderElector a(client, election("a"), ca.clock());
  LeaderElector b(client, election("b"), cb.clock());
  ASSERT_FALSE(a.step());
  ASSERT_FALSE(b.step());
  ASSERT_FALSE(a.release());
  EXPECT_FALSE(a.is_leader());
  EXPECT_EQ(json::parse(client.get(a.lease_path()).body)["spec"]["holderIdentity"], "");
  EXPECT_FALSE(b.step());
  EXPECT_TRUE(b.is_leader()) << "no need to wait out the duration";
}

TEST_F(KubeApi, LeaseErrorsAreReported) {
  FakeClock ca;
  LeaderElector a(client, election("a"), ca.clock());
  api.must("POST", "/_test/deny?verb=create&resource=leases");
  auto err = a.step();
  ASSERT_TRUE(err);
  EXPECT_EQ(err->code, ApiErrc::Forbidden);
  EXPECT_FALSE(a.is_leader());
  EXPECT_THROW(LeaderElector(client, {"kvlb", "x", "a", 10s, 10s, 2s}), std::invalid_argument);
}

TEST_F(KubeApi, EventsAreCreated) {
  EventSpec e{{"apps/v1", "Deployment", "default", "llm", "uid-7"},
              EventType::Normal,
              "ScaledUp",
              "replicas 2 -> 4: waiting 11.0 per replica > target 5",
              "kvlb-autoscaler"};
  auto name = create_event(client, e);
  ASSERT_TRUE(name) << name.error().text();
  EXPECT_EQ(name->rfind("llm.", 0), 0u);
  auto all = api.control("GET", "/_test/events").second;
  ASSERT_EQ(all.size(), 1u);
  EXPECT_EQ(all[0]["metadata"]["name"], *name);
  EXPECT_EQ(all[0]["reason"], "ScaledUp");
  EXPECT_EQ(all[0]["type"], "Normal");
  EXPECT_EQ(all[0]["involvedObject"]["kind"], "Deployment");
  EXPECT_EQ(all[0]["involvedObject"]["uid"], "uid-7");
  EXPECT_EQ(all[0]["source"]["component"], "kvlb-autoscaler");

  // The double validates as the API server: no reason is 422.
  auto raw = event_object(e, std::chrono::system_clock::now());
  raw.erase("reason");
  EXPECT_EQ(client.post("/api/v1/namespaces/default/events", raw.dump()).status, 422);
  api.must("POST", "/_test/deny?verb=create&resource=events");
  auto denied = create_event(client, e);
  ASSERT_FALSE(denied);
  EXPECT_EQ(denied.error().code, ApiErrc::Forbidden);
  EXPECT_EQ(api.control("GET", "/_test/events").second.size(), 1u);
}
