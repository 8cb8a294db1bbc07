// Test helper: writes batches into a collection and prints "ok N" after each batch's Upsert has
// returned, N being the images written so far. The crash test kills it with SIGKILL at a random
// moment and checks that every acknowledged image survived.
#include <cstdio>
#include <cstdlib>
#include <string>

#include "store/store_test_util.h"

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: crash_writer DIR BATCHES\n");
    return 2;
  }
  using namespace imgsearch;
  const ModelIdentity model = store::testing::TestModel(32);
  CollectionOptions options;
  options.index.snapshot_every = 300;  // snapshots happen mid-run too, so kills land inside them
  options.index.exact_below = 100;
  auto collection = OpenCollection(argv[1], &model, options);
  if (!collection.ok()) {
    std::fprintf(stderr, "%s\n", collection.status().ToString().c_str());
    return 1;
  }
  std::mt19937 rng(std::random_device{}());
  const int batches = std::atoi(argv[2]);
  int written = 0;
  for (int b = 0; b < batches; ++b) {
    std::vector<ImageUpsert> batch;
    for (int i = 0; i < 50; ++i, ++written) {
      const std::string name = "/photos/img" + std::to_string(written) + ".jpg";
      batch.push_back(
          store::testing::MakeImage(name, store::testing::RandomUnit(32, &rng), "h" + std::to_string(written)));
    }
    auto ids = (*collection)->Upsert(batch);
    if (!ids.ok()) {
      std::fprintf(stderr, "%s\n", ids.status().ToString().c_str());
      return 1;
    }
    std::printf("ok %d\n", written);
    std::fflush(stdout);
  }
  return 0;
}
