// Opening a store: an embedded collection in a folder, or a PostgreSQL collection with its job queue.
#include <pqxx/pqxx>

#include "imgsearch/scaleout.h"
#include "scaleout/pg.h"
#include "scaleout/pg_backend.h"
#include "scaleout/pg_job_queue.h"

namespace imgsearch {

bool IsPostgresUrl(const std::string& location) {
  return location.starts_with("postgresql://") || location.starts_with("postgres://");
}

std::string RedactedLocation(const std::string& location) { return scaleout::SafeUrl(location); }

Result<QueueStats> QueueStatsAt(const std::string& url) {
  if (!IsPostgresUrl(url)) return Status::InvalidArgument("no job queue in " + url + ": not a postgresql:// URL");
  auto client = std::make_shared<scaleout::PgClient>(url, scaleout::RetryFor());
  RETURN_IF_ERROR(scaleout::MigrateSchema(client.get(), kPgSchemaVersion).status());
  return scaleout::PgJobQueue(client).Stats();
}

Result<Store> OpenStore(const std::string& location, const ModelIdentity* model, const CollectionOptions& options) {
  Store store;
  if (!IsPostgresUrl(location)) {
    ASSIGN_OR_RETURN(store.collection, OpenCollection(location, model, options));
    return store;
  }
  auto client = std::make_shared<scaleout::PgClient>(
      location, options.wait_for_database ? std::chrono::hours(24 * 365) : scaleout::RetryFor());
  if (options.read_only) {
    RETURN_IF_ERROR(scaleout::CheckSchemaForReading(client.get()));
  } else {
    RETURN_IF_ERROR(scaleout::MigrateSchema(client.get(), kPgSchemaVersion).status());
  }
  ASSIGN_OR_RETURN(store.collection, scaleout::OpenPgCollection(client, model, options));
  store.queue = std::make_unique<scaleout::PgJobQueue>(client);
  return store;
}

}  // namespace imgsearch
