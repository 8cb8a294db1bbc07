// The HTTP server's core: listening, the route table each resource file contributes, the bearer
// token, request metrics, errors as JSON, /api described from the same table, and the web page.
#include "imgsearch/server.h"

#include <httplib.h>
#include <netdb.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <unistd.h>

#include <malloc.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <thread>

#include "base/text.h"
#include "server/connections.h"
#include "server/routes.h"

namespace imgsearch {

namespace {

// The release binary's allocator is TCMalloc (CMakeLists.txt), whose free memory glibc's
// malloc_trim does not reach; a build without it (the sanitizers', the tests') has glibc's.
extern "C" void MallocExtension_ReleaseFreeMemory() __attribute__((weak));

void ReleaseFreeMemory() {
  if (MallocExtension_ReleaseFreeMemory != nullptr) {
    MallocExtension_ReleaseFreeMemory();
  } else {
    ::malloc_trim(0);
  }
}

using server::Clock;
using server::json;
using server::Req;
using server::Res;
using server::Route;
using server::SendJson;

#include "web_assets.inc"  // kWebAssets: the page's files, embedded at build time

Status CannotListen(const std::string& host, int port) {
  return Status::Unavailable("cannot listen on " + host + ":" + std::to_string(port) +
                             " (in use, or not an address of this machine)");
}

// The route name of the request this thread is serving, for its metrics.
thread_local const char* t_route = nullptr;
thread_local Clock::time_point t_request_start{};

const char* ReasonOf(int status) {
  switch (status) {
    case 400: return "bad request";
    case 401: return "a bearer token is required (Authorization: Bearer TOKEN)";
    case 403: return "forbidden";
    case 404: return "no such endpoint or resource (see /api)";
    case 405: return "method not allowed";
    case 413: return "the request body is too large";
    case 415: return "unsupported content type";
    default: return status >= 500 ? "internal error" : "request failed";
  }
}

bool ConstantTimeEquals(const std::string& a, const std::string& b) {
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

// "/api/images/{id}/info" → the regular expression httplib matches, the id captured.
std::string PatternRegex(const std::string& pattern) {
  std::string out = pattern;
  const size_t at = out.find("{id}");
  if (at != std::string::npos) out.replace(at, 4, R"((\d+))");
  return out;
}

class Server final : public SearchServer {
 public:
  Server(const ClipModel* model, Collection* collection, FolderWatcher* watcher, const ServerOptions& options)
      : options_(options),
        searcher_(model, collection,
                  SearcherOptions{.max_text_batch = options.max_text_batch,
                                  .text_cache_entries = options.text_cache_entries,
                                  .decode = options.decode,
                                  .text_model = options.text_model}),
        gate_(collection),
        thumbnails_(options.thumbnail_dir, &gate_, options.decode, options.thumbnail_cache_bytes) {
    context_.model = model;
    context_.collection = collection;
    context_.watcher = watcher;
    context_.options = &options_;
    context_.limits.max_k = options.max_k;
    context_.searcher = &searcher_;
    context_.gate = &gate_;
    context_.thumbnails = &thumbnails_;
    context_.metrics = &metrics_;
    context_.started = Clock::now();
  }

  ~Server() override { Stop(); }

  Status Init() {
    const int threads = std::max(4, options_.http_threads);
    // guard_ exists by the time the library makes its queue (when listening starts).
    http_.new_task_queue = [this, threads] {
      return new server::GuardedTaskQueue(static_cast<size_t>(threads), guard_.get());
    };
    http_.set_payload_max_length(options_.max_body_bytes);
    // SO_REUSEADDR (a restart may bind while old connections linger) but not the library's default
    // SO_REUSEPORT, which would let a second server take the same port silently. The socket is
    // remembered to raise its backlog below.
    http_.set_socket_options([this](int sock) {
      int yes = 1;
      ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
      listen_socket_ = sock;
    });
    http_.set_keep_alive_max_count(1000);
    http_.set_read_timeout(std::chrono::seconds(30));
    http_.set_write_timeout(std::chrono::seconds(30));
    Routes();
    if (options_.port == 0) {
      port_ = http_.bind_to_any_port(options_.host);
      if (port_ <= 0) return Status::Unavailable("cannot listen on " + options_.host + " (any port)");
    } else {
      if (!http_.bind_to_port(options_.host, options_.port)) return CannotListen(options_.host, options_.port);
      port_ = options_.port;
    }
    // Debian's compiled cpp-httplib listens with a backlog of 5: a burst of new connections (a page
    // loading its thumbnails, 50 clients starting at once) overflows it and the connections that do
    // not fit fail after a second. Listening again on a listening socket only changes the backlog.
    if (listen_socket_ >= 0) ::listen(listen_socket_, SOMAXCONN);
    auto ms = [](double s) { return std::chrono::milliseconds(static_cast<int64_t>(s * 1000)); };
    guard_ = std::make_unique<server::ConnectionGuard>(
        listen_socket_, server::ConnectionLimits{.max_per_client = std::max(1, options_.max_connections_per_client),
                                                 .header_timeout = ms(options_.header_timeout_s),
                                                 .body_timeout = ms(options_.body_timeout_s)});
    thread_ = std::thread([this] { http_.listen_after_bind(); });
    return Status::Ok();
  }

  int port() const override { return port_; }

  void Stop() override {
    if (stopped_.exchange(true)) return;
    // Slow and idle connections first, so that the library's workers are free to stop.
    if (guard_ != nullptr) guard_->Stop();
    http_.stop();
    if (thread_.joinable()) thread_.join();
  }

 private:
  bool Authorized(const Req& req, Res& res) const {
    if (options_.token.empty()) return true;
    const std::string header = req.get_header_value("Authorization");
    const std::string prefix = "Bearer ";
    if (header.rfind(prefix, 0) == 0 && ConstantTimeEquals(header.substr(prefix.size()), options_.token)) return true;
    res.set_header("WWW-Authenticate", "Bearer");
    SendJson(res,
             json{{"error",
                   header.empty() ? "this endpoint needs 'Authorization: Bearer TOKEN'" : "the bearer token is wrong"}},
             401);
    return false;
  }

  // /api: the route table, described.
  json ApiDoc() const {
    json endpoints = json::array();
    for (const Route& r : routes_) {
      json e{{"method", r.method}, {"path", r.pattern}, {"about", r.about}};
      if (!r.params.empty()) e["params"] = r.params;
      if (!r.body.empty()) e["body"] = r.body;
      if (r.auth) e["auth"] = true;
      endpoints.push_back(std::move(e));
    }
    return json{{"version", IMGSEARCH_VERSION},
                {"endpoints", std::move(endpoints)},
                {"errors", "4xx/5xx with JSON {\"error\": \"what is wrong\"}"},
                {"auth",
                 "endpoints marked auth need 'Authorization: Bearer TOKEN' when the server was started with a "
                 "token"}};
  }

  void Routes() {
    http_.set_pre_routing_handler([this](const Req& req, Res& res) {
      t_request_start = Clock::now();
      // Until a route claims the request: the page, or an unknown API path.
      t_route = req.path.rfind("/api/", 0) == 0 ? "unknown" : "page";
      const bool has_body = req.has_header("Transfer-Encoding") ||
                            (req.has_header("Content-Length") && req.get_header_value("Content-Length") != "0");
      if (guard_ != nullptr) guard_->HeadersRead(req.remote_addr, req.remote_port, has_body);
      // Before any of the body is read: a length that is not a number (-1), or far over the limit, is
      // answered now, instead of the library waiting for (or skipping) bytes that never come.
      if (req.has_header("Content-Length")) {
        const std::string length = req.get_header_value("Content-Length");
        const bool digits = !length.empty() && length.size() <= 19 &&
                            std::all_of(length.begin(), length.end(), [](char ch) { return ch >= '0' && ch <= '9'; });
        if (!digits) {
          server::SendError(res, Status::InvalidArgument("Content-Length must be a number of bytes, not \"" +
                                                         EscapeForDisplay(length, 40) + "\""));
          return httplib::Server::HandlerResponse::Handled;
        }
        // A body somewhat over the limit is read and dropped by the library, then refused (413), so
        // that an honest client finishes sending and reads the answer; one beyond any reason (which
        // the library would wait for) is refused at once.
        if (std::stoull(length) > options_.max_body_bytes + (uint64_t{1} << 30)) {
          server::SendError(res,
                            Status::ResourceExhausted("the body is " + length + " bytes; this server accepts at most " +
                                                      std::to_string(options_.max_body_bytes)));
          return httplib::Server::HandlerResponse::Handled;
        }
      }
      return httplib::Server::HandlerResponse::Unhandled;
    });
    http_.set_logger([this](const Req& req, const Res& res) {
      const double seconds = t_request_start == Clock::time_point{}
                                 ? -1
                                 : std::chrono::duration<double>(Clock::now() - t_request_start).count();
      t_request_start = {};
      if (guard_ != nullptr) guard_->Answered(req.remote_addr, req.remote_port);
      metrics_.Observe(t_route != nullptr ? t_route : "unknown", res.status, seconds);
      spdlog::info("{} {} {} {:.1f} ms", req.method, req.path, res.status, seconds * 1000);
      // A large body's memory goes back to the system, not only to the allocator's free lists.
      if (req.body.size() > (size_t{1} << 20) || !req.files.empty()) ReleaseFreeMemory();
    });
    http_.set_error_handler([](const Req& req, Res& res) {
      if (!res.body.empty()) return;
      // The library answers 400 itself when it cannot parse what it was sent.
      if (res.status == 400 && req.is_multipart_form_data()) {
        SendJson(res,
                 json{{"error",
                       "the multipart/form-data body cannot be read: a missing or misplaced closing boundary, a "
                       "boundary longer than 70 characters, a part without its headers, or more than 1024 parts"}},
                 400);
      } else if (res.status == 400 && req.method.empty()) {
        SendJson(res, json{{"error", "the request line or a header is malformed"}}, 400);
      } else {
        SendJson(res, json{{"error", ReasonOf(res.status)}}, res.status);
      }
    });
    http_.set_exception_handler([](const Req&, Res& res, std::exception_ptr ep) {
      std::string what = "unknown";
      try {
        if (ep) std::rethrow_exception(ep);
      } catch (const std::exception& e) {
        what = e.what();
      } catch (...) {
      }
      spdlog::error("request failed with an exception: {}", what);
      SendJson(res, json{{"error", "internal error: " + what}}, 500);
    });

    // The page.
    for (const WebAsset& asset : kWebAssets) {
      const std::string path = std::string(asset.path) == "/index.html" ? "/" : asset.path;
      http_.Get(path, [&asset](const Req&, Res& res) {
        res.set_header("Cache-Control", "no-cache");
        res.set_content(asset.data, asset.size, asset.mime);
      });
    }

    // The API: every resource's routes, registered, guarded and described from one table.
    for (auto part : {server::SearchRoutes, server::ItemRoutes, server::StatusRoutes}) {
      for (Route& r : part(context_)) routes_.push_back(std::move(r));
    }
    routes_.push_back({.method = "GET",
                       .pattern = "/api",
                       .name = "api",
                       .about = "This description.",
                       .handle = [this](const Req&, Res& res) { SendJson(res, ApiDoc()); }});
    for (const Route& route : routes_) {
      auto handler = [this, &route](const Req& req, Res& res) {
        t_route = route.name.c_str();
        if (guard_ != nullptr) guard_->Answering(req.remote_addr, req.remote_port);
        if (route.auth && !Authorized(req, res)) return;
        route.handle(req, res);
      };
      const std::string regex = PatternRegex(route.pattern);
      if (route.method == "GET") {
        http_.Get(regex, handler);
      } else {
        http_.Post(regex, handler);
      }
    }
  }

  const ServerOptions options_;
  Searcher searcher_;
  server::FileGate gate_;
  server::ThumbnailCache thumbnails_;
  server::RequestMetrics metrics_;
  server::ServerContext context_;
  std::vector<Route> routes_;  // registered with http_, which keeps references to them

  httplib::Server http_;
  std::unique_ptr<server::ConnectionGuard> guard_;  // made once listening; stopped before http_
  int port_ = 0;
  int listen_socket_ = -1;
  std::thread thread_;
  std::atomic<bool> stopped_{false};
};

}  // namespace

Status CheckCanListen(const std::string& host, int port) {
  if (port == 0) return Status::Ok();
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* found = nullptr;
  if (::getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &found) != 0) {
    return CannotListen(host, port);
  }
  bool bound = false;
  for (addrinfo* a = found; a != nullptr && !bound; a = a->ai_next) {
    const int fd = ::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) continue;
    int yes = 1;  // as the server binds: a port left in TIME_WAIT is free
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
    bound = ::bind(fd, a->ai_addr, a->ai_addrlen) == 0;
    ::close(fd);
  }
  ::freeaddrinfo(found);
  return bound ? Status::Ok() : CannotListen(host, port);
}

Result<std::unique_ptr<SearchServer>> SearchServer::Start(const ClipModel* model, Collection* collection,
                                                          FolderWatcher* watcher, const ServerOptions& options) {
  if (model == nullptr || collection == nullptr)
    return Status::InvalidArgument("the server needs a model and a collection");
  if (options.thumbnail_dir.empty()) return Status::InvalidArgument("no thumbnail folder given");
  auto server = std::make_unique<Server>(model, collection, watcher, options);
  RETURN_IF_ERROR(server->Init());
  return std::unique_ptr<SearchServer>(std::move(server));
}

}  // namespace imgsearch
