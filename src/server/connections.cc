#include "server/connections.h"

#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstring>
#include <optional>
#include <vector>

// Every connection the process accepts passes here; the guard of the listening socket, if any,
// learns of it. (cpp-httplib calls accept(2) inside its own loop and has no hook on accepted
// sockets; the executable's definition of accept is the one the library's call resolves to.)
extern "C" int accept(int fd, sockaddr* __restrict addr, socklen_t* __restrict len) {
  const int client = ::accept4(fd, addr, len, 0);
  if (client >= 0) imgsearch::server::ConnectionGuard::OnAccept(fd, client);
  return client;
}

namespace imgsearch::server {
namespace {

using Clock = std::chrono::steady_clock;

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

int LocalPort(int fd) {
  sockaddr_storage addr{};
  socklen_t len = sizeof(addr);
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) return -1;
  if (addr.ss_family == AF_INET) return ntohs(reinterpret_cast<sockaddr_in*>(&addr)->sin_port);
  if (addr.ss_family == AF_INET6) return ntohs(reinterpret_cast<sockaddr_in6*>(&addr)->sin6_port);
  return -1;
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
  std::lock_guard<std::mutex> lock(g_guards_mu);
  g_guards.erase(listen_fd_);
}

void ConnectionGuard::OnAccept(int listen_fd, int fd) {
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
  // The descriptor, or the remote address and port, of a connection since closed.
  for (auto it = connections_.begin(); it != connections_.end();) {
    if (it->second.fd == fd || it->first == *key) {
      ReleaseLocked(it->second.ip);
      it = connections_.erase(it);
    } else {
      ++it;
    }
  }
  ++per_ip_[key->first];
  const auto now = Clock::now();
  connections_[*key] = {fd, key->first, Phase::kRequest, now + limits_.header_timeout, now};
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

bool ConnectionGuard::StillOurs(const Key& key, const Connection& c) const {
  struct stat st {};
  if (::fstat(c.fd, &st) != 0 || !S_ISSOCK(st.st_mode)) return false;
  const std::optional<Key> peer = PeerOf(c.fd);
  return peer && *peer == key && LocalPort(c.fd) == LocalPort(listen_fd_);
}

void ConnectionGuard::ShutDownLocked(const Key& key, Connection& c) {
  // Checked under mu_, which Accepted also holds: a descriptor reused by a new connection is
  // re-registered first, never shut down by mistake.
  if (StillOurs(key, c)) ::shutdown(c.fd, SHUT_RDWR);
}

void ConnectionGuard::ReleaseLocked(const std::string& ip) {
  auto it = per_ip_.find(ip);
  if (it != per_ip_.end() && --it->second <= 0) per_ip_.erase(it);
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
      if (c.phase == Phase::kRequest && !c.answered && now - c.opened > limits_.stall_after) {
        stalled[c.ip].push_back(it);
      }
    }
    for (auto& [ip, conns] : stalled) {
      if (static_cast<int>(conns.size()) <= limits_.max_per_client) continue;
      std::sort(conns.begin(), conns.end(), [](auto a, auto b) { return a->second.opened > b->second.opened; });
      for (size_t i = 0; i + limits_.max_per_client < conns.size(); ++i) {
        ShutDownLocked(conns[i]->first, conns[i]->second);
        ++refused_;
        ReleaseLocked(ip);
        connections_.erase(conns[i]);
      }
      spdlog::info("closed {} connections from {} that sent nothing (at most {} such per client)",
                   conns.size() - limits_.max_per_client, ip, limits_.max_per_client);
    }
    for (auto it = connections_.begin(); it != connections_.end();) {
      Connection& c = it->second;
      const bool late = c.phase != Phase::kAnswering && now > c.deadline;
      if (late) {
        ShutDownLocked(it->first, c);
        ++timed_out_;
        spdlog::info("closed the connection from {}:{}: {} not sent in time", it->first.first, it->first.second,
                     c.phase == Phase::kBody ? "the request body" : "a request");
      }
      if (late || !StillOurs(it->first, c)) {
        ReleaseLocked(c.ip);
        it = connections_.erase(it);
      } else {
        ++it;
      }
    }
  }
}

void ConnectionGuard::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!stopping_) {
      stopping_ = true;
      for (auto& [key, c] : connections_) {
        if (c.phase != Phase::kAnswering) ShutDownLocked(key, c);
      }
    }
  }
  wake_.notify_all();
  if (watchdog_.joinable()) watchdog_.join();
}

ConnectionStats ConnectionGuard::Stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return {static_cast<int64_t>(connections_.size()), timed_out_.load(), refused_.load()};
}

}  // namespace imgsearch::server
