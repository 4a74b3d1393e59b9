#include "client.h"

#include <curl/curl.h>

#include <chrono>
#include <deque>
#include <memory>
#include <stdexcept>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "common/strings.h"

namespace kvlb::loadgen {
namespace {

using Clock = std::chrono::steady_clock;

struct MultiDeleter {
  void operator()(CURLM* m) const { curl_multi_cleanup(m); }
};
struct EasyDeleter {
  void operator()(CURL* e) const { curl_easy_cleanup(e); }
};
struct SlistDeleter {
  void operator()(curl_slist* l) const { curl_slist_free_all(l); }
};

}  // namespace

std::string request_body(const ClientConfig& c, const RequestSpec& s) {
  nlohmann::json j;
  j["model"] = c.model;
  j["max_tokens"] = s.output_tokens;
  j["min_tokens"] = s.output_tokens;  // fixes the output length, as llm-load-test does
  j["ignore_eos"] = true;
  if (c.stream) {
    j["stream"] = true;
    j["stream_options"] = {{"include_usage", true}};
  }
  if (c.chat) {
    std::string text = s.prompt_text.value_or(std::string(s.input_tokens * 4, 'a'));
    j["messages"] = nlohmann::json::array({{{"role", "user"}, {"content", text}}});
  } else if (s.prompt_text) {
    j["prompt"] = *s.prompt_text;
  } else {
    // Token ids give the server the exact prompt length.
    std::vector<int> ids(s.input_tokens);
    for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<int>(1000 + i % 30000);
    j["prompt"] = ids;
  }
  return j.dump();
}

// One transfer in flight.
struct Transfer {
  RequestResult* result = nullptr;
  std::unique_ptr<CURL, EasyDeleter> easy;
  std::string body;
  std::string pending;  // SSE bytes not yet split into events
  std::string full;     // non-streamed body
  bool done_seen = false;
  bool stream = true;
  Clock::time_point t0;
  double added = 0;
  double request_at = -1;  // the request about to go out on its connection (prereq)

  // libcurl calls this when the transfer has its connection (new or reused)
  // and sends the request next: after any wait in the pool's queue, which
  // CURLINFO_PRETRANSFER_TIME does not tell apart from the transfer's start.
  static int on_prereq(void* user, char*, char*, int, int) {
    auto* t = static_cast<Transfer*>(user);
    t->request_at = t->now();
    return CURL_PREREQFUNC_OK;
  }

  // When the request's bytes started to go out.
  double sent_at(CURL* e) const {
    if (request_at >= 0) return request_at;
    curl_off_t pre = 0;  // never connected: the attempt's end
    curl_easy_getinfo(e, CURLINFO_PRETRANSFER_TIME_T, &pre);
    return added + static_cast<double>(pre) / 1e6;
  }

  double now() const { return std::chrono::duration<double>(Clock::now() - t0).count(); }

  void on_event(std::string_view data) {
    if (data == "[DONE]") {
      done_seen = true;
      return;
    }
    // Token chunks carry a non-empty choices array; the usage chunk has "choices":[].
    if (data.find("\"choices\":[]") != std::string_view::npos) return;
    if (result->first < 0) result->first = now();
    ++result->output_tokens;
  }

  static size_t on_data(char* p, size_t sz, size_t n, void* user) {
    auto* t = static_cast<Transfer*>(user);
    size_t len = sz * n;
    if (t->full.size() + t->pending.size() + len > (64u << 20)) return 0;  // runaway response
    long code = 0;
    curl_easy_getinfo(t->easy.get(), CURLINFO_RESPONSE_CODE, &code);
    if (code != 200 || !t->stream) {
      t->full.append(p, len);
      return len;
    }
    t->pending.append(p, len);
    size_t pos;
    while ((pos = t->pending.find("\n\n")) != std::string::npos) {
      std::string_view ev(t->pending.data(), pos);
      if (ev.rfind("data: ", 0) == 0) t->on_event(ev.substr(6));
      t->pending.erase(0, pos + 2);
    }
    return len;
  }

  static size_t on_header(char* p, size_t sz, size_t n, void* user) {
    auto* t = static_cast<Transfer*>(user);
    std::string_view h(p, sz * n);
    static constexpr std::string_view kName = "X-Kvlb-Replica:";
    if (h.size() > kName.size() && iequals(h.substr(0, kName.size()), kName)) {
      auto v = h.substr(kName.size());
      while (!v.empty() && (v.back() == '\r' || v.back() == '\n')) v.remove_suffix(1);
      t->result->replica = std::string(trim_blanks(v));
    }
    return sz * n;
  }
};

struct LoadClient::Impl {};

LoadClient::LoadClient(ClientConfig c) : cfg_(std::move(c)) {
  static const CURLcode init = curl_global_init(CURL_GLOBAL_DEFAULT);
  if (init != CURLE_OK) throw std::runtime_error("curl_global_init failed");
}
LoadClient::~LoadClient() = default;

void LoadClient::set_progress(std::function<void(const Progress&)> cb, double every_s) {
  progress_ = std::move(cb);
  progress_every_ = every_s;
}

std::vector<RequestResult> LoadClient::run(const std::vector<RequestSpec>& specs,
                                           const std::vector<double>& offsets) {
  if (offsets.size() != specs.size()) throw std::invalid_argument("one offset per request");
  return run_impl(specs, &offsets, 0);
}

std::vector<RequestResult> LoadClient::run_closed(const std::vector<RequestSpec>& specs,
                                                  uint32_t concurrency) {
  if (concurrency == 0) throw std::invalid_argument("concurrency must be positive");
  return run_impl(specs, nullptr, concurrency);
}

std::vector<RequestResult> LoadClient::run_impl(const std::vector<RequestSpec>& specs,
                                                const std::vector<double>* offsets,
                                                uint32_t concurrency) {
  std::unique_ptr<CURLM, MultiDeleter> multi(curl_multi_init());
  if (!multi) throw std::runtime_error("curl_multi_init failed");
  const bool pool = cfg_.mode == ConnectionMode::KeepAlivePool;
  if (pool) {
    // Like an SDK client: at most pool_size connections to the server, reused.
    curl_multi_setopt(multi.get(), CURLMOPT_MAX_HOST_CONNECTIONS,
                      static_cast<long>(cfg_.pool_size));
    curl_multi_setopt(multi.get(), CURLMOPT_MAXCONNECTS, static_cast<long>(cfg_.pool_size));
  }
  std::unique_ptr<curl_slist, SlistDeleter> headers(
      curl_slist_append(nullptr, "Content-Type: application/json"));
  if (!cfg_.api_key.empty()) {
    const std::string auth = "Authorization: Bearer " + cfg_.api_key;
    headers.reset(curl_slist_append(headers.release(), auth.c_str()));
  }
  const std::string path = cfg_.base_path + (cfg_.chat ? "/chat/completions" : "/completions");

  std::vector<RequestResult> results(specs.size());
  std::vector<std::unique_ptr<Transfer>> live;
  const auto t0 = cfg_.start.value_or(Clock::now());
  auto now = [&] { return std::chrono::duration<double>(Clock::now() - t0).count(); };
  size_t next = 0, done = 0, errors = 0, inflight = 0;
  double next_progress = progress_every_;

  auto launch = [&](size_t i, double scheduled) {
    auto t = std::make_unique<Transfer>();
    t->t0 = t0;
    t->stream = cfg_.stream;
    auto& r = results[i];
    r.index = i;
    r.input_tokens = specs[i].input_tokens;
    r.expected_output = specs[i].output_tokens;
    r.scheduled = scheduled;
    r.target = cfg_.base_url;
    if (picker_) {
      auto picked = picker_();
      if (!picked.empty()) r.target = picked;
    }
    t->result = &r;
    t->body = request_body(cfg_, specs[i]);
    t->easy.reset(curl_easy_init());
    CURL* e = t->easy.get();
    std::string url = r.target + path;
    curl_easy_setopt(e, CURLOPT_URL, url.c_str());
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, t->body.c_str());
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, static_cast<long>(t->body.size()));
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, headers.get());
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, &Transfer::on_data);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, t.get());
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, &Transfer::on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, t.get());
    curl_easy_setopt(e, CURLOPT_PRIVATE, t.get());
    curl_easy_setopt(e, CURLOPT_PREREQFUNCTION, &Transfer::on_prereq);
    curl_easy_setopt(e, CURLOPT_PREREQDATA, t.get());
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, static_cast<long>(cfg_.timeout_s * 1000));
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
    curl_easy_setopt(e, CURLOPT_EXPECT_100_TIMEOUT_MS, 0L);
    if (!pool) {
      curl_easy_setopt(e, CURLOPT_FRESH_CONNECT, 1L);
      curl_easy_setopt(e, CURLOPT_FORBID_REUSE, 1L);
    }
    t->added = now();
    curl_multi_add_handle(multi.get(), e);
    live.push_back(std::move(t));
    ++inflight;
  };

  auto finish = [&](CURLMsg* msg) {
    Transfer* t = nullptr;
    curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, reinterpret_cast<char**>(&t));
    auto& r = *t->result;
    r.end = now();
    r.sent = t->sent_at(msg->easy_handle);
    long code = 0;
    curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE, &code);
    CURLcode rc = msg->data.result;
    if (rc == CURLE_COULDNT_CONNECT)
      r.error = "connect";
    else if (rc == CURLE_OPERATION_TIMEDOUT)
      r.error = "timeout";
    else if (rc != CURLE_OK)
      r.error = "transport";
    else if (code != 200)
      r.error = fmt::format("http_{}", code);
    if (rc != CURLE_OK) r.error_detail = curl_easy_strerror(rc);
    if (r.error.empty() && cfg_.stream && !t->done_seen) {
      r.error = "truncated";
      r.error_detail = "stream ended without data: [DONE]";
    }
    if (r.error.empty() && !cfg_.stream) {
      auto j = nlohmann::json::parse(t->full, nullptr, false);
      if (!j.is_discarded() && j.contains("usage"))
        r.output_tokens = j["usage"].value("completion_tokens", 0u);
      r.first = r.end;  // a non-streamed response arrives at once
    }
    if (!r.error.empty() && r.error_detail.empty()) r.error_detail = t->full.substr(0, 200);
    if (r.error.empty() && r.first < 0) r.error = "no_tokens";
    if (!r.error.empty()) ++errors;
    curl_multi_remove_handle(multi.get(), msg->easy_handle);
    for (auto it = live.begin(); it != live.end(); ++it)
      if (it->get() == t) {
        live.erase(it);
        break;
      }
    --inflight;
    ++done;
  };

  double cut_at = -1;
  if (offsets && cfg_.drain_s >= 0 && !offsets->empty()) cut_at = offsets->back() + cfg_.drain_s;
  while (done < specs.size()) {
    if (cut_at >= 0 && next == specs.size() && now() >= cut_at) {
      // Drain limit: what still runs is cut (its TTFT may still be known).
      for (auto& t : live) {
        t->result->cut = true;
        t->result->end = now();
        t->result->sent = t->sent_at(t->easy.get());
        curl_multi_remove_handle(multi.get(), t->easy.get());
        ++done;
      }
      live.clear();
      inflight = 0;
      break;
    }
    // Start what is due.
    if (offsets) {
      while (next < specs.size() && (*offsets)[next] <= now()) {
        launch(next, (*offsets)[next]);
        ++next;
      }
    } else {
      while (next < specs.size() && inflight < concurrency) {
        launch(next, now());
        ++next;
      }
    }
    int running = 0;
    curl_multi_perform(multi.get(), &running);
    int left = 0;
    while (CURLMsg* msg = curl_multi_info_read(multi.get(), &left))
      if (msg->msg == CURLMSG_DONE) finish(msg);
    if (progress_ && now() >= next_progress) {
      progress_(Progress{now(), next, done, inflight, errors});
      next_progress += progress_every_;
    }
    // Sleep until data arrives or the next arrival is due (at most 50 ms).
    int wait_ms = 50;
    if (offsets && next < specs.size()) {
      double until = (*offsets)[next] - now();
      wait_ms = std::clamp(static_cast<int>(until * 1000), 0, 50);
    } else if (!offsets && next < specs.size() && inflight < concurrency) {
      wait_ms = 0;
    }
    if (done < specs.size()) curl_multi_poll(multi.get(), nullptr, 0, wait_ms, nullptr);
  }
  if (progress_) progress_(Progress{now(), next, done, inflight, errors});
  return results;
}

std::vector<std::vector<size_t>> split_round_robin(size_t n, uint32_t k) {
  if (k == 0) throw std::invalid_argument("at least one client");
  std::vector<std::vector<size_t>> out(k);
  for (size_t i = 0; i < n; ++i) out[i % k].push_back(i);
  return out;
}

std::vector<RequestResult> run_clients(ClientConfig c, uint32_t k,
                                       const std::vector<RequestSpec>& specs,
                                       const std::vector<double>& offsets) {
  if (offsets.size() != specs.size()) throw std::invalid_argument("one offset per request");
  const auto parts = split_round_robin(specs.size(), k);
  c.start = Clock::now();
  std::vector<std::vector<RequestResult>> per(k);
  std::vector<std::string> errors(k);
  {
    std::vector<std::jthread> threads;
    for (uint32_t j = 0; j < k; ++j) {
      threads.emplace_back([&, j] {
        try {
          std::vector<RequestSpec> s;
          std::vector<double> o;
          for (size_t i : parts[j]) {
            s.push_back(specs[i]);
            o.push_back(offsets[i]);
          }
          LoadClient client(c);
          per[j] = client.run(s, o);
        } catch (const std::exception& e) {
          errors[j] = e.what();
        }
      });
    }
  }
  for (const auto& e : errors)
    if (!e.empty()) throw std::runtime_error(e);
  std::vector<RequestResult> out(specs.size());
  for (uint32_t j = 0; j < k; ++j) {
    for (size_t n = 0; n < parts[j].size(); ++n) {
      out[parts[j][n]] = std::move(per[j][n]);
      out[parts[j][n]].index = parts[j][n];
    }
  }
  return out;
}

}  // namespace kvlb::loadgen
