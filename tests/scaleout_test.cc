// Scale-out mode against a real, throwaway PostgreSQL (Debian's, started in a temporary folder on
// its own Unix socket): workers, search nodes, crashes, a database restart, schema migrations.
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <map>
#include <optional>
#include <thread>

#include "imgsearch/image.h"
#include "imgsearch/scaleout.h"
#include "scaleout/pg.h"
#include "test_util.h"

namespace imgsearch {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using nlohmann::json;
using testing::ImgsearchBin;
using testing::Process;
using testing::RunCommand;
using testing::TestModelDir;

// Debian's PostgreSQL 15 server binaries (postgresql-15), or empty.
std::string PgBinDir() {
  for (const char* dir : {"/usr/lib/postgresql/15/bin", "/usr/lib/postgresql/16/bin", "/usr/lib/postgresql/17/bin"}) {
    if (fs::exists(std::string(dir) + "/initdb")) return dir;
  }
  return "";
}

int FreePort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a));
  socklen_t len = sizeof(a);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

// A PostgreSQL cluster of its own: initdb in a temporary folder, listening only on a Unix socket
// there. PostgreSQL refuses to run as root, so as root it runs as the postgres user.
class Postgres {
 public:
  explicit Postgres(std::string bin) : bin_(std::move(bin)) {
    const std::string parent = testing::MakeTempDir();
    fs::permissions(parent, fs::perms::owner_all | fs::perms::group_exec | fs::perms::others_exec);  // for postgres
    dir_ = parent + "/pg";
    fs::create_directories(dir_);
    port_ = FreePort();
    if (::geteuid() == 0) RunCommand({"/usr/bin/chown", "-R", "postgres", dir_});
    const auto init =
        Run({bin_ + "/initdb", "-D", dir_ + "/data", "-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8"});
    ok_ = init.exit_code == 0;
    if (!ok_) {
      error_ = "initdb failed (exit " + std::to_string(init.exit_code) + "): " + init.out + init.err;
      return;
    }
    ok_ = Start();
  }
  ~Postgres() {
    if (ok_) Run({bin_ + "/pg_ctl", "-D", dir_ + "/data", "-m", "immediate", "-w", "stop"});
  }

  bool ok() const { return ok_; }
  const std::string& error() const { return error_; }

  bool Start() {
    const auto r = Run(
        {bin_ + "/pg_ctl", "-D", dir_ + "/data", "-l", dir_ + "/log", "-w", "-t", "60", "-o",
         "-k " + dir_ + " -p " + std::to_string(port_) + " -c listen_addresses='' -c fsync=off -c max_connections=200",
         "start"});
    if (r.exit_code != 0) error_ = r.out + r.err + testing::ReadFile(dir_ + "/log");
    return r.exit_code == 0;
  }
  bool Stop() { return Run({bin_ + "/pg_ctl", "-D", dir_ + "/data", "-m", "fast", "-w", "stop"}).exit_code == 0; }

  // A new database; its URL.
  std::string CreateDatabase(const std::string& name) {
    EXPECT_EQ(Psql("postgres", "CREATE DATABASE " + name), "");
    return Url(name);
  }
  std::string Url(const std::string& db) const {
    return "postgresql:///" + db + "?host=" + dir_ + "&port=" + std::to_string(port_) + "&user=postgres";
  }
  // Runs SQL; the unaligned, tuples-only output.
  std::string Psql(const std::string& db, const std::string& sql) {
    auto r = Run({bin_ + "/psql", "-X", "-q", "-A", "-t", "-h", dir_, "-p", std::to_string(port_), "-U", "postgres",
                  "-d", db, "-c", sql});
    EXPECT_EQ(r.exit_code, 0) << sql << "\n" << r.err;
    while (!r.out.empty() && r.out.back() == '\n') r.out.pop_back();
    return r.out;
  }

 private:
  testing::CommandResult Run(std::vector<std::string> argv) {
    if (::geteuid() == 0) argv.insert(argv.begin(), {"/usr/sbin/runuser", "-u", "postgres", "--"});
    return RunCommand(argv);
  }

  std::string bin_, dir_, error_;
  int port_ = 0;
  bool ok_ = false;
};

Image TestImage(int seed) {
  Image img(32 + seed % 7, 24 + seed % 5);
  for (size_t i = 0; i < img.rgb.size(); ++i) {
    img.rgb[i] = static_cast<uint8_t>((i * (seed % 97 + 3) + seed * 17 + (i / 3) * (seed % 13)) % 251);
  }
  return img;
}

void WriteImages(const std::string& dir, int n) {
  fs::create_directories(dir);
  for (int i = 0; i < n; ++i) {
    ASSERT_TRUE(WritePng(TestImage(i), dir + "/img" + std::to_string(i) + ".png").ok());
  }
}

// A 6 s, 320×240 H.264 clip of ffmpeg's test pattern at `path`, a key frame every second. Empty when
// made, else ffmpeg's complaint.
std::string MakeClip(const std::string& ffmpeg, const std::string& path) {
  const auto made = RunCommand({ffmpeg, "-nostdin", "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=10",
                                "-t", "6", "-c:v", "libx264", "-g", "10", path});
  return made.exit_code == 0 ? "" : "ffmpeg failed: " + made.err;
}

// `imgsearch stats --json` of a location.
json Stats(const std::vector<std::string>& where) {
  std::vector<std::string> argv = {ImgsearchBin(), "stats", "--json"};
  argv.insert(argv.end(), where.begin(), where.end());
  const auto r = RunCommand(argv);
  if (r.exit_code != 0) return json{{"error", r.err}};
  return json::parse(r.out, nullptr, false);
}

// Waits until the store holds `n` indexed images and no job is waiting or leased.
bool WaitIndexed(const std::string& url, int n, double timeout_s, json* last) {
  const auto deadline = Clock::now() + std::chrono::duration<double>(timeout_s);
  while (Clock::now() < deadline) {
    *last = Stats({"--store", url});
    if (last->contains("indexed") && (*last)["indexed"] == n && (*last)["queue"]["pending"] == 0 &&
        (*last)["queue"]["leased"] == 0 && (*last)["queue"]["retrying"] == 0) {
      return true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
  }
  return false;
}

// path → score of a CLI search.
std::vector<std::pair<std::string, double>> CliSearch(const std::vector<std::string>& where, const std::string& q,
                                                      int k) {
  std::vector<std::string> argv = {ImgsearchBin(), "search", "--model",        TestModelDir(),
                                   "--json",       "-k",     std::to_string(k)};
  argv.insert(argv.end(), where.begin(), where.end());
  argv.push_back(q);
  const auto r = RunCommand(argv);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  std::vector<std::pair<std::string, double>> hits;
  std::istringstream lines(r.out);
  for (std::string line; std::getline(lines, line);) {
    const json j = json::parse(line);
    hits.emplace_back(j["path"].get<std::string>(), j["score"].get<double>());
  }
  return hits;
}

class SearchNode {
 public:
  explicit SearchNode(const std::string& url, const std::string& index_cache = "none")
      : p_({ImgsearchBin(), "-v", "serve", "--store", url, "--model", TestModelDir(), "--listen", "127.0.0.1:0",
            "--thumbnails", testing::MakeTempDir(), "--index-cache", index_cache}) {
    EXPECT_TRUE(p_.WaitForOutput("serving http://", 120)) << p_.Out() << p_.Err();
    port_ = testing::ServingPort(p_.Out());
  }
  std::vector<std::pair<std::string, double>> Search(const std::string& q, int k) {
    httplib::Client c("127.0.0.1", port_);
    c.set_read_timeout(60, 0);
    auto res = c.Get("/api/search?k=" + std::to_string(k) + "&q=" + httplib::detail::encode_query_param(q));
    std::vector<std::pair<std::string, double>> hits;
    last_error_ = !res ? "no response: " + httplib::to_string(res.error())
                       : std::to_string(res->status) + " " + res->body.substr(0, 100);
    if (!res || res->status != 200) return hits;
    const json body = json::parse(res->body);
    for (const json& h : body["results"]) {
      hits.emplace_back(h["path"].get<std::string>(), h["score"].get<double>());
    }
    return hits;
  }
  json Status() { return Get("/api/status"); }
  json Get(const std::string& target) {
    httplib::Client c("127.0.0.1", port_);
    c.set_read_timeout(60, 0);
    auto res = c.Get(target);
    return res && res->status == 200 ? json::parse(res->body) : json();
  }
  Process& process() { return p_; }
  std::string Log() const { return "last error: " + last_error_ + "\nnode's log:\n" + p_.Err(); }

 private:
  std::string last_error_;
  Process p_;
  int port_ = 0;
};

void ExpectSameHits(const std::vector<std::pair<std::string, double>>& got,
                    const std::vector<std::pair<std::string, double>>& want, const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(got[i].first, want[i].first) << what << " rank " << i;
    EXPECT_NEAR(got[i].second, want[i].second, 1e-4) << what << " rank " << i;
  }
}

// A search node answers like the embedded collection once it has caught up (it follows changes
// asynchronously): waits up to `timeout_s` for that.
void ExpectNodeConverges(SearchNode& node, const std::string& q,
                         const std::vector<std::pair<std::string, double>>& want, double timeout_s = 30) {
  const auto deadline = Clock::now() + std::chrono::duration<double>(timeout_s);
  std::vector<std::pair<std::string, double>> got;
  while (Clock::now() < deadline) {
    got = node.Search(q, static_cast<int>(want.size()));
    if (got.size() == want.size() && std::equal(got.begin(), got.end(), want.begin(),
                                                [](const auto& a, const auto& b) { return a.first == b.first; })) {
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  ExpectSameHits(got, want, "search node, query \"" + q + "\" got " + std::to_string(got.size()) + "\n" + node.Log());
}

class ScaleoutTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string bin = PgBinDir();
    if (bin.empty()) GTEST_SKIP() << "PostgreSQL server binaries not found (apt-get install postgresql-15); skipping";
    pg_ = std::make_unique<Postgres>(bin);
    ASSERT_TRUE(pg_->ok()) << pg_->error();
    url_ = pg_->CreateDatabase("photos");
    photos_ = testing::MakeTempDir() + "/photos";
  }

  // A worker; with `tmpdir`, its temporary files go there.
  std::unique_ptr<Process> Worker(const std::vector<std::string>& extra = {}, const std::string& tmpdir = "") {
    std::vector<std::string> argv = {ImgsearchBin(), "worker", "--store",          url_, "--model", TestModelDir(),
                                     "--threads",    "1",      "--decode-threads", "1"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    if (!tmpdir.empty()) argv.insert(argv.begin(), {"/usr/bin/env", "TMPDIR=" + tmpdir});
    return std::make_unique<Process>(argv);
  }

  testing::CommandResult Enqueue() {
    return RunCommand({ImgsearchBin(), "index", "--store", url_, "--model", TestModelDir(), photos_});
  }

  std::unique_ptr<Postgres> pg_;
  std::string url_, photos_;
};

TEST_F(ScaleoutTest, ThreeWorkersTwoSearchNodesMatchEmbeddedMode) {
  // Enough that each of three single-threaded workers takes a share (a job is a batch of pictures).
  constexpr int kImages = 800;
  WriteImages(photos_, kImages);
  SearchNode node_a(url_), node_b(url_);  // start empty: everything arrives through the change feed
  const auto queued = Enqueue();
  ASSERT_EQ(queued.exit_code, 0) << queued.err;
  EXPECT_NE(queued.out.find(std::to_string(kImages) + " queued for workers"), std::string::npos) << queued.out;
  auto w1 = Worker(), w2 = Worker(), w3 = Worker();
  json stats;
  ASSERT_TRUE(WaitIndexed(url_, kImages, 600, &stats)) << stats.dump() << w1->Err();
  EXPECT_EQ(stats["failed"], 0);
  EXPECT_EQ(stats["distinct_vectors"], kImages);
  // The search nodes' status shows the queue and the three workers.
  const json status = node_a.Status();
  ASSERT_TRUE(status.contains("queue")) << status.dump();
  EXPECT_EQ(status["queue"]["pending"], 0) << status.dump();
  EXPECT_EQ(status["queue"]["workers"].size(), 3u) << status.dump();
  EXPECT_EQ(status["collection"]["indexed"], kImages);
  // Every worker took a share.
  for (Process* w : {w1.get(), w2.get(), w3.get()}) {
    w->Signal(SIGTERM);
    EXPECT_EQ(w->Wait(), 0) << w->Err();
    EXPECT_NE(w->Out().find("stopped:"), std::string::npos);
    EXPECT_EQ(w->Out().find("stopped: 0 jobs"), std::string::npos) << w->Out();
  }
  EXPECT_EQ(pg_->Psql("photos", "SELECT count(*), count(DISTINCT path) FROM imgsearch.images"),
            std::to_string(kImages) + "|" + std::to_string(kImages));

  const std::string db = testing::MakeTempDir() + "/embedded";
  const auto local = RunCommand({ImgsearchBin(), "index", "--db", db, "--model", TestModelDir(), photos_});
  ASSERT_EQ(local.exit_code, 0) << local.err;
  for (const std::string q : {"a photo of a cat", "red", "mountains at night"}) {
    const auto want = CliSearch({"--db", db}, q, 20);
    ASSERT_EQ(want.size(), 20u);
    ExpectSameHits(CliSearch({"--store", url_}, q, 20), want, "search --store, \"" + q + "\"");
    ExpectNodeConverges(node_a, q, want);
    ExpectNodeConverges(node_b, q, want);
  }

  // Deletes and renames reach the search nodes too.
  fs::remove(photos_ + "/img0.png");
  fs::rename(photos_ + "/img1.png", photos_ + "/renamed.png");
  const auto again = Enqueue();
  ASSERT_EQ(again.exit_code, 0) << again.err;
  EXPECT_NE(again.out.find("1 moved, 1 removed"), std::string::npos) << again.out;
  // The removed image's embedding is kept for the grace period, in PostgreSQL as in a folder.
  const auto kept = nlohmann::json::parse(RunCommand({ImgsearchBin(), "stats", "--store", url_, "--json"}).out);
  EXPECT_EQ(kept["kept_vectors"], 1);
  EXPECT_EQ(kept["distinct_vectors"], kImages - 1);
  const auto local_again = RunCommand({ImgsearchBin(), "index", "--db", db, "--model", TestModelDir(), photos_});
  ASSERT_EQ(local_again.exit_code, 0);
  const auto want = CliSearch({"--db", db}, "red", 50);
  ExpectNodeConverges(node_a, "red", want);
  ExpectNodeConverges(node_b, "red", want);
}

TEST_F(ScaleoutTest, KilledWorkerMidBatchEveryImageIndexedExactlyOnce) {
  constexpr int kImages = 300;
  WriteImages(photos_, kImages);
  ASSERT_EQ(Enqueue().exit_code, 0);
  // A slow worker (big batches, one thread), killed while it holds a batch.
  auto doomed = Worker({"--batch", "64", "--lease-seconds", "5", "--name", "doomed"});
  const auto deadline = Clock::now() + std::chrono::seconds(120);
  std::string leased;
  while (Clock::now() < deadline) {
    leased = pg_->Psql("photos", "SELECT count(*) FROM imgsearch.jobs WHERE lease_owner = 'doomed'");
    const std::string done = pg_->Psql("photos", "SELECT count(*) FROM imgsearch.images");
    if (leased != "0" && done != "0") break;  // one batch written, the next one in hand
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  doomed->Signal(SIGKILL);
  doomed->Wait();
  ASSERT_NE(leased, "0");
  const int before = std::stoi(pg_->Psql("photos", "SELECT count(*) FROM imgsearch.images"));
  EXPECT_LT(before, kImages);
  pg_->Psql("photos", "CREATE TABLE public.before_kill AS SELECT id, path FROM imgsearch.images");
  // Another worker takes the rest, the dead one's batch once its lease runs out.
  auto rescuer = Worker({"--name", "rescuer"});
  json stats;
  ASSERT_TRUE(WaitIndexed(url_, kImages, 300, &stats)) << stats.dump() << rescuer->Err();
  EXPECT_EQ(pg_->Psql("photos",
                      "SELECT count(*), count(DISTINCT path), count(*) FILTER (WHERE status = 1) FROM "
                      "imgsearch.images"),
            "300|300|300");
  EXPECT_EQ(pg_->Psql("photos", "SELECT count(*) FROM imgsearch.jobs"), "0");
  // The rows written before the kill kept their ids: the rescuer's writes of the dead worker's
  // batch (redone, as its lease ran out) updated nothing it should not have. (Ids are not
  // contiguous: a write that meets an existing row still draws a number from the sequence.)
  EXPECT_EQ(pg_->Psql("photos",
                      "SELECT count(*), count(*) FILTER (WHERE i.id = b.id) FROM public.before_kill b JOIN "
                      "imgsearch.images i USING (path)"),
            std::to_string(before) + "|" + std::to_string(before));
  const auto check = RunCommand({ImgsearchBin(), "search", "--store", url_, "--model", TestModelDir(), "-k", "1", "x"});
  EXPECT_EQ(check.exit_code, 0) << check.err;
}

TEST_F(ScaleoutTest, PostgresRestartDuringIngestionLosesNothing) {
  constexpr int kImages = 400;
  WriteImages(photos_, kImages);
  SearchNode node(url_);
  // Every role is running: the enqueuer (watch), two workers, a search node.
  Process watch({ImgsearchBin(), "watch", "--store", url_, "--model", TestModelDir(), "--quiet-ms", "100", photos_});
  ASSERT_TRUE(watch.WaitForOutput("initial scan done", 120)) << watch.Out() << watch.Err();
  auto w1 = Worker({"--batch", "4"}), w2 = Worker({"--batch", "4"});
  const auto deadline = Clock::now() + std::chrono::seconds(120);
  while (Clock::now() < deadline && std::stoi(pg_->Psql("photos", "SELECT count(*) FROM imgsearch.images")) < 20) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  const int written = std::stoi(pg_->Psql("photos", "SELECT count(*) FROM imgsearch.images"));
  ASSERT_TRUE(pg_->Stop());
  ASSERT_LT(written, kImages) << "ingestion finished before the restart: nothing was tested";
  std::this_thread::sleep_for(std::chrono::seconds(2));
  ASSERT_TRUE(pg_->Start()) << pg_->error();
  json stats;
  ASSERT_TRUE(WaitIndexed(url_, kImages, 300, &stats)) << stats.dump() << w1->Err() << w2->Err();
  EXPECT_EQ(stats["failed"], 0);
  EXPECT_EQ(pg_->Psql("photos", "SELECT count(*), count(DISTINCT path) FROM imgsearch.images"), "400|400");
  EXPECT_TRUE(w1->Running());
  EXPECT_TRUE(w2->Running());
  // The watcher is still following the folder: a new file goes through the queue.
  ASSERT_TRUE(WritePng(TestImage(5000), photos_ + "/after-restart.png").ok());
  ASSERT_TRUE(WaitIndexed(url_, kImages + 1, 120, &stats)) << stats.dump() << watch.Err();
  EXPECT_TRUE(watch.Running()) << watch.Err();
  // The search node reconnected and caught up: it answers like a fresh reader of the database.
  ExpectNodeConverges(node, "anything", CliSearch({"--store", url_}, "anything", kImages + 1), 60);
}

TEST_F(ScaleoutTest, SchemaMigratesFromPreviousVersionAndRefusesNewer) {
  // Reading never writes: an empty database stays empty.
  for (const std::string cmd : {"stats", "list"}) {
    const auto nothing = RunCommand({ImgsearchBin(), cmd, "--store", url_});
    EXPECT_EQ(nothing.exit_code, 2) << cmd;
    EXPECT_NE(nothing.err.find("no collection at"), std::string::npos) << nothing.err;
  }
  EXPECT_EQ(pg_->Psql("photos", "SELECT to_regclass('imgsearch.meta') IS NULL"), "t");

  scaleout::PgClient client(url_, std::chrono::seconds(10));
  auto found = scaleout::MigrateSchema(&client, kPgSchemaVersion - 1);
  ASSERT_TRUE(found.ok()) << found.status().ToString();
  EXPECT_EQ(*found, 0);
  pg_->Psql("photos", "INSERT INTO imgsearch.jobs(path, size_bytes, mtime_ns) VALUES ('/x/a.png', 1, 2)");
  // The last step (5) keeps the text images show.
  EXPECT_EQ(pg_->Psql("photos", "SELECT to_regclass('imgsearch.texts') IS NULL"), "t");
  // An older schema is not upgraded by a reader, nor given a collection id.
  const auto old = RunCommand({ImgsearchBin(), "stats", "--store", url_});
  EXPECT_EQ(old.exit_code, 2);
  EXPECT_NE(old.err.find("older than this imgsearch reads"), std::string::npos) << old.err;
  EXPECT_EQ(pg_->Psql("photos", "SELECT value FROM imgsearch.meta WHERE key = 'schema_version'"),
            std::to_string(kPgSchemaVersion - 1));
  EXPECT_EQ(pg_->Psql("photos", "SELECT count(*) FROM imgsearch.meta WHERE key = 'collection_id'"), "0");

  // Any command brings it up to date, keeping what is there.
  WriteImages(photos_, 3);
  ASSERT_EQ(Enqueue().exit_code, 0);
  EXPECT_EQ(pg_->Psql("photos", "SELECT value FROM imgsearch.meta WHERE key = 'schema_version'"),
            std::to_string(kPgSchemaVersion));
  EXPECT_EQ(pg_->Psql("photos", "SELECT to_regclass('imgsearch.texts') IS NULL"), "f");
  EXPECT_EQ(pg_->Psql("photos", "SELECT count(*) FROM imgsearch.jobs"), "4");

  // A database written by a newer imgsearch is refused, and left alone.
  pg_->Psql("photos", "UPDATE imgsearch.meta SET value = '99' WHERE key = 'schema_version'");
  const auto refused = RunCommand({ImgsearchBin(), "stats", "--store", url_});
  EXPECT_EQ(refused.exit_code, 2);
  EXPECT_NE(refused.err.find("version 99, newer than this imgsearch understands"), std::string::npos) << refused.err;
  EXPECT_EQ(pg_->Psql("photos", "SELECT value FROM imgsearch.meta WHERE key = 'schema_version'"), "99");
  auto again = scaleout::MigrateSchema(&client, kPgSchemaVersion);
  EXPECT_EQ(again.status().code(), StatusCode::kUnsupported);
}

TEST_F(ScaleoutTest, MigrateEmbeddedCollectionAndEmbedLocal) {
  WriteImages(photos_, 40);
  const std::string db = testing::MakeTempDir() + "/embedded";
  ASSERT_EQ(RunCommand({ImgsearchBin(), "index", "--db", db, "--model", TestModelDir(), photos_}).exit_code, 0);
  const auto moved = RunCommand({ImgsearchBin(), "migrate", "--from", db, "--to", url_});
  ASSERT_EQ(moved.exit_code, 0) << moved.err;
  EXPECT_NE(moved.out.find("copied 40 indexed and 0 failed images"), std::string::npos) << moved.out;
  const auto want = CliSearch({"--db", db}, "a dog", 10);
  ExpectSameHits(CliSearch({"--store", url_}, "a dog", 10), want, "after migrate");
  // Nothing left to do for workers: the folder is already in.
  const auto again = Enqueue();
  EXPECT_NE(again.out.find("40 unchanged"), std::string::npos) << again.out;
  EXPECT_EQ(pg_->Psql("photos", "SELECT count(*) FROM imgsearch.jobs"), "0");

  // --embed-local: this process embeds, no job is queued.
  WriteImages(photos_ + "/more", 5);
  const auto local =
      RunCommand({ImgsearchBin(), "index", "--store", url_, "--embed-local", "--model", TestModelDir(), photos_});
  ASSERT_EQ(local.exit_code, 0) << local.err;
  EXPECT_NE(local.out.find("5 added"), std::string::npos) << local.out;
  EXPECT_EQ(pg_->Psql("photos", "SELECT count(*) FROM imgsearch.jobs"), "0");
  EXPECT_EQ(Stats({"--store", url_})["indexed"], 45);
}

TEST_F(ScaleoutTest, WatchEnqueuesLiveChangesForWorkers) {
  WriteImages(photos_, 10);
  Process watch({ImgsearchBin(), "watch", "--store", url_, "--model", TestModelDir(), "--quiet-ms", "100", photos_});
  ASSERT_TRUE(watch.WaitForOutput("initial scan done", 120)) << watch.Out() << watch.Err();
  auto worker = Worker();
  json stats;
  ASSERT_TRUE(WaitIndexed(url_, 10, 120, &stats)) << stats.dump();
  // Added, deleted and renamed while watching: the worker embeds the new one, the watcher applies
  // the rest itself.
  ASSERT_TRUE(WritePng(TestImage(1000), photos_ + "/new.png").ok());
  fs::remove(photos_ + "/img3.png");
  const std::string before = pg_->Psql("photos", "SELECT id FROM imgsearch.images WHERE path LIKE '%/img4.png'");
  fs::rename(photos_ + "/img4.png", photos_ + "/moved.png");
  const auto deadline = Clock::now() + std::chrono::seconds(60);
  std::string paths;
  const std::string want = "img0.png,img1.png,img2.png,img5.png,img6.png,img7.png,img8.png,img9.png,moved.png,new.png";
  while (Clock::now() < deadline) {
    paths = pg_->Psql("photos",
                      "SELECT string_agg(regexp_replace(path, '.*/', ''), ',' ORDER BY path) FROM imgsearch.images "
                      "WHERE status = 1");
    if (paths == want) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_EQ(paths, want) << watch.Out() << watch.Err();
  // The rename kept the image's row (and so its embedding): no job was made for it.
  EXPECT_EQ(pg_->Psql("photos", "SELECT id FROM imgsearch.images WHERE path LIKE '%/moved.png'"), before);
  watch.Signal(SIGTERM);
  EXPECT_EQ(watch.Wait(), 0) << watch.Err();
  EXPECT_NE(watch.Out().find("queued for workers"), std::string::npos) << watch.Out();
}

// Workers decode through the same pipeline as embedded indexing: every format, counted by format in
// PostgreSQL as in a folder.
TEST_F(ScaleoutTest, WorkersReadEveryFormat) {
  const auto made = RunCommand({IMGSEARCH_MAKE_PHOTOS, "--out", photos_, "--n", "7", "--formats",
                                "jpeg,png,webp,heic,avif,jxl,dng", "--max-side", "320"});
  ASSERT_EQ(made.exit_code, 0) << made.err;
  // And a video: its frames are embedded by the worker and written with their times in one go.
  const std::optional<std::string> ffmpeg = testing::FindProgram("ffmpeg");
  if (ffmpeg) {
    ASSERT_EQ(MakeClip(*ffmpeg, photos_ + "/clip.mp4"), "");
  }
  const int files = ffmpeg ? 8 : 7;
  ASSERT_EQ(Enqueue().exit_code, 0);
  auto worker = Worker();
  json stats;
  ASSERT_TRUE(WaitIndexed(url_, files, 120, &stats)) << stats.dump() << worker->Err();
  EXPECT_EQ(stats["failed"], 0) << stats.dump();
  json formats = {{"avif", 1}, {"heif", 1}, {"jpeg", 1}, {"jxl", 1}, {"png", 1}, {"raw", 1}, {"webp", 1}};
  if (ffmpeg) {
    formats["mp4"] = 1;
    // A frame at least every 2 s of its 6 s.
    EXPECT_EQ(pg_->Psql("photos",
                        "SELECT length(times) / 4 >= 3 AND length(data) = length(times) * 48 FROM "
                        "imgsearch.vectors WHERE times IS NOT NULL"),
              "t");
  } else {
    std::printf("ffmpeg not installed: no video in this test\n");
  }
  EXPECT_EQ(stats["formats"], formats) << stats.dump();
  worker->Signal(SIGTERM);
  EXPECT_EQ(worker->Wait(), 0) << worker->Err();
}

TEST_F(ScaleoutTest, WorkersReadTextThatEveryNodeSearches) {
  if (!fs::exists("/usr/share/tesseract-ocr/5/tessdata/eng.traineddata")) {
    GTEST_SKIP() << "tesseract-ocr-eng is not installed (scripts/setup installs it)";
  }
  const auto made = RunCommand({IMGSEARCH_MAKE_PHOTOS, "--out", photos_, "--n", "3", "--max-side", "1024", "--words",
                                "ESPRESSO BAR", "--words", "GATE 12 CLOSED"});
  ASSERT_EQ(made.exit_code, 0) << made.err;
  // A video showing the first photo's words from 3 s to 6 s: the worker reads them from its frames.
  const bool video = testing::FindProgram("ffmpeg").has_value();
  if (video) {
    const std::string slides = testing::MakeTempDir();
    fs::copy_file(photos_ + "/IMG_00002.jpg", slides + "/plain.jpg");
    fs::copy_file(photos_ + "/IMG_00000.jpg", slides + "/words.jpg");
    ASSERT_EQ(testing::MakeSlideshow({slides + "/plain.jpg", slides + "/words.jpg"}, 3, "h264", photos_ + "/clip.mp4",
                                     1280, 720),
              "");
  } else {
    std::printf("ffmpeg not installed: no video in this test\n");
  }
  const int files = video ? 4 : 3;
  ASSERT_EQ(Enqueue().exit_code, 0);
  auto worker = Worker();
  json stats;
  ASSERT_TRUE(WaitIndexed(url_, files, 120, &stats)) << stats.dump() << worker->Err();
  // The worker reads their text after embedding them (at idle priority).
  const auto deadline = Clock::now() + std::chrono::seconds(120);
  while (Clock::now() < deadline && !(stats["text"]["read"] == files && stats["text"]["pending"] == 0)) {
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
    stats = Stats({"--store", url_});
  }
  EXPECT_EQ(stats["text"]["read"], files) << stats.dump() << worker->Err();
  std::map<std::string, double> times;  // of the videos found
  auto search = [&](const std::string& words) {
    const auto r = RunCommand({ImgsearchBin(), "search", "--store", url_, "--json", "--contains", words});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    std::vector<std::string> paths;
    for (const json& j : testing::JsonLines(r.out)) {
      paths.push_back(j["path"]);
      if (j.contains("time")) times[j["path"]] = j["time"];
    }
    std::sort(paths.begin(), paths.end());
    return paths;
  };
  if (video) {
    EXPECT_EQ(search("espresso"), (std::vector<std::string>{photos_ + "/IMG_00000.jpg", photos_ + "/clip.mp4"}));
    EXPECT_GE(times[photos_ + "/clip.mp4"], 3.0);
    EXPECT_LT(times[photos_ + "/clip.mp4"], 6.0);
  } else {
    EXPECT_EQ(search("espresso"), std::vector<std::string>{photos_ + "/IMG_00000.jpg"});
  }
  EXPECT_EQ(search("gate closed"), std::vector<std::string>{photos_ + "/IMG_00001.jpg"});
  EXPECT_TRUE(search("espresso gate").empty());
  // A plain query through a search node: the photo showing the words first.
  {
    SearchNode node(url_);
    const json answer = node.Get("/api/search?q=gate%2012&k=3");
    ASSERT_EQ(answer["results"].size(), 3u) << answer.dump();
    EXPECT_EQ(answer["results"][0]["path"], photos_ + "/IMG_00001.jpg") << answer.dump();
    EXPECT_EQ(answer["results"][0]["words"], json({"GATE", "12"})) << answer.dump();
  }
  // A deleted file leaves the text index with it.
  fs::remove(photos_ + "/IMG_00000.jpg");
  fs::remove(photos_ + "/clip.mp4");
  ASSERT_EQ(Enqueue().exit_code, 0);
  EXPECT_TRUE(search("espresso").empty());
  worker->Signal(SIGTERM);
  EXPECT_EQ(worker->Wait(), 0) << worker->Err();
}

TEST_F(ScaleoutTest, WorkerWaitsForAMissingShareThenReadsThroughAUrlMap) {
  WriteImages(photos_, 6);
  // And a video, fetched like the photos (into a temporary file, not into memory).
  const std::optional<std::string> ffmpeg = testing::FindProgram("ffmpeg");
  if (ffmpeg) {
    ASSERT_EQ(MakeClip(*ffmpeg, photos_ + "/clip.mp4"), "");
  } else {
    std::printf("ffmpeg not installed: no video in this test\n");
  }
  const std::string jobs = ffmpeg ? "7" : "6";
  ASSERT_EQ(Enqueue().exit_code, 0);
  // The folder is not visible where the worker runs; a file server has it.
  const std::string served = testing::MakeTempDir() + "/served";
  fs::rename(photos_, served);
  httplib::Server files;
  ASSERT_TRUE(files.set_mount_point("/photos", served));
  const int port = files.bind_to_any_port("127.0.0.1");
  std::thread server([&] { files.listen_after_bind(); });

  // Without a map: the jobs are handed back with the reason, not lost and not failed.
  auto blind = Worker({"--name", "blind"});
  const auto deadline = Clock::now() + std::chrono::seconds(60);
  while (Clock::now() < deadline &&
         pg_->Psql("photos",
                   "SELECT count(*) FROM imgsearch.jobs WHERE last_error LIKE '%is not there on this machine%'") !=
             jobs) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  blind->Signal(SIGTERM);
  EXPECT_EQ(blind->Wait(), 0) << blind->Err();
  EXPECT_EQ(pg_->Psql("photos", "SELECT count(*) FROM imgsearch.jobs WHERE last_error LIKE '%is not there%'"), jobs)
      << blind->Err();
  EXPECT_EQ(pg_->Psql("photos", "SELECT count(*) FROM imgsearch.images"), "0");

  // With the folder mapped to the file server, they are embedded, under their own paths.
  pg_->Psql("photos", "UPDATE imgsearch.jobs SET not_before = now()");  // no need to wait for the backoff
  const std::string fetched = testing::MakeTempDir();
  auto mapped = Worker({"--map", photos_ + "=http://127.0.0.1:" + std::to_string(port) + "/photos"}, fetched);
  json stats;
  EXPECT_TRUE(WaitIndexed(url_, std::stoi(jobs), 120, &stats)) << stats.dump() << mapped->Err();
  EXPECT_EQ(stats["failed"], 0) << stats.dump();
  EXPECT_EQ(pg_->Psql("photos", "SELECT count(*) FROM imgsearch.images WHERE path LIKE '" + photos_ + "/img%.png'"),
            "6");
  if (ffmpeg) {
    // The video's frames, a frame at least every 2 s of its 6 s, with their times.
    EXPECT_EQ(pg_->Psql("photos",
                        "SELECT length(v.times) / 4 >= 3 FROM imgsearch.images i JOIN imgsearch.vectors v ON "
                        "v.hash = i.content_hash WHERE i.path = '" +
                            photos_ + "/clip.mp4'"),
              "t");
  }
  // Nothing fetched is left behind in the temporary folder.
  EXPECT_TRUE(fs::is_empty(fetched)) << fs::directory_iterator(fetched)->path();
  mapped->Signal(SIGTERM);
  mapped->Wait();
  files.stop();
  server.join();
}

// A job that takes longer than a lease (here a video trickling from a file server for about 12 s,
// against leases of 5 s) is held on by its worker, which renews the lease: a second worker never
// takes it over, and it is written once.
TEST_F(ScaleoutTest, AJobLongerThanItsLeaseIsHeldOnAndWrittenOnce) {
  const std::optional<std::string> ffmpeg = testing::FindProgram("ffmpeg");
  if (!ffmpeg) GTEST_SKIP() << "the ffmpeg command is not installed (scripts/setup installs it); skipping";
  fs::create_directories(photos_);
  ASSERT_EQ(MakeClip(*ffmpeg, photos_ + "/clip.mp4"), "");
  ASSERT_EQ(Enqueue().exit_code, 0);
  const std::string clip = testing::ReadFile(photos_ + "/clip.mp4");
  fs::remove_all(photos_);  // only the file server has it

  std::atomic<int> requests{0};
  httplib::Server files;
  files.Get("/photos/clip.mp4", [&](const httplib::Request&, httplib::Response& res) {
    ++requests;
    res.set_content_provider(clip.size(), "video/mp4", [&](size_t offset, size_t length, httplib::DataSink& sink) {
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
      const size_t chunk = std::max<size_t>(clip.size() / 60, 1);
      return sink.write(clip.data() + offset, std::min(chunk, length));
    });
  });
  const int port = files.bind_to_any_port("127.0.0.1");
  std::thread server([&] { files.listen_after_bind(); });
  const std::string map = photos_ + "=http://127.0.0.1:" + std::to_string(port) + "/photos";

  auto holder = Worker({"--map", map, "--lease-seconds", "5", "--name", "holder", "--no-ocr"});
  const auto deadline = Clock::now() + std::chrono::seconds(60);
  while (Clock::now() < deadline &&
         pg_->Psql("photos", "SELECT count(*) FROM imgsearch.jobs WHERE lease_owner = 'holder'") != "1") {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  auto rival = Worker({"--map", map, "--lease-seconds", "5", "--name", "rival", "--no-ocr"});
  json stats;
  EXPECT_TRUE(WaitIndexed(url_, 1, 120, &stats)) << stats.dump() << holder->Err() << rival->Err();
  for (auto* worker : {holder.get(), rival.get()}) {
    worker->Signal(SIGTERM);
    EXPECT_EQ(worker->Wait(), 0) << worker->Err();
  }
  EXPECT_NE(holder->Out().find("stopped: 1 jobs done (1 embedded, 0 failed, 0 handed back, 0 superseded)"),
            std::string::npos)
      << holder->Out();
  EXPECT_NE(rival->Out().find("stopped: 0 jobs done"), std::string::npos) << rival->Out();
  EXPECT_EQ(requests, 1);  // (no text reading here, which would fetch it again)
  EXPECT_EQ(pg_->Psql("photos", "SELECT count(*), count(*) FILTER (WHERE status = 1) FROM imgsearch.images"), "1|1");
  files.stop();
  server.join();
}

TEST_F(ScaleoutTest, SearchNodeRestartsFromItsSnapshotAndReplaysChanges) {
  WriteImages(photos_, 50);
  auto embed_here = [&] {
    const auto r =
        RunCommand({ImgsearchBin(), "index", "--store", url_, "--embed-local", "--model", TestModelDir(), photos_});
    ASSERT_EQ(r.exit_code, 0) << r.err;
  };
  embed_here();
  const std::string cache = testing::MakeTempDir();
  {
    SearchNode node(url_, cache);
    EXPECT_NE(node.process().Err().find("search index built from"), std::string::npos) << node.Log();
    node.process().Signal(SIGTERM);
    EXPECT_EQ(node.process().Wait(), 0) << node.Log();
  }
  std::vector<std::string> snapshots;
  for (const auto& e : fs::directory_iterator(cache)) {
    if (e.path().extension() == ".hnsw") snapshots.push_back(e.path().string());
  }
  ASSERT_EQ(snapshots.size(), 1u);

  // Changes while the node is down: 10 added, 5 deleted, 1 renamed.
  for (int i = 50; i < 60; ++i) ASSERT_TRUE(WritePng(TestImage(i), photos_ + "/img" + std::to_string(i) + ".png").ok());
  for (int i = 0; i < 5; ++i) fs::remove(photos_ + "/img" + std::to_string(i) + ".png");
  fs::rename(photos_ + "/img7.png", photos_ + "/seven.png");
  embed_here();
  const auto want = CliSearch({"--store", url_}, "a quiet street", 55);
  ASSERT_EQ(want.size(), 55u);
  {
    SearchNode node(url_, cache);
    EXPECT_NE(
        node.process().Err().find("search index loaded from " + snapshots[0] + " (55 images, 16 changes replayed)"),
        std::string::npos)
        << node.Log();
    ExpectNodeConverges(node, "a quiet street", want, 5);
    node.process().Signal(SIGTERM);
    EXPECT_EQ(node.process().Wait(), 0);
  }
  // A damaged snapshot is noticed and the index rebuilt from the database.
  std::filesystem::resize_file(snapshots[0], std::filesystem::file_size(snapshots[0]) / 2);
  SearchNode node(url_, cache);
  EXPECT_NE(node.process().Err().find("not usable"), std::string::npos) << node.Log();
  ExpectNodeConverges(node, "a quiet street", want, 5);
}

TEST_F(ScaleoutTest, ReindexIntoAnotherDatabaseWithANewModel) {
  WriteImages(photos_, 20);
  const auto embedded =
      RunCommand({ImgsearchBin(), "index", "--store", url_, "--embed-local", "--model", TestModelDir(), photos_});
  ASSERT_EQ(embedded.exit_code, 0) << embedded.err;
  const std::string new_model = TestModelDir() + "-2";
  // The reference: an embedded collection re-embedded in place.
  const std::string db = testing::MakeTempDir() + "/embedded";
  ASSERT_EQ(RunCommand({ImgsearchBin(), "index", "--db", db, "--model", TestModelDir(), photos_}).exit_code, 0);
  const auto local = RunCommand({ImgsearchBin(), "reindex", "--db", db, "--model", new_model});
  ASSERT_EQ(local.exit_code, 0) << local.err;
  auto search = [&](const std::vector<std::string>& where) {
    std::vector<std::string> argv = {ImgsearchBin(), "search", "--model", new_model, "--json", "-k", "10"};
    argv.insert(argv.end(), where.begin(), where.end());
    argv.push_back("a boat");
    const auto r = RunCommand(argv);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return r.out;
  };
  const std::string want = search({"--db", db});

  // Through workers running the new model.
  const std::string url_b = pg_->CreateDatabase("photos_b");
  const auto queued = RunCommand({ImgsearchBin(), "reindex", "--store", url_, "--to", url_b, "--model", new_model});
  ASSERT_EQ(queued.exit_code, 0) << queued.err;
  EXPECT_NE(queued.out.find("queued 20 images for workers"), std::string::npos) << queued.out;
  Process worker({ImgsearchBin(), "worker", "--store", url_b, "--model", new_model, "--threads", "1"});
  json stats;
  ASSERT_TRUE(WaitIndexed(url_b, 20, 120, &stats)) << stats.dump() << worker.Err();
  // Scores of a JSON line may differ in the last printed digit between runs of the same model; ids
  // differ between stores. Compare paths and rounded scores.
  auto summary = [](const std::string& lines) {
    std::string out;
    std::istringstream in(lines);
    for (std::string line; std::getline(in, line);) {
      const json j = json::parse(line);
      char score[16];
      std::snprintf(score, sizeof(score), "%.4f", j["score"].get<double>());
      out += j["path"].get<std::string>() + " " + score + "\n";
    }
    return out;
  };
  EXPECT_EQ(summary(search({"--store", url_b})), summary(want));

  // Or here, without workers.
  const std::string url_c = pg_->CreateDatabase("photos_c");
  const auto here =
      RunCommand({ImgsearchBin(), "reindex", "--store", url_, "--to", url_c, "--embed-local", "--model", new_model});
  ASSERT_EQ(here.exit_code, 0) << here.err;
  EXPECT_NE(here.out.find("re-embedded 20 images"), std::string::npos) << here.out;
  EXPECT_EQ(summary(search({"--store", url_c})), summary(want));
  // The source is untouched, still on its own model; the same database twice is refused.
  const json source = Stats({"--store", url_});
  EXPECT_EQ(source["indexed"], 20);
  EXPECT_NE(source["model"]["id"], Stats({"--store", url_b})["model"]["id"]);
  const auto same = RunCommand({ImgsearchBin(), "reindex", "--store", url_, "--to", url_, "--model", new_model});
  EXPECT_EQ(same.exit_code, 2);
}

TEST_F(ScaleoutTest, EveryRoleWaitsForTheDatabaseAndStillStopsWhenAsked) {
  WriteImages(photos_, 3);
  ASSERT_TRUE(pg_->Stop());
  auto worker = Worker();
  Process watch({ImgsearchBin(), "watch", "--store", url_, "--model", TestModelDir(), photos_});
  Process serve({ImgsearchBin(), "serve", "--store", url_, "--model", TestModelDir(), "--listen", "127.0.0.1:0",
                 "--index-cache", "none", "--thumbnails", testing::MakeTempDir()});
  std::this_thread::sleep_for(std::chrono::seconds(2));
  // Waiting, not failing: the database may come back.
  EXPECT_TRUE(worker->Running()) << worker->Err();
  EXPECT_TRUE(watch.Running()) << watch.Err();
  EXPECT_TRUE(serve.Running()) << serve.Err();
  const auto start = Clock::now();
  for (Process* p : {worker.get(), &watch, &serve}) p->Signal(SIGTERM);
  EXPECT_EQ(worker->Wait(), 0) << worker->Err();
  EXPECT_EQ(watch.Wait(), 0) << watch.Err();
  EXPECT_EQ(serve.Wait(), 0) << serve.Err();
  EXPECT_LT(std::chrono::duration<double>(Clock::now() - start).count(), 10.0);
  ASSERT_TRUE(pg_->Start()) << pg_->error();
}

TEST_F(ScaleoutTest, BadStoresAreClearErrors) {
  const auto both = RunCommand({ImgsearchBin(), "stats", "--db", "/tmp/x", "--store", url_});
  EXPECT_EQ(both.exit_code, 2);
  EXPECT_NE(both.err.find("not both"), std::string::npos) << both.err;
  const auto not_url = RunCommand({ImgsearchBin(), "stats", "--store", "/tmp/x"});
  EXPECT_NE(not_url.err.find("must be a postgresql:// URL"), std::string::npos) << not_url.err;
  const auto no_db = RunCommand({ImgsearchBin(), "stats", "--store", pg_->Url("nosuchdb")});
  EXPECT_EQ(no_db.exit_code, 2);
  EXPECT_NE(no_db.err.find("database \"nosuchdb\" does not exist"), std::string::npos) << no_db.err;
  const auto password = RunCommand({ImgsearchBin(), "stats", "--store", "postgresql://me:secret@127.0.0.1:1/x"},
                                   {"IMGSEARCH_PG_RETRY_SECONDS=1"});
  EXPECT_EQ(password.exit_code, 5);  // unreachable
  EXPECT_NE(password.err.find("cannot reach PostgreSQL at postgresql://me:***@127.0.0.1:1/x"), std::string::npos)
      << password.err;
  EXPECT_EQ(password.err.find("secret"), std::string::npos) << password.err;
  // A model other than the collection's is refused by workers and enqueuers alike.
  WriteImages(photos_, 2);
  ASSERT_EQ(Enqueue().exit_code, 0);
  const auto other = RunCommand({ImgsearchBin(), "index", "--store", url_, "--model", TestModelDir() + "-2", photos_});
  EXPECT_EQ(other.exit_code, 2);
  EXPECT_NE(other.err.find("was built with model"), std::string::npos) << other.err;
}

}  // namespace
}  // namespace imgsearch
