#include "server/connections.h"

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstring>
#include <optional>
#include <utility>
#include <vector>

// Every connection the process accepts passes here; the guard of the listening socket, if any,
// learns of it. (cpp-httplib calls accept(2) inside its own loop and has no hook on accepted
// sockets; the executable's definition of accept is the one the library's call resolves to.)
extern "C" int accept(int fd, sockaddr* __restrict addr, socklen_t* __restrict len) {
#if defined(__SANITIZE_THREAD__)
  // ThreadSanitizer ignores what the (uninstrumented) library calls (tests/tsan.supp), its close(2)
  // of this socket included; an accept it saw would leave the number marked open, and the next
  // owner of that number would appear to race with this thread. The kernel call is the same.
  const int client = static_cast<int>(::syscall(SYS_accept4, fd, addr, len, 0));
#else
  const int client = ::accept4(fd, addr, len, 0);
#endif
  if (client >= 0) imgsearch::server::ConnectionGuard::OnAccept(fd, client);
  return client;
}

namespace imgsearch::server {
namespace {

using Clock = std::chrono::steady_clock;

thread_local int64_t t_accepted = 0;  // on the library's listening thread: the connection just accepted

std::mutex g_guards_mu;
std::map<int, ConnectionGuard*> g_guards;  // by listening socket; guarded by g_guards_mu

// The remote end of `fd` as the library reports it (numeric address, port).
std::optional<std::pair<std::string, int>> PeerOf(int fd) {
  sockaddr_storage addr{};
  socklen_t len = sizeof(addr);
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) return std::nullopt;
  char host[NI_MAXHOST], port[NI_MAXSERV];
  if (::getnameinfo(reinterpret_cast<sockaddr*>(&addr), len, host, sizeof(host), port, sizeof(port),
                    NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
    return std::nullopt;
  }
  return std::make_pair(std::string(host), std::atoi(port));
}

}  // namespace

ConnectionGuard::ConnectionGuard(int listen_fd, const ConnectionLimits& limits)
    : listen_fd_(listen_fd), limits_(limits) {
  {
    std::lock_guard<std::mutex> lock(g_guards_mu);
    g_guards[listen_fd_] = this;
  }
  watchdog_ = std::thread([this] { Watch(); });
}

ConnectionGuard::~ConnectionGuard() {
  Stop();
  {
    std::lock_guard<std::mutex> lock(g_guards_mu);
    g_guards.erase(listen_fd_);
  }
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& [key, c] : connections_) ReleaseLocked(c);
  connections_.clear();
}

void ConnectionGuard::OnAccept(int listen_fd, int fd) {
  t_accepted = 0;
  std::lock_guard<std::mutex> lock(g_guards_mu);
  auto it = g_guards.find(listen_fd);
  if (it != g_guards.end()) it->second->Accepted(fd);
}

void ConnectionGuard::Accepted(int fd) {
  const std::optional<Key> key = PeerOf(fd);
  if (!key) return;
  std::lock_guard<std::mutex> lock(mu_);
  if (stopping_) {
    ::shutdown(fd, SHUT_RDWR);
    return;
  }
  if (auto old = connections_.find(*key); old != connections_.end()) {  // not seen closed (cannot happen)
    ReleaseLocked(old->second);
    connections_.erase(old);
  }
  // The guard shuts the socket down through its own descriptor (above the numbers select(2) can
  // watch, so it takes none the library needs): the library's may be closed, and its number
  // reused, a moment before the guard learns of it. Without one (a low descriptor limit), the
  // library's is used.
  int own = ::fcntl(fd, F_DUPFD_CLOEXEC, 1024);
  if (own < 0) own = -1;
  const auto now = Clock::now();
  Connection& c = connections_[*key];
  c = {own >= 0 ? own : fd, key->first, Phase::kRequest, now + limits_.header_timeout, now};
  c.own_fd = own >= 0;
  c.serial = next_serial_++;
  t_accepted = c.serial;
}

void ConnectionGuard::SetPhase(const std::string& addr, int port, Phase phase, std::chrono::milliseconds timeout) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = connections_.find({addr, port});
  if (it == connections_.end()) return;
  it->second.phase = phase;
  it->second.deadline = Clock::now() + timeout;
}

void ConnectionGuard::HeadersRead(const std::string& addr, int port, bool has_body) {
  SetPhase(addr, port, has_body ? Phase::kBody : Phase::kAnswering, limits_.body_timeout);
}

void ConnectionGuard::Answering(const std::string& addr, int port) {
  SetPhase(addr, port, Phase::kAnswering, limits_.body_timeout);
}

void ConnectionGuard::Answered(const std::string& addr, int port) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = connections_.find({addr, port});
  if (it == connections_.end()) return;
  it->second.phase = Phase::kRequest;
  it->second.deadline = Clock::now() + limits_.header_timeout;
  it->second.answered = true;
}

int64_t ConnectionGuard::TakeAccepted() { return std::exchange(t_accepted, 0); }

void ConnectionGuard::Closed(int64_t serial) {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto it = connections_.begin(); it != connections_.end(); ++it) {
    if (it->second.serial == serial) {
      ReleaseLocked(it->second);
      connections_.erase(it);
      return;
    }
  }
}

void ConnectionGuard::ShutDownLocked(Connection& c) {
  // The connection is open: the library has not finished its task (Closed comes after its close).
  if (!c.shut) ::shutdown(c.fd, SHUT_RDWR);
  c.shut = true;
}

void GuardedTaskQueue::enqueue(std::function<void()> fn) {
  const int64_t serial = ConnectionGuard::TakeAccepted();
  if (serial == 0 || guard_ == nullptr) return pool_.enqueue(std::move(fn));
  pool_.enqueue([fn = std::move(fn), serial, guard = guard_] {
    fn();
    guard->Closed(serial);
  });
}

void ConnectionGuard::ReleaseLocked(const Connection& c) {
  if (c.own_fd) ::close(c.fd);
}

void ConnectionGuard::Watch() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stopping_) {
    wake_.wait_for(lock, std::chrono::milliseconds(200));
    const auto now = Clock::now();
    // Per client, the connections that opened a while ago and have not sent a first request: those
    // beyond the cap, newest first, are closed.
    std::map<std::string, std::vector<std::map<Key, Connection>::iterator>> stalled;
    for (auto it = connections_.begin(); it != connections_.end(); ++it) {
      const Connection& c = it->second;
      if (!c.shut && c.phase == Phase::kRequest && !c.answered && now - c.opened > limits_.stall_after) {
        stalled[c.ip].push_back(it);
      }
    }
    for (auto& [ip, conns] : stalled) {
      if (static_cast<int>(conns.size()) <= limits_.max_per_client) continue;
      std::sort(conns.begin(), conns.end(), [](auto a, auto b) { return a->second.opened > b->second.opened; });
      for (size_t i = 0; i + limits_.max_per_client < conns.size(); ++i) {
        ShutDownLocked(conns[i]->second);
      }
      spdlog::info("closed {} connections from {} that sent nothing (at most {} such per client)",
                   conns.size() - limits_.max_per_client, ip, limits_.max_per_client);
    }
    for (auto& [key, c] : connections_) {
      if (c.shut || c.phase == Phase::kAnswering || now <= c.deadline) continue;
      ShutDownLocked(c);
      spdlog::info("closed the connection from {}:{}: {} not sent in time", key.first, key.second,
                   c.phase == Phase::kBody ? "the request body" : "a request");
    }
  }
}

void ConnectionGuard::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!stopping_) {
      stopping_ = true;
      for (auto& [key, c] : connections_) {
        if (c.phase != Phase::kAnswering) ShutDownLocked(c);
      }
    }
  }
  wake_.notify_all();
  if (watchdog_.joinable()) watchdog_.join();
}

}  // namespace imgsearch::server
