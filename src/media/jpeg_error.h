// libjpeg reports fatal errors by calling error_exit; ours formats the message and longjmps back
// to the setjmp in the caller, which turns it into a Status. Shared by the decoder and encoder.
#pragma once

// clang-format off: jpeglib.h needs size_t and FILE declared before it.
#include <csetjmp>
#include <cstddef>
#include <cstdio>

#include <jpeglib.h>
// clang-format on

namespace imgsearch::media {

struct JpegErrorManager {
  jpeg_error_mgr pub;
  std::jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
};

// Installs the manager in `cinfo->err` (set before jpeg_create_*).
jpeg_error_mgr* InstallJpegErrors(JpegErrorManager* err);

[[noreturn]] void JpegErrorExit(j_common_ptr cinfo);

}  // namespace imgsearch::media
