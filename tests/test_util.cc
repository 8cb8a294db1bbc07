#include "test_util.h"

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>

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

std::string TestModelDir() {
  const char* env = std::getenv("IMGSEARCH_TEST_MODEL");
  return env != nullptr ? env : IMGSEARCH_TEST_MODEL_DEFAULT;
}

std::string ImgsearchBin() {
  const char* env = std::getenv("IMGSEARCH_BIN");
  return env != nullptr ? env : IMGSEARCH_BIN_DEFAULT;
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

CommandResult RunCommand(const std::vector<std::string>& argv) {
  const std::string dir = MakeTempDir();
  const std::string out_path = dir + "/stdout";
  const std::string err_path = dir + "/stderr";
  pid_t pid = ::fork();
  if (pid == 0) {
    int out = ::open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int err = ::open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ::dup2(out, 1);
    ::dup2(err, 2);
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
