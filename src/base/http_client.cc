#include "base/http_client.h"

#include <curl/curl.h>
#include <sys/stat.h>

#include <cstdio>
#include <memory>
#include <mutex>

namespace imgsearch {

namespace {

void GlobalInit() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

struct CurlDeleter {
  void operator()(CURL* c) const { curl_easy_cleanup(c); }
};
struct SlistDeleter {
  void operator()(curl_slist* l) const { curl_slist_free_all(l); }
};
using CurlPtr = std::unique_ptr<CURL, CurlDeleter>;
using SlistPtr = std::unique_ptr<curl_slist, SlistDeleter>;

// A handle and the header list it points to, which must live as long as it.
struct Request {
  CurlPtr curl;
  SlistPtr headers;
};

// Options every request shares: redirects, timeouts that catch stalls, proxies from the
// environment (libcurl's default), a user agent, the client's headers.
Result<Request> NewRequest(const std::string& url, const std::vector<std::string>& headers) {
  GlobalInit();
  Request r;
  curl_slist* list = nullptr;
  for (const std::string& h : headers) list = curl_slist_append(list, h.c_str());
  r.headers.reset(list);
  r.curl.reset(curl_easy_init());
  if (!r.curl) return Status::Internal("curl_easy_init failed");
  CURL* c = r.curl.get();
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
  curl_easy_setopt(c, CURLOPT_MAXREDIRS, 10L);
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 20L);
  curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);  // abort after 60 s without a byte
  curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, 60L);
  curl_easy_setopt(c, CURLOPT_USERAGENT, "imgsearch/0.1");
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  if (list != nullptr) curl_easy_setopt(c, CURLOPT_HTTPHEADER, list);
  return r;
}

Status TransportError(const std::string& url, CURLcode code, const char* detail) {
  std::string m = "cannot fetch " + url + ": " + (detail[0] != '\0' ? detail : curl_easy_strerror(code));
  if (code == CURLE_COULDNT_RESOLVE_HOST || code == CURLE_COULDNT_CONNECT || code == CURLE_COULDNT_RESOLVE_PROXY) {
    m += " (no network? check the connection, HF_ENDPOINT and https_proxy)";
    return Status::Unavailable(m);
  }
  return Status::IoError(m);
}

size_t AppendToString(char* data, size_t size, size_t n, void* out) {
  static_cast<std::string*>(out)->append(data, size * n);
  return size * n;
}

struct DownloadState {
  std::FILE* file = nullptr;
  long code = 0;
  bool checked = false;  // status looked at (first body bytes of the final response)
  bool appending = false;
  int64_t size = 0;
  const std::function<void(int64_t)>* on_bytes = nullptr;
  CURL* curl = nullptr;
  std::string path;
};

size_t WriteToFile(char* data, size_t size, size_t n, void* p) {
  auto* s = static_cast<DownloadState*>(p);
  if (!s->checked) {
    s->checked = true;
    curl_easy_getinfo(s->curl, CURLINFO_RESPONSE_CODE, &s->code);
    if (s->code == 200 && s->appending) {
      // The server sent the whole file rather than the rest: start over.
      s->file = std::freopen(s->path.c_str(), "wb", s->file);
      s->size = 0;
      if (s->file == nullptr) return 0;
    } else if (s->code != 200 && s->code != 206) {
      return size * n;  // an error page: not written
    }
  }
  if (s->code != 200 && s->code != 206) return size * n;
  if (std::fwrite(data, size, n, s->file) != n) return 0;
  s->size += static_cast<int64_t>(size * n);
  if (*s->on_bytes) (*s->on_bytes)(s->size);
  return size * n;
}

}  // namespace

HttpClient::HttpClient(std::string token) {
  if (!token.empty()) headers_.push_back("Authorization: Bearer " + token);
}

Result<HttpResponse> HttpClient::Get(const std::string& url) const {
  ASSIGN_OR_RETURN(Request req, NewRequest(url, headers_));
  CURL* c = req.curl.get();
  HttpResponse r;
  char error[CURL_ERROR_SIZE] = {0};
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, error);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, AppendToString);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &r.body);
  const CURLcode code = curl_easy_perform(c);
  if (code != CURLE_OK) return TransportError(url, code, error);
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.code);
  return r;
}

Result<long> HttpClient::Download(const std::string& url, const std::string& path,
                                  const std::function<void(int64_t)>& on_bytes) const {
  struct stat st {};
  const int64_t have = ::stat(path.c_str(), &st) == 0 ? static_cast<int64_t>(st.st_size) : 0;
  ASSIGN_OR_RETURN(Request req, NewRequest(url, headers_));
  CURL* c = req.curl.get();
  DownloadState s;
  s.file = std::fopen(path.c_str(), have > 0 ? "ab" : "wb");
  if (s.file == nullptr) return Status::IoError("cannot write " + path);
  s.appending = have > 0;
  s.size = have;
  s.on_bytes = &on_bytes;
  s.curl = c;
  s.path = path;
  char error[CURL_ERROR_SIZE] = {0};
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, error);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, WriteToFile);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &s);
  // A plain Range header rather than CURLOPT_RESUME_FROM, which fails outright when the server
  // ignores ranges; WriteToFile starts over on a 200 instead.
  const std::string range = std::to_string(have) + "-";
  if (have > 0) curl_easy_setopt(c, CURLOPT_RANGE, range.c_str());
  const CURLcode code = curl_easy_perform(c);
  const bool closed = s.file != nullptr && std::fclose(s.file) == 0;
  if (code != CURLE_OK) return TransportError(url, code, error);
  if (!closed) return Status::IoError("cannot write " + path);
  long http = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &http);
  // 416: asked for bytes past the end, i.e. the file is already complete.
  return http;
}

}  // namespace imgsearch
