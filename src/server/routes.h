// The server's resources, one file each (search_routes.cc, item_routes.cc, status_routes.cc), as
// entries of one route table: the server registers them, guards the ones marked `auth`, labels
// their metrics and describes them at /api, all from the same entries.
#pragma once

#include <httplib.h>

#include <chrono>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "imgsearch/path_display.h"
#include "imgsearch/search.h"
#include "imgsearch/server.h"
#include "server/files.h"
#include "server/metrics.h"

namespace imgsearch::server {

using json = nlohmann::json;
using Req = httplib::Request;
using Res = httplib::Response;
using Clock = std::chrono::steady_clock;

// What the handlers share, owned by the server.
struct ServerContext {
  const ClipModel* model = nullptr;
  Collection* collection = nullptr;
  FolderWatcher* watcher = nullptr;  // may be null
  const ServerOptions* options = nullptr;
  RequestLimits limits;
  Searcher* searcher = nullptr;
  FileGate* gate = nullptr;
  ThumbnailCache* thumbnails = nullptr;
  RequestMetrics* metrics = nullptr;
  Clock::time_point started;
};

struct Route {
  std::string method;               // "GET" or "POST"
  std::string pattern;              // a path; "{id}" stands for an image id
  std::string name;                 // the route's label in metrics
  std::vector<std::string> params;  // query parameters, for /api
  std::string body;                 // what a POST takes, for /api
  std::string about;                // for /api
  bool auth = false;                // needs the bearer token when the server has one
  std::function<void(const Req&, Res&)> handle;
};

std::vector<Route> SearchRoutes(ServerContext& context);  // search, similar
std::vector<Route> ItemRoutes(ServerContext& context);    // an image's file, info and thumbnail
std::vector<Route> StatusRoutes(ServerContext& context);  // status, healthz, metrics, rescan

// ---- what every handler answers with ----

void SendJson(Res& res, const json& body, int status = 200);
// {"error": message} with the status's HTTP code.
void SendError(Res& res, const Status& status);
// The image id in the path ({id}).
Result<int64_t> PathId(const Req& req);
// A time in a video as a query parameter ("12.5": seconds, to the millisecond).
std::string TimeParam(double seconds);
// The record of an image, kNotFound when there is none.
Result<ImageRecord> RecordOf(Collection* collection, int64_t id);

// Which images are offline: kept, but under a folder the watcher cannot see now (an unmounted
// drive, an unreadable folder). Taken once per response.
class OfflineFolders {
 public:
  explicit OfflineFolders(const ServerContext& c);
  // Sets "offline": true on `j` when `path` is under one of them.
  void Mark(json* j, const std::string& path) const;

 private:
  std::vector<UnavailableFolder> folders_;
};

}  // namespace imgsearch::server
