#include "server/metrics.h"

#include <cmath>
#include <cstdio>

namespace imgsearch::server {

std::string PromLine(const std::string& name, const std::string& labels, double value) {
  char number[64];
  if (std::isinf(value)) {
    std::snprintf(number, sizeof(number), value > 0 ? "+Inf" : "-Inf");
  } else if (value == std::floor(value) && std::abs(value) < 1e15) {
    std::snprintf(number, sizeof(number), "%.0f", value);
  } else {
    std::snprintf(number, sizeof(number), "%.6g", value);
  }
  return name + (labels.empty() ? "" : "{" + labels + "}") + " " + number + "\n";
}

std::string PromHeader(const std::string& name, const std::string& type, const std::string& help) {
  return "# HELP " + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
}

void RequestMetrics::Observe(const std::string& route, int status, double seconds) {
  std::lock_guard<std::mutex> lock(mu_);
  ++counts_[{route, status}];
  if (seconds < 0) return;
  Histogram& h = latency_[route];
  for (size_t i = 0; i < kBuckets.size(); ++i) {
    if (seconds <= kBuckets[i]) ++h.buckets[i];
  }
  ++h.count;
  h.sum += seconds;
}

int64_t RequestMetrics::total() const {
  std::lock_guard<std::mutex> lock(mu_);
  int64_t n = 0;
  for (const auto& [key, count] : counts_) n += count;
  return n;
}

std::string RequestMetrics::Render() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::string out = PromHeader("imgsearch_http_requests_total", "counter", "HTTP requests by route and status.");
  for (const auto& [key, count] : counts_) {
    out +=
        PromLine("imgsearch_http_requests_total",
                 "route=\"" + key.first + "\",code=\"" + std::to_string(key.second) + "\"", static_cast<double>(count));
  }
  out += PromHeader("imgsearch_http_request_seconds", "histogram", "HTTP request latency by route.");
  for (const auto& [route, h] : latency_) {
    const std::string r = "route=\"" + route + "\"";
    for (size_t i = 0; i < kBuckets.size(); ++i) {
      char le[32];
      std::snprintf(le, sizeof(le), "%g", kBuckets[i]);
      out += PromLine("imgsearch_http_request_seconds_bucket", r + ",le=\"" + le + "\"",
                      static_cast<double>(h.buckets[i]));
    }
    out += PromLine("imgsearch_http_request_seconds_bucket", r + ",le=\"+Inf\"", static_cast<double>(h.count));
    out += PromLine("imgsearch_http_request_seconds_sum", r, h.sum);
    out += PromLine("imgsearch_http_request_seconds_count", r, static_cast<double>(h.count));
  }
  return out;
}

}  // namespace imgsearch::server
