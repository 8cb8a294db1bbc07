// The one mapping from a Status to an HTTP status code.
#pragma once

#include "imgsearch/status.h"

namespace imgsearch::server {

inline int HttpStatusOf(const Status& status) {
  switch (status.code()) {
    case StatusCode::kOk: return 200;
    case StatusCode::kInvalidArgument: return 400;
    case StatusCode::kCorruption: return 422;  // well-formed request, unreadable content (an image)
    case StatusCode::kUnsupported: return 415;
    case StatusCode::kNotFound: return 404;
    case StatusCode::kPermissionDenied: return 403;
    case StatusCode::kUnavailable: return 503;
    case StatusCode::kResourceExhausted: return 413;
    case StatusCode::kIoError:
    case StatusCode::kInternal: return 500;
  }
  return 500;
}

}  // namespace imgsearch::server
