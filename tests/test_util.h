// Helpers shared by the test binaries.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace imgsearch::testing {

// ../shared/golden, found through $IMGSEARCH_GOLDEN or next to the source tree; nullopt if absent.
std::optional<std::string> GoldenDir();
// True when $IMGSEARCH_REQUIRE_GOLDEN is "1": a missing ../shared is then a failure, not a skip.
bool GoldenRequired();

// The tiny random-weight model the test fixture makes ($IMGSEARCH_TEST_MODEL overrides).
std::string TestModelDir();

// The imgsearch binary under test ($IMGSEARCH_BIN overrides).
std::string ImgsearchBin();

// The port a `serve` printed it listens on ("serving http://127.0.0.1:PORT/"), 0 when it has not.
int ServingPort(const std::string& out);

// Output of JSON lines (--json), parsed.
std::vector<nlohmann::json> JsonLines(const std::string& out);

// The program `name` found on $PATH (RunCommand takes a path), or nullopt.
std::optional<std::string> FindProgram(const std::string& name);

// A fresh empty directory, removed when the process exits.
std::string MakeTempDir();

// Inputs that several test processes share (ctest runs each test in a process of its own), made
// once per build in the build's tests folder: `make` fills a fresh directory, which then takes its
// final name, NAME-<hash of recipe>, in one rename. A process finding it reuses it; a changed
// recipe makes another. Empty when `make` fails. Read-only for the tests: copy what they alter.
std::string SharedInputDir(const std::string& name, const std::string& recipe,
                           const std::function<bool(const std::string& dir)>& make);

// A slideshow of `pictures` (paths), each shown for `seconds`, scaled into width×height (black bars
// keep its shape) at 10 frames per second, encoded by the ffmpeg command with `codec` ("h264":
// libx264, a key frame every 2 s; "vp9": libvpx-vp9). Empty when made, else ffmpeg's complaint.
std::string MakeSlideshow(const std::vector<std::string>& pictures, double seconds, const std::string& codec,
                          const std::string& out, int width = 320, int height = 240);

struct CommandResult {
  int exit_code = -1;
  std::string out;  // stdout
  std::string err;  // stderr
};

// Runs argv (no shell) and captures its output; `env` adds or overrides variables ("NAME=value").
CommandResult RunCommand(const std::vector<std::string>& argv, const std::vector<std::string>& env = {});

// A child process running in the background, its output going to files. Killed (SIGKILL) and
// reaped on destruction if still running.
class Process {
 public:
  explicit Process(const std::vector<std::string>& argv);
  ~Process();
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  void Signal(int sig);
  // Waits for the exit; the exit code, or 128 + signal.
  int Wait();
  bool Running();
  std::string Out() const;
  std::string Err() const;
  // Waits until stdout contains `text`; false after `timeout_s` or if the process ended first.
  bool WaitForOutput(const std::string& text, double timeout_s);
  int pid() const { return pid_; }

 private:
  int pid_ = -1;
  int exit_code_ = -1;
  std::string out_path_, err_path_;
};

void WriteFile(const std::string& path, const std::string& bytes);
std::string ReadFile(const std::string& path);

// A writable copy of the folder `dir` (a model a test may damage), in a new temporary folder.
std::string CopyToTemp(const std::string& dir);

// Rewrites the JSON file at `path` with `edit` applied.
void EditJsonFile(const std::string& path, const std::function<void(nlohmann::json&)>& edit);
// RFC 4648 base64, written independently of the product's (to check its path_bytes).
std::string Base64(const std::string& bytes);

double Cosine(const std::vector<float>& a, const std::vector<float>& b);

}  // namespace imgsearch::testing

// Skips the test with a message when the golden data is not there; fails instead when
// $IMGSEARCH_REQUIRE_GOLDEN is 1 (CI sets it: there, missing reference data is an error).
#define REQUIRE_GOLDEN(var)                                                                          \
  auto var##_opt = ::imgsearch::testing::GoldenDir();                                                \
  if (!var##_opt && ::imgsearch::testing::GoldenRequired())                                          \
    GTEST_FAIL() << "golden data not found and IMGSEARCH_REQUIRE_GOLDEN=1 (set IMGSEARCH_GOLDEN or " \
                    "place ../shared/golden beside the project)";                                    \
  if (!var##_opt)                                                                                    \
    GTEST_SKIP() << "golden data not found (set IMGSEARCH_GOLDEN or place "                          \
                    "../shared/golden beside the project); skipping";                                \
  const std::string var = *var##_opt
