// The admin API's listeners against local clients that misbehave: writes only
// on the unix socket, idle connections cut, a connection cap, and no busy loop
// when accept() fails for lack of descriptors. No root needed.
#include <utility>  // Boost 1.74 asio uses std::exchange without including it

#include <boost/asio.hpp>
#include <gtest/gtest.h>

#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "agent/admin_server.h"

using namespace kvlb::agent;
namespace net = boost::asio;
using tcp = net::ip::tcp;
namespace fs = std::filesystem;

namespace {

struct TempDir {
  fs::path path = fs::temp_directory_path() / ("kvlb-admin-" + std::to_string(::getpid()));
  TempDir() { fs::create_directories(path); }
  ~TempDir() { fs::remove_all(path); }
};

AdminResponse ok_handler(const AdminRequest& r) {
  return {200, "application/json", "{\"route\":\"" + r.method + " " + r.target + "\"}"};
}

// One request on a fresh connection; returns the status (0: closed without one).
template <typename Socket>
int status_of(Socket& s, const std::string& method, const std::string& target) {
  std::string req = method + " " + target + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
  boost::system::error_code ec;
  net::write(s, net::buffer(req), ec);
  std::string out;
  char buf[1024];
  for (;;) {
    size_t n = s.read_some(net::buffer(buf), ec);
    if (ec) break;
    out.append(buf, n);
  }
  return out.size() >= 12 ? std::stoi(out.substr(9, 3)) : 0;
}

int tcp_status(uint16_t port, const std::string& method, const std::string& target) {
  net::io_context io;
  tcp::socket s(io);
  s.connect(tcp::endpoint(net::ip::make_address("127.0.0.1"), port));
  return status_of(s, method, target);
}

int unix_status(const fs::path& sock, const std::string& method, const std::string& target) {
  net::io_context io;
  net::local::stream_protocol::socket s(io);
  s.connect(net::local::stream_protocol::endpoint(sock.string()));
  return status_of(s, method, target);
}

// True when the server closed the connection (read sees EOF) within `wait`.
bool closed_by_server(tcp::socket& s, std::chrono::milliseconds wait) {
  timeval tv{static_cast<time_t>(wait.count() / 1000),
             static_cast<suseconds_t>((wait.count() % 1000) * 1000)};
  setsockopt(s.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  char c;
  ssize_t n = ::recv(s.native_handle(), &c, 1, 0);
  return n == 0 || (n < 0 && errno == ECONNRESET);
}

}  // namespace

TEST(AdminServer, WritesOnlyOnTheUnixSocket) {
  TempDir dir;
  std::atomic<int> writes{0};
  AdminServer srv(dir.path / "agent.sock", "127.0.0.1:0", [&](const AdminRequest& r) {
    if (r.method == "POST") ++writes;
    return ok_handler(r);
  });
  struct stat st {};
  ASSERT_EQ(::stat((dir.path / "agent.sock").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_EQ(tcp_status(srv.tcp_port(), "GET", "/v1/backends"), 200);
  EXPECT_EQ(tcp_status(srv.tcp_port(), "POST", "/v1/backends/10.0.0.1:80/drain"), 403);
  EXPECT_EQ(tcp_status(srv.tcp_port(), "DELETE", "/anything"), 403);
  EXPECT_EQ(writes.load(), 0);
  EXPECT_EQ(unix_status(dir.path / "agent.sock", "POST", "/v1/backends/10.0.0.1:80/drain"), 200);
  EXPECT_EQ(writes.load(), 1);
}

TEST(AdminServer, IdleConnectionsAreClosedAndTheCapHolds) {
  AdminLimits limits;
  limits.read_timeout = std::chrono::milliseconds(300);
  limits.max_connections = 4;
  AdminServer srv("", "127.0.0.1:0", ok_handler, limits);
  net::io_context io;
  std::vector<std::unique_ptr<tcp::socket>> idle;
  for (int i = 0; i < 10; ++i) {
    idle.push_back(std::make_unique<tcp::socket>(io));
    idle.back()->connect(tcp::endpoint(net::ip::make_address("127.0.0.1"), srv.tcp_port()));
  }
  // The six over the cap are closed at once; the four within it stay open
  // until they have been idle for read_timeout, then are closed too.
  int refused = 0;
  for (int i = 4; i < 10; ++i)
    refused += closed_by_server(*idle[i], std::chrono::milliseconds(2000));
  EXPECT_EQ(refused, 6);
  int timed_out = 0;
  for (int i = 0; i < 4; ++i)
    timed_out += closed_by_server(*idle[i], std::chrono::milliseconds(5000));
  EXPECT_EQ(timed_out, 4);
  // With the idle ones gone, a real client is served.
  EXPECT_EQ(tcp_status(srv.tcp_port(), "GET", "/healthz"), 200);
}

TEST(AdminServer, OutOfDescriptorsTheAcceptLoopBacksOffInsteadOfSpinning) {
  // In a child with few descriptors: connections beyond them make accept()
  // fail with EMFILE while the listener stays readable. A busy loop burns a
  // whole core; with the back-off the child sleeps. Measured as the child's CPU
  // time over one second of that state (a ratio to wall time: ~1.0 vs ~0).
  int ready[2];
  ASSERT_EQ(::pipe(ready), 0);
  pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    AdminLimits limits;
    limits.max_connections = 1000;  // let descriptors run out before the cap
    limits.read_timeout = std::chrono::seconds(60);
    AdminServer srv("", "127.0.0.1:0", ok_handler, limits);
    rlimit rl{32, 32};
    ::setrlimit(RLIMIT_NOFILE, &rl);
    uint16_t port = srv.tcp_port();
    (void)!::write(ready[1], &port, sizeof(port));
    ::pause();
    ::_exit(0);
  }
  ::close(ready[1]);  // a child that dies early then reads as EOF, not a hang
  uint16_t port = 0;
  ssize_t got = ::read(ready[0], &port, sizeof(port));
  ::close(ready[0]);
  if (got != static_cast<ssize_t>(sizeof(port))) {
    int status = 0;
    ::waitpid(child, &status, 0);
    FAIL() << "the child server did not start (wait status " << status << ")";
  }
  net::io_context io;
  std::vector<std::unique_ptr<tcp::socket>> conns;
  for (int i = 0; i < 64; ++i) {
    conns.push_back(std::make_unique<tcp::socket>(io));
    boost::system::error_code ec;
    conns.back()->connect(tcp::endpoint(net::ip::make_address("127.0.0.1"), port), ec);
  }
  auto cpu_ticks = [child] {
    std::ifstream in("/proc/" + std::to_string(child) + "/stat");
    std::string s((std::istreambuf_iterator<char>(in)), {});
    std::istringstream f(s.substr(s.rfind(')') + 2));
    std::string skip;
    for (int i = 0; i < 11; ++i) f >> skip;  // fields 3..13
    long utime = 0, stime = 0;
    f >> utime >> stime;
    return utime + stime;
  };
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  long before = cpu_ticks();
  std::this_thread::sleep_for(std::chrono::seconds(1));
  long used = cpu_ticks() - before;
  ::kill(child, SIGKILL);
  ::waitpid(child, nullptr, 0);
  const long hz = ::sysconf(_SC_CLK_TCK);
  EXPECT_LT(used, hz / 4) << "the accept loop used " << used << " of " << hz
                          << " ticks in one second";
}
