// Connections: deadlines and a per-client cap that the HTTP library lacks.
//
// cpp-httplib gives each accepted connection to a worker thread that reads the request with a
// timeout per read only: a client sending a header byte every few seconds holds a worker for ever,
// and 64 such clients stop the server answering anyone (and stopping it waits for them). The guard
// sees every connection the server accepts (connections.cc defines accept(2) for the process: the
// library offers no hook on accepted sockets), and a watchdog shuts down, with shutdown(2), which
// the worker then sees as the client leaving (a connection's life is known exactly: accept(2) on the
// library's listening thread is followed there by the task queue's enqueue, which GuardedTaskQueue
// pairs with it, and the task ends when the library has closed the socket):
//   - a connection still sending its request line and headers `header_timeout` after it opened or
//     after its previous answer (which also bounds a keep-alive connection's idle time);
//   - a request still sending its body `body_timeout` after its headers;
//   - on Stop(), every connection not in the middle of being answered.
//   - connections of one client (an IP address) that have not sent a first request after
//     `stall_after`, beyond `max_per_client` of them: a client opening many connections and sending
//     nothing (or a byte now and then) cannot take every worker until their deadlines. A burst of
//     connections that send their requests at once is never touched.
// Requests being answered have no deadline: that is imgsearch's own work.
#pragma once

#include <httplib.h>
#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <thread>

namespace imgsearch::server {

struct ConnectionLimits {
  int max_per_client = 16;
  std::chrono::milliseconds stall_after{1'000};
  std::chrono::milliseconds header_timeout{10'000};
  std::chrono::milliseconds body_timeout{60'000};
};

class ConnectionGuard {
 public:
  // Guards the connections accepted on `listen_fd`.
  ConnectionGuard(int listen_fd, const ConnectionLimits& limits);
  ~ConnectionGuard();
  ConnectionGuard(const ConnectionGuard&) = delete;
  ConnectionGuard& operator=(const ConnectionGuard&) = delete;

  // The request from `addr`:`port` (as the library reports its remote end) has its headers: its
  // body, if any, is being read now (`has_body`), else it is being answered.
  void HeadersRead(const std::string& addr, int port, bool has_body);
  // Its handler runs: no deadline until it is answered.
  void Answering(const std::string& addr, int port);
  // It was answered: the connection may send its next request within header_timeout.
  void Answered(const std::string& addr, int port);

  // Shuts down every connection not being answered (a server stopping), and stops the watchdog.
  void Stop();

  // Called by accept(2) for every connection the process accepts.
  static void OnAccept(int listen_fd, int fd);
  // On the thread that called accept: the connection it just registered (0: none), once.
  static int64_t TakeAccepted();
  // The library has closed connection `serial`.
  void Closed(int64_t serial);

 private:
  enum class Phase { kRequest, kBody, kAnswering };
  struct Connection {
    int fd = -1;
    std::string ip;
    Phase phase = Phase::kRequest;
    std::chrono::steady_clock::time_point deadline;
    std::chrono::steady_clock::time_point opened;
    bool answered = false;  // has had a request answered
    bool shut = false;      // shut down by the guard; the library closes it next
    bool own_fd = false;    // fd is the guard's duplicate, closed when the library has closed its own
    int64_t serial = 0;
  };
  using Key = std::pair<std::string, int>;  // remote address and port

  void Accepted(int fd);
  void Watch();
  void SetPhase(const std::string& addr, int port, Phase phase, std::chrono::milliseconds timeout);
  void ShutDownLocked(Connection& c);
  // Closes the guard's own descriptor of `c`, if it has one.
  void ReleaseLocked(const Connection& c);

  const int listen_fd_;
  const ConnectionLimits limits_;
  mutable std::mutex mu_;
  std::condition_variable wake_;
  std::map<Key, Connection> connections_;  // guarded by mu_
  bool stopping_ = false;                  // guarded by mu_
  int64_t next_serial_ = 1;                // guarded by mu_
  std::thread watchdog_;
};

// The library's worker pool, with each connection's task paired with the connection accept(2) just
// registered, so that the guard learns when the library has closed it.
class GuardedTaskQueue final : public httplib::TaskQueue {
 public:
  GuardedTaskQueue(size_t threads, ConnectionGuard* guard) : pool_(threads), guard_(guard) {}
  void enqueue(std::function<void()> fn) override;
  void shutdown() override { pool_.shutdown(); }

 private:
  httplib::ThreadPool pool_;
  ConnectionGuard* guard_;
};

}  // namespace imgsearch::server
