// A small blocking HTTP(S) client over libcurl: JSON metadata requests and resumable downloads.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "imgsearch/status.h"

namespace imgsearch {

struct HttpResponse {
  long code = 0;  // HTTP status
  std::string body;
};

class HttpClient {
 public:
  // `token`, when set, is sent as a bearer token (libcurl drops it on redirects to other hosts).
  explicit HttpClient(std::string token = "");

  // GET; a transport failure (no route, refused, TLS, timeout) is an error, any HTTP status is not.
  Result<HttpResponse> Get(const std::string& url) const;

  // Downloads `url` into `path`, appending to what is already there with a Range request (or
  // starting over when the server ignores it). `on_bytes` gets the file's size so far.
  // Returns the HTTP status of the final response.
  Result<long> Download(const std::string& url, const std::string& path,
                        const std::function<void(int64_t)>& on_bytes) const;

 private:
  std::vector<std::string> headers_;
};

}  // namespace imgsearch
