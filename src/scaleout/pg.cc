#include "scaleout/pg.h"

#include <spdlog/spdlog.h>

#include <atomic>
#include <cstdlib>
#include <regex>
#include <thread>

#include "imgsearch/scaleout.h"

namespace imgsearch::scaleout {

namespace {

constexpr int kMaxConnections = 8;

std::atomic<bool> g_stop_waiting{false};

// Each entry takes the schema from the previous version to the next one. Never edit a shipped
// entry: add one.
const std::vector<std::vector<std::string>>& Migrations() {
  static const std::vector<std::vector<std::string>> steps = {
      // 1: images, vectors, the change sequence, the job queue.
      {
          "CREATE SCHEMA IF NOT EXISTS imgsearch",
          "CREATE TABLE imgsearch.meta (key text PRIMARY KEY, value text NOT NULL)",
          "CREATE SEQUENCE imgsearch.change_seq",
          "CREATE TABLE imgsearch.vectors (hash text PRIMARY KEY, dim integer NOT NULL, data bytea NOT NULL)",
          "CREATE TABLE imgsearch.images (id bigserial PRIMARY KEY, path text COLLATE \"C\" NOT NULL UNIQUE, "
          "size_bytes bigint NOT NULL, mtime_ns bigint NOT NULL, content_hash text NOT NULL, width integer NOT NULL, "
          "height integer NOT NULL, format text NOT NULL, capture_time text, indexed_at_ms bigint NOT NULL, "
          "status smallint NOT NULL, error text NOT NULL DEFAULT '', seq bigint NOT NULL)",
          "CREATE INDEX images_seq ON imgsearch.images (seq)",
          "CREATE INDEX images_hash ON imgsearch.images (content_hash)",
          "CREATE TABLE imgsearch.removed (image_id bigint PRIMARY KEY, seq bigint NOT NULL)",
          "CREATE INDEX removed_seq ON imgsearch.removed (seq)",
          "CREATE TABLE imgsearch.jobs (id bigserial PRIMARY KEY, path text COLLATE \"C\" NOT NULL UNIQUE, "
          "size_bytes bigint NOT NULL, mtime_ns bigint NOT NULL, generation bigint NOT NULL DEFAULT 1, "
          "enqueued_at timestamptz NOT NULL DEFAULT now(), not_before timestamptz NOT NULL DEFAULT now(), "
          "attempts integer NOT NULL DEFAULT 0, lease_owner text, lease_until timestamptz, last_error text)",
      },
      // 2: workers report themselves (status shows who is alive); claiming uses an index.
      {
          "CREATE TABLE imgsearch.workers (name text PRIMARY KEY, started_at timestamptz NOT NULL DEFAULT now(), "
          "last_seen timestamptz NOT NULL DEFAULT now(), jobs_done bigint NOT NULL DEFAULT 0)",
          "CREATE INDEX jobs_ready ON imgsearch.jobs (not_before, id)",
      },
      // 3: vectors no image uses are kept for a grace period (store/catalog_backend.h).
      {
          "ALTER TABLE imgsearch.vectors ADD COLUMN released_at_ms bigint",
          "CREATE INDEX vectors_released ON imgsearch.vectors (released_at_ms) WHERE released_at_ms IS NOT NULL",
      },
      // 4: videos: a video's content has one vector per sampled frame, one after another in `data`,
      // and the frames' times (float32 seconds) in `times`; NULL for a still image.
      {
          "ALTER TABLE imgsearch.vectors ADD COLUMN times bytea",
      },
      // 5: the text images show (imgsearch/ocr.h), per content, deleted with its vectors; a
      // trigram index (pg_trgm, a trusted extension: the database's owner may create it) finds any
      // part of a word in any case. A role that may not create it still migrates: searches then
      // scan the texts (pg_backend.cc ranks without pg_trgm's functions).
      {
          "CREATE TABLE imgsearch.texts (hash text PRIMARY KEY REFERENCES imgsearch.vectors (hash) ON DELETE CASCADE, "
          "languages text NOT NULL, text text NOT NULL, words text NOT NULL)",
          "DO $$ BEGIN CREATE EXTENSION IF NOT EXISTS pg_trgm; EXCEPTION WHEN insufficient_privilege THEN "
          "RAISE NOTICE 'pg_trgm cannot be created: text searches scan'; END $$",
          "DO $$ BEGIN IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm') THEN CREATE INDEX "
          "texts_trigrams ON imgsearch.texts USING gin (text gin_trgm_ops); END IF; END $$",
      },
  };
  return steps;
}

std::string WithConnectTimeout(const std::string& url) {
  if (url.find("connect_timeout=") != std::string::npos) return url;
  return url + (url.find('?') == std::string::npos ? "?" : "&") + "connect_timeout=5";
}

}  // namespace

bool Retryable(const std::exception& e) {
  if (dynamic_cast<const pqxx::broken_connection*>(&e) != nullptr) {
    // Refused logins do not cure themselves: a missing database or role, a wrong password.
    const std::string what = e.what();
    for (const char* permanent : {"does not exist", "authentication failed", "no pg_hba.conf entry",
                                  "permission denied", "password", "invalid connection option", "invalid URI"}) {
      if (what.find(permanent) != std::string::npos) return false;
    }
    return true;
  }
  if (dynamic_cast<const pqxx::in_doubt_error*>(&e) != nullptr) return true;
  if (const auto* sql = dynamic_cast<const pqxx::sql_error*>(&e)) {
    const std::string& state = sql->sqlstate();
    return state.starts_with("08") || state.starts_with("57P") || state == "40001" || state == "40P01" ||
           state == "53300";
  }
  return false;
}

std::string SafeUrl(const std::string& url) {
  static const std::regex password(R"(^(\w+://[^:/@]*):[^@]*@)");
  static const std::regex param(R"((password=)[^&]*)");
  return std::regex_replace(std::regex_replace(url, password, "$1:***@"), param, "$1***");
}

std::string ArrayLiteral(const std::vector<std::string>& values) {
  std::string out = "{";
  for (size_t i = 0; i < values.size(); ++i) {
    if (i > 0) out += ',';
    out += '"';
    for (char c : values[i]) {
      if (c == '"' || c == '\\') out += '\\';
      out += c;
    }
    out += '"';
  }
  out += '}';
  return out;
}

std::chrono::seconds RetryFor() {
  if (const char* env = std::getenv("IMGSEARCH_PG_RETRY_SECONDS"); env != nullptr && *env != '\0') {
    char* end = nullptr;
    const long s = std::strtol(env, &end, 10);
    if (*end == '\0' && s >= 0) return std::chrono::seconds(s);
    spdlog::warn("IMGSEARCH_PG_RETRY_SECONDS=\"{}\" is not a number of seconds; using 60", env);
  }
  return std::chrono::seconds(60);
}

std::unique_ptr<pqxx::connection> OpenConnection(const std::string& url) {
  auto c = std::make_unique<pqxx::connection>(WithConnectTimeout(url));
  pqxx::nontransaction(*c).exec("SET client_min_messages TO warning");
  return c;
}

PgClient::PgClient(std::string url, std::chrono::seconds retry_for) : url_(std::move(url)), retry_for_(retry_for) {}

PgClient::~PgClient() = default;

std::unique_ptr<pqxx::connection> PgClient::Take() {
  {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return !idle_.empty() || open_ < kMaxConnections; });
    if (!idle_.empty()) {
      std::unique_ptr<pqxx::connection> c = std::move(idle_.back());
      idle_.pop_back();
      return c;
    }
    ++open_;
  }
  try {
    return OpenConnection(url_);
  } catch (...) {
    std::lock_guard<std::mutex> lock(mu_);
    --open_;
    cv_.notify_one();
    throw;
  }
}

void PgClient::Give(std::unique_ptr<pqxx::connection> c) {
  std::lock_guard<std::mutex> lock(mu_);
  if (c != nullptr && c->is_open()) {
    idle_.push_back(std::move(c));
  } else if (c != nullptr) {
    --open_;
  }
  cv_.notify_one();
}

Status PgClient::Run(const std::function<void(pqxx::connection&)>& fn) {
  using Clock = std::chrono::steady_clock;
  const auto deadline = Clock::now() + retry_for_;
  auto backoff = std::chrono::milliseconds(50);
  int failures = 0;
  while (true) {
    std::unique_ptr<pqxx::connection> c;
    std::string why;
    try {
      c = Take();
      fn(*c);
      Give(std::move(c));
      return Status::Ok();
    } catch (const StatusError& e) {
      Give(std::move(c));
      return e.status;
    } catch (const std::exception& e) {
      if (!Retryable(e)) {
        Give(std::move(c));
        std::string what = e.what();
        while (!what.empty() && (what.back() == '\n' || what.back() == ' ')) what.pop_back();
        if (dynamic_cast<const pqxx::broken_connection*>(&e) != nullptr) {
          // Refused for good (no such database or role, a wrong password): the URL is wrong.
          return Status::InvalidArgument("cannot connect to PostgreSQL at " + SafeUrl(url_) + ": " + what);
        }
        return Status::Internal("PostgreSQL: " + what);
      }
      why = e.what();
    }
    // The connection is gone, and after a server restart so are the idle ones.
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (c != nullptr) --open_;
      open_ -= static_cast<int>(idle_.size());
      idle_.clear();
      cv_.notify_all();
    }
    c.reset();
    while (!why.empty() && (why.back() == '\n' || why.back() == ' ')) why.pop_back();
    if (Clock::now() + backoff > deadline || g_stop_waiting) {
      return Status::Unavailable("cannot reach PostgreSQL at " + SafeUrl(url_) + ": " + why);
    }
    if (failures++ % 10 == 0) spdlog::warn("PostgreSQL at {}: {}; retrying", SafeUrl(url_), why);
    std::this_thread::sleep_for(backoff);
    backoff = std::min(backoff * 2, std::chrono::milliseconds(2000));
  }
}

namespace {

// The schema version in the database (0: no imgsearch schema), read within `t`.
int SchemaVersionIn(pqxx::transaction_base& t, const PgClient& client) {
  if (t.exec("SELECT to_regclass('imgsearch.meta') IS NULL")[0][0].as<bool>()) return 0;
  pqxx::result r = t.exec("SELECT value FROM imgsearch.meta WHERE key = 'schema_version'");
  if (r.empty())
    throw StatusError{Status::Corruption(SafeUrl(client.url()) + ": imgsearch.meta has no schema_version")};
  int found = 0;
  try {
    found = std::stoi(r[0][0].as<std::string>());
  } catch (const std::exception&) {
    throw StatusError{Status::Corruption(SafeUrl(client.url()) + ": schema_version \"" + r[0][0].as<std::string>() +
                                         "\" is not a number")};
  }
  if (found > kPgSchemaVersion) {
    throw StatusError{Status::Unsupported("the imgsearch schema in " + SafeUrl(client.url()) + " is version " +
                                          std::to_string(found) + ", newer than this imgsearch understands (" +
                                          std::to_string(kPgSchemaVersion) + "); upgrade imgsearch on this machine")};
  }
  return found;
}

}  // namespace

Result<int> MigrateSchema(PgClient* client, int target) {
  const auto& steps = Migrations();
  if (target < 1 || target > static_cast<int>(steps.size()))
    return Status::Internal("no schema version " + std::to_string(target));
  int found = 0;
  RETURN_IF_ERROR(client->Run([&](pqxx::connection& c) {
    pqxx::work w(c);
    // Processes starting together: one migrates, the others wait and find it done.
    w.exec_params("SELECT pg_advisory_xact_lock($1)", kSchemaLock);
    found = SchemaVersionIn(w, *client);
    if (found >= target) return;
    for (int v = found + 1; v <= target; ++v) {
      for (const std::string& sql : steps[static_cast<size_t>(v - 1)]) w.exec(sql);
    }
    w.exec_params(
        "INSERT INTO imgsearch.meta(key, value) VALUES ('schema_version', $1) "
        "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
        std::to_string(target));
    w.commit();
    if (found > 0)
      spdlog::info("migrated the imgsearch schema in {} from version {} to {}", SafeUrl(client->url()), found, target);
  }));
  return found;
}

Status CheckSchemaForReading(PgClient* client) {
  int found = 0;
  RETURN_IF_ERROR(client->Run([&](pqxx::connection& c) {
    pqxx::read_transaction t(c);
    found = SchemaVersionIn(t, *client);
  }));
  if (found == 0) {
    return Status::NotFound("no collection at " + SafeUrl(client->url()) + " (index some images into it first)");
  }
  if (found < kPgSchemaVersion) {
    return Status::Unsupported("the imgsearch schema in " + SafeUrl(client->url()) + " is version " +
                               std::to_string(found) + ", older than this imgsearch reads (" +
                               std::to_string(kPgSchemaVersion) +
                               "); reading never changes it: start a watch, index or worker of this version once to "
                               "upgrade it");
  }
  return Status::Ok();
}

}  // namespace imgsearch::scaleout

namespace imgsearch {
void StopWaitingForDatabase() { scaleout::g_stop_waiting = true; }
}  // namespace imgsearch
