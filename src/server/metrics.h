// Request counts and latency histograms per route, rendered in the Prometheus text format.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <utility>

namespace imgsearch::server {

class RequestMetrics {
 public:
  static constexpr std::array<double, 13> kBuckets = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                                      0.25,  0.5,    1.0,   2.5,  5.0,   10.0};

  void Observe(const std::string& route, int status, double seconds);
  int64_t total() const;
  // imgsearch_http_requests_total and imgsearch_http_request_seconds.
  std::string Render() const;

 private:
  struct Histogram {
    std::array<int64_t, kBuckets.size()> buckets{};
    int64_t count = 0;
    double sum = 0;
  };
  mutable std::mutex mu_;
  std::map<std::pair<std::string, int>, int64_t> counts_;  // (route, status) → requests
  std::map<std::string, Histogram> latency_;
};

// One Prometheus sample line: name{labels} value.
std::string PromLine(const std::string& name, const std::string& labels, double value);
// A # HELP and # TYPE header.
std::string PromHeader(const std::string& name, const std::string& type, const std::string& help);

}  // namespace imgsearch::server
