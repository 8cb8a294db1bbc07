// Moving an embedded collection into PostgreSQL.
#include <spdlog/spdlog.h>

#include <set>

#include "imgsearch/scaleout.h"
#include "scaleout/pg.h"

namespace imgsearch {

Result<MigrateReport> MigrateCollection(const std::string& dir, const std::string& url) {
  if (!IsPostgresUrl(url)) return Status::InvalidArgument("--to must be a postgresql:// URL, not " + url);
  ASSIGN_OR_RETURN(std::unique_ptr<Collection> from,
                   OpenCollection(dir, nullptr, {.read_only = true, .create_if_missing = false}));
  const ModelIdentity model = from->model();
  if (model.dim <= 0) return Status::InvalidArgument(dir + " has no model yet: nothing to migrate");
  ASSIGN_OR_RETURN(Store to, OpenStore(url, &model));

  std::vector<ImageRecord> records;
  RETURN_IF_ERROR(from->ForEach([&](const ImageRecord& r) {
    records.push_back(r);
    return true;
  }));
  MigrateReport report;
  std::set<std::string> hashes;
  constexpr size_t kBatch = 256;
  for (size_t begin = 0; begin < records.size(); begin += kBatch) {
    std::vector<ImageUpsert> batch;
    for (size_t i = begin; i < std::min(records.size(), begin + kBatch); ++i) {
      ImageUpsert u;
      u.record = records[i];
      if (u.record.status == ImageStatus::kIndexed) {
        ASSIGN_OR_RETURN(u.embedding, from->GetVectors(u.record.id));
        hashes.insert(u.record.content_hash);
        ++report.indexed;
      } else {
        ++report.failed;
      }
      batch.push_back(std::move(u));
    }
    RETURN_IF_ERROR(to.collection->Upsert(batch).status());
  }
  ASSIGN_OR_RETURN(const std::vector<CollectionRoot> roots, from->Roots());
  RETURN_IF_ERROR(to.collection->AddRoots(roots, RootChange::kAccept));
  report.vectors = static_cast<int64_t>(hashes.size());
  return report;
}

}  // namespace imgsearch
