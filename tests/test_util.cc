#include "test_util.h"

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <stdexcept>
#include <thread>

#include <nlohmann/json.hpp>

namespace imgsearch::testing {

namespace fs = std::filesystem;

std::optional<std::string> GoldenDir() {
  if (const char* env = std::getenv("IMGSEARCH_GOLDEN"); env != nullptr && fs::exists(env)) return std::string(env);
  const char* src = std::getenv("IMGSEARCH_SOURCE_DIR");
  const fs::path root = src != nullptr ? fs::path(src) : fs::path(IMGSEARCH_SOURCE_DIR_DEFAULT);
  const fs::path golden = root / ".." / "shared" / "golden";
  if (fs::exists(golden / "tiny-expected.json")) return fs::canonical(golden).string();
  return std::nullopt;
}

bool GoldenRequired() {
  const char* env = std::getenv("IMGSEARCH_REQUIRE_GOLDEN");
  return env != nullptr && std::string(env) == "1";
}

std::string TestModelDir() {
  const char* env = std::getenv("IMGSEARCH_TEST_MODEL");
  return env != nullptr ? env : IMGSEARCH_TEST_MODEL_DEFAULT;
}

std::string ImgsearchBin() {
  const char* env = std::getenv("IMGSEARCH_BIN");
  return env != nullptr ? env : IMGSEARCH_BIN_DEFAULT;
}

int ServingPort(const std::string& out) {
  std::smatch m;
  if (!std::regex_search(out, m, std::regex("serving http://127\\.0\\.0\\.1:(\\d+)/"))) return 0;
  return std::stoi(m[1]);
}

std::vector<nlohmann::json> JsonLines(const std::string& out) {
  std::vector<nlohmann::json> lines;
  std::istringstream in(out);
  for (std::string line; std::getline(in, line);) lines.push_back(nlohmann::json::parse(line));
  return lines;
}

std::optional<std::string> FindProgram(const std::string& name) {
  const char* path = std::getenv("PATH");
  const std::string dirs = path != nullptr ? path : "/usr/bin:/bin";
  for (size_t start = 0; start <= dirs.size();) {
    const size_t end = std::min(dirs.find(':', start), dirs.size());
    const fs::path candidate = fs::path(dirs.substr(start, end - start)) / name;
    if (::access(candidate.c_str(), X_OK) == 0) return candidate.string();
    start = end + 1;
  }
  return std::nullopt;
}

std::string MakeSlideshow(const std::vector<std::string>& pictures, double seconds, const std::string& codec,
                          const std::string& out, int width, int height) {
  const std::optional<std::string> ffmpeg = FindProgram("ffmpeg");
  if (!ffmpeg) return "the ffmpeg command is not installed";
  std::vector<std::string> argv = {*ffmpeg, "-nostdin", "-v", "error", "-y"};
  const std::string size = std::to_string(width) + ":" + std::to_string(height);
  std::string graph;
  for (size_t i = 0; i < pictures.size(); ++i) {
    argv.insert(argv.end(), {"-loop", "1", "-t", std::to_string(seconds), "-i", pictures[i]});
    graph += "[" + std::to_string(i) + ":v]scale=" + size + ":force_original_aspect_ratio=decrease,pad=" + size +
             ":(ow-iw)/2:(oh-ih)/2,setsar=1,fps=10,format=yuv420p[v" + std::to_string(i) + "];";
  }
  for (size_t i = 0; i < pictures.size(); ++i) graph += "[v" + std::to_string(i) + "]";
  graph += "concat=n=" + std::to_string(pictures.size()) + ":v=1[out]";
  argv.insert(argv.end(), {"-filter_complex", graph, "-map", "[out]"});
  if (codec == "vp9") {
    argv.insert(argv.end(), {"-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8", "-b:v", "400k"});
  } else {
    argv.insert(argv.end(), {"-c:v", "libx264", "-preset", "veryfast", "-g", "20"});
  }
  argv.push_back(out);
  const CommandResult made = RunCommand(argv);
  return made.exit_code == 0 ? "" : "ffmpeg failed: " + made.err;
}

namespace {
struct TempDirs {
  std::vector<std::string> dirs;
  ~TempDirs() {
    for (const std::string& d : dirs) {
      std::error_code ec;
      fs::remove_all(d, ec);
    }
  }
};
TempDirs g_temp_dirs;
}  // namespace

std::string MakeTempDir() {
  std::string tmpl = (fs::temp_directory_path() / "imgsearch-test-XXXXXX").string();
  if (::mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
  g_temp_dirs.dirs.push_back(tmpl);
  return tmpl;
}

std::string SharedInputDir(const std::string& name, const std::string& recipe,
                           const std::function<bool(const std::string& dir)>& make) {
  const fs::path root = IMGSEARCH_TEST_INPUTS_DEFAULT;
  char hash[17];
  std::snprintf(hash, sizeof(hash), "%016zx", std::hash<std::string>{}(recipe));
  const std::string final_dir = (root / (name + "-" + hash)).string();
  std::error_code ec;
  if (fs::is_directory(final_dir, ec)) return final_dir;
  fs::create_directories(root, ec);
  std::string tmpl = (root / (name + ".making-XXXXXX")).string();
  if (::mkdtemp(tmpl.data()) == nullptr) return "";
  if (!make(tmpl)) {
    fs::remove_all(tmpl, ec);
    return "";
  }
  // Another process may have finished first: its directory is as good, and this one goes.
  if (::rename(tmpl.c_str(), final_dir.c_str()) != 0) fs::remove_all(tmpl, ec);
  return fs::is_directory(final_dir, ec) ? final_dir : "";
}

CommandResult RunCommand(const std::vector<std::string>& argv, const std::vector<std::string>& env) {
  const std::string dir = MakeTempDir();
  const std::string out_path = dir + "/stdout";
  const std::string err_path = dir + "/stderr";
  pid_t pid = ::fork();
  if (pid == 0) {
    int out = ::open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int err = ::open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ::dup2(out, 1);
    ::dup2(err, 2);
    for (const std::string& e : env) ::putenv(const_cast<char*>(e.c_str()));
    std::vector<char*> args;
    for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    ::execv(args[0], args.data());
    ::_exit(127);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  CommandResult r;
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.out = ReadFile(out_path);
  r.err = ReadFile(err_path);
  return r;
}

Process::Process(const std::vector<std::string>& argv) {
  const std::string dir = MakeTempDir();
  out_path_ = dir + "/stdout";
  err_path_ = dir + "/stderr";
  pid_ = ::fork();
  if (pid_ == 0) {
    int out = ::open(out_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int err = ::open(err_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ::dup2(out, 1);
    ::dup2(err, 2);
    std::vector<char*> args;
    for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    ::execv(args[0], args.data());
    ::_exit(127);
  }
}

Process::~Process() {
  if (Running()) {
    Signal(SIGKILL);
    Wait();
  }
}

void Process::Signal(int sig) {
  if (pid_ > 0 && exit_code_ < 0) ::kill(pid_, sig);
}

int Process::Wait() {
  if (exit_code_ >= 0 || pid_ <= 0) return exit_code_;
  int status = 0;
  ::waitpid(pid_, &status, 0);
  exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return exit_code_;
}

bool Process::Running() {
  if (exit_code_ >= 0 || pid_ <= 0) return false;
  int status = 0;
  if (::waitpid(pid_, &status, WNOHANG) == pid_) {
    exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    return false;
  }
  return true;
}

std::string Process::Out() const { return ReadFile(out_path_); }
std::string Process::Err() const { return ReadFile(err_path_); }

bool Process::WaitForOutput(const std::string& text, double timeout_s) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
  while (std::chrono::steady_clock::now() < deadline) {
    if (Out().find(text) != std::string::npos) return true;
    if (!Running()) return Out().find(text) != std::string::npos;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return false;
}

void WriteFile(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::string ReadFile(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::string CopyToTemp(const std::string& dir) {
  const std::string copy = MakeTempDir() + "/model";
  std::filesystem::copy(dir, copy, std::filesystem::copy_options::recursive);
  for (const auto& e : std::filesystem::recursive_directory_iterator(copy)) {
    std::filesystem::permissions(e.path(), std::filesystem::perms::owner_write, std::filesystem::perm_options::add);
  }
  return copy;
}

void EditJsonFile(const std::string& path, const std::function<void(nlohmann::json&)>& edit) {
  nlohmann::json j = nlohmann::json::parse(ReadFile(path));
  edit(j);
  WriteFile(path, j.dump(2));
}

std::string Base64(const std::string& bytes) {
  static const char* kDigits = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  for (size_t i = 0; i < bytes.size(); i += 3) {
    uint32_t v = static_cast<uint8_t>(bytes[i]) << 16;
    if (i + 1 < bytes.size()) v |= static_cast<uint8_t>(bytes[i + 1]) << 8;
    if (i + 2 < bytes.size()) v |= static_cast<uint8_t>(bytes[i + 2]);
    out += kDigits[(v >> 18) & 63];
    out += kDigits[(v >> 12) & 63];
    out += i + 1 < bytes.size() ? kDigits[(v >> 6) & 63] : '=';
    out += i + 2 < bytes.size() ? kDigits[v & 63] : '=';
  }
  return out;
}

double Cosine(const std::vector<float>& a, const std::vector<float>& b) {
  double dot = 0, na = 0, nb = 0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
    dot += static_cast<double>(a[i]) * b[i];
    na += static_cast<double>(a[i]) * a[i];
    nb += static_cast<double>(b[i]) * b[i];
  }
  return dot / std::sqrt(na * nb);
}

}  // namespace imgsearch::testing
