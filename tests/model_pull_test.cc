// `imgsearch model pull` and first-use downloads against a fake Hugging Face hub on loopback that
// serves the tiny test model with the hub's URL layout and metadata.
#include <gtest/gtest.h>
#include <httplib.h>
#include <openssl/evp.h>

#include <atomic>
#include <filesystem>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "test_util.h"

namespace imgsearch {
namespace {

namespace fs = std::filesystem;
using testing::ImgsearchBin;
using testing::RunCommand;

std::string Digest(const std::string& bytes, bool git_blob) {
  std::string input = git_blob ? "blob " + std::to_string(bytes.size()) + std::string(1, '\0') + bytes : bytes;
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(input.data(), input.size(), md, &len, git_blob ? EVP_sha1() : EVP_sha256(), nullptr);
  std::string hex;
  char b[3];
  for (unsigned int i = 0; i < len; ++i) {
    std::snprintf(b, sizeof(b), "%02x", md[i]);
    hex += b;
  }
  return hex;
}

constexpr const char* kCommit = "0123456789abcdef0123456789abcdef01234567";

// Repositories by name: path in the repository → bytes.
class FakeHub {
 public:
  FakeHub() {
    const std::string model = testing::TestModelDir();
    for (const char* f : {"config.json", "model.safetensors", "vocab.json", "merges.txt"}) {
      files_["openai/clip-vit-base-patch32"][f] = testing::ReadFile(model + "/" + f);
      files_["sentence-transformers/clip-ViT-B-32"][std::string("0_CLIPModel/") + f] =
          testing::ReadFile(model + "/" + f);
      files_["acme/gated-clip"][f] = testing::ReadFile(model + "/" + f);
    }
    files_["sentence-transformers/clip-ViT-B-32"]["modules.json"] = "[]";
    // The same model with torch.save's weights only (make_test_model --weights-format torch, same
    // seed), then with both kinds of weights, then weights without a tokenizer.
    const std::string torch_weights = testing::ReadFile(model + "-torch/pytorch_model.bin");
    for (const char* f : {"config.json", "vocab.json", "merges.txt"}) {
      files_["acme/old-clip"][f] = testing::ReadFile(model + "/" + f);
      files_["acme/both-clip"][f] = testing::ReadFile(model + "/" + f);
    }
    files_["acme/old-clip"]["pytorch_model.bin"] = torch_weights;
    files_["acme/old-clip"]["README.md"] = "# old CLIP";
    files_["acme/old-clip"]["tf_model.h5"] = "HDF5";
    files_["acme/both-clip"]["pytorch_model.bin"] = torch_weights;
    files_["acme/both-clip"]["model.safetensors"] = testing::ReadFile(model + "/model.safetensors");
    files_["acme/weights-only"]["config.json"] = "{}";
    files_["acme/weights-only"]["pytorch_model.bin"] = torch_weights;
    // Multilingual text towers, as the hub lists them (their contents do not matter to a pull):
    // sentence-transformers' with its modules in folders (safetensors at the root, only torch
    // weights in 2_Dense/), and M-CLIP's.
    auto& st = files_["sentence-transformers/clip-ViT-B-32-multilingual-v1"];
    for (const char* f : {"modules.json", "config.json", "model.safetensors", "pytorch_model.bin", "vocab.txt",
                          "1_Pooling/config.json", "2_Dense/config.json", "2_Dense/pytorch_model.bin",
                          "tokenizer_config.json", "sentence_bert_config.json", "special_tokens_map.json", "README.md",
                          "tokenizer.json", "config_sentence_transformers.json", "onnx/model.onnx", ".gitattributes"}) {
      st[f] = std::string("multilingual ") + f;
    }
    files_["acme/multilingual-no-dense"] = st;
    files_["acme/multilingual-no-dense"].erase("2_Dense/pytorch_model.bin");
    for (const char* f : {"config.json", "pytorch_model.bin", "sentencepiece.bpe.model", "tokenizer_config.json",
                          "special_tokens_map.json", "tokenizer.json", "tf_model.h5", "README.md"}) {
      files_["M-CLIP/XLM-Roberta-Large-Vit-B-32"][f] = std::string("M-CLIP ") + f;
    }

    server_.Get(R"(/api/models/([^/]+/[^/]+)/revision/([^/]+))", [this](const auto& req, auto& res) {
      if (!Allowed(req, res)) return;
      res.set_content(std::string(R"({"sha":")") + kCommit + R"(","siblings":[]})", "application/json");
    });
    server_.Get(R"(/api/models/([^/]+/[^/]+)/tree/([^/]+))", [this](const auto& req, auto& res) {
      if (!Allowed(req, res)) return;
      std::string body = "[";
      for (const auto& [path, bytes] : files_.at(req.matches[1].str())) {
        const bool lfs = path.ends_with(".safetensors") || path.ends_with(".bin");
        std::string sha = Digest(bytes, !lfs);
        if (lfs && corrupt_digest_) sha[0] = sha[0] == '0' ? '1' : '0';
        if (body.size() > 1) body += ",";
        body += R"({"type":"file","path":")" + path + R"(","size":)" + std::to_string(bytes.size()) + R"(,"oid":")" +
                Digest(bytes, true) + "\"";
        if (lfs) body += R"(,"lfs":{"oid":")" + sha + R"(","size":)" + std::to_string(bytes.size()) + "}";
        body += "}";
      }
      res.set_content(body + "]", "application/json");
    });
    server_.Get(R"(/([^/]+/[^/]+)/resolve/([^/]+)/(.+))", [this](const httplib::Request& req, auto& res) {
      if (!Allowed(req, res)) return;
      const auto& repo = files_.at(req.matches[1].str());
      auto it = repo.find(req.matches[3].str());
      if (it == repo.end()) {
        res.status = 404;
        return;
      }
      const std::string& bytes = it->second;
      if (req.has_header("Range")) {
        std::lock_guard<std::mutex> lock(mu_);
        ranges_.push_back(req.get_header_value("Range"));
      }
      if (cut_next_ && it->first.ends_with(".safetensors") && !req.has_header("Range")) {
        cut_next_ = false;
        // Half the file, then the connection drops.
        const std::string copy = bytes;
        res.set_content_provider(copy.size(), "application/octet-stream",
                                 [copy](size_t offset, size_t length, httplib::DataSink& sink) {
                                   if (offset >= copy.size() / 2) return false;
                                   sink.write(copy.data() + offset, std::min(length, copy.size() / 2 - offset));
                                   return true;
                                 });
        return;
      }
      res.set_content(bytes, "application/octet-stream");
    });
    port_ = server_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { server_.listen_after_bind(); });
  }
  ~FakeHub() {
    server_.stop();
    thread_.join();
  }

  std::string endpoint() const { return "http://127.0.0.1:" + std::to_string(port_); }
  void CutNextWeightsDownload() { cut_next_ = true; }
  void CorruptDigests() { corrupt_digest_ = true; }
  std::vector<std::string> ranges() {
    std::lock_guard<std::mutex> lock(mu_);
    return ranges_;
  }

 private:
  bool Allowed(const httplib::Request& req, httplib::Response& res) {
    const std::string repo = req.matches[1].str();
    if (!files_.contains(repo)) {
      res.status = 404;
      res.set_content(R"({"error":"Repository not found"})", "application/json");
      return false;
    }
    if (repo == "acme/gated-clip" && req.get_header_value("Authorization") != "Bearer sesame") {
      res.status = 401;
      res.set_content(R"({"error":"Access to model acme/gated-clip is restricted"})", "application/json");
      return false;
    }
    return true;
  }

  std::map<std::string, std::map<std::string, std::string>> files_;
  httplib::Server server_;
  std::thread thread_;
  int port_ = 0;
  std::atomic<bool> cut_next_{false}, corrupt_digest_{false};
  std::mutex mu_;
  std::vector<std::string> ranges_;
};

// The files of an installed model, relative to its folder.
std::set<std::string> InstalledFiles(const std::string& dir) {
  std::set<std::string> files;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    if (e.is_regular_file()) files.insert(fs::relative(e.path(), dir).string());
  }
  return files;
}

class ModelPullTest : public ::testing::Test {
 protected:
  void SetUp() override { cache_home_ = testing::MakeTempDir(); }

  std::vector<std::string> Env() const {
    return {"HF_ENDPOINT=" + hub_.endpoint(),
            "XDG_CACHE_HOME=" + cache_home_,
            "IMGSEARCH_MODEL=",
            "HF_TOKEN=",
            "HUGGING_FACE_HUB_TOKEN=",
            "http_proxy=",
            "https_proxy=",
            "HTTP_PROXY=",
            "HTTPS_PROXY=",
            "ALL_PROXY="};
  }
  std::string Cache() const { return cache_home_ + "/imgsearch/models"; }

  FakeHub hub_;
  std::string cache_home_;
};

TEST_F(ModelPullTest, PullsVerifiesAndInstallsTheDefaultModel) {
  auto r = RunCommand({ImgsearchBin(), "model", "pull"}, Env());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string dir = Cache() + "/openai--clip-vit-base-patch32";
  for (const char* f : {"config.json", "model.safetensors", "vocab.json", "merges.txt", "imgsearch-model.json"}) {
    EXPECT_TRUE(fs::exists(dir + "/" + f)) << f;
  }
  EXPECT_EQ(testing::ReadFile(dir + "/model.safetensors"),
            testing::ReadFile(testing::TestModelDir() + "/model.safetensors"));
  EXPECT_FALSE(fs::exists(Cache() + "/.partial/openai--clip-vit-base-patch32"));

  auto list = RunCommand({ImgsearchBin(), "model", "list"}, Env());
  EXPECT_EQ(list.exit_code, 0) << list.err;
  EXPECT_NE(list.out.find("openai/clip-vit-base-patch32"), std::string::npos) << list.out;

  // Every command now finds it by name, and by default.
  auto by_name =
      RunCommand({ImgsearchBin(), "embed", "--model", "openai/clip-vit-base-patch32", "--text", "a cat"}, Env());
  EXPECT_EQ(by_name.exit_code, 0) << by_name.err;
  auto by_default = RunCommand({ImgsearchBin(), "embed", "--text", "a cat"}, Env());
  EXPECT_EQ(by_default.exit_code, 0) << by_default.err;
  EXPECT_EQ(by_name.out, by_default.out);
}

TEST_F(ModelPullTest, SentenceTransformersLayoutIsFlattened) {
  auto r = RunCommand({ImgsearchBin(), "model", "pull", "sentence-transformers/clip-ViT-B-32"}, Env());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto e =
      RunCommand({ImgsearchBin(), "embed", "--model", "sentence-transformers/clip-ViT-B-32", "--text", "a"}, Env());
  EXPECT_EQ(e.exit_code, 0) << e.err;
}

TEST_F(ModelPullTest, ResumesAfterACutConnection) {
  hub_.CutNextWeightsDownload();
  auto r = RunCommand({ImgsearchBin(), "model", "pull"}, Env());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto ranges = hub_.ranges();
  ASSERT_FALSE(ranges.empty()) << "the second request did not ask for the rest of the file";
  EXPECT_NE(ranges.front(), "bytes=0-");
  EXPECT_EQ(testing::ReadFile(Cache() + "/openai--clip-vit-base-patch32/model.safetensors"),
            testing::ReadFile(testing::TestModelDir() + "/model.safetensors"));
}

TEST_F(ModelPullTest, ChecksumMismatchInstallsNothing) {
  hub_.CorruptDigests();
  auto r = RunCommand({ImgsearchBin(), "model", "pull"}, Env());
  EXPECT_EQ(r.exit_code, 4);  // damaged data
  EXPECT_NE(r.err.find("checksum mismatch"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("model.safetensors"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(Cache() + "/openai--clip-vit-base-patch32"));
  auto e = RunCommand({ImgsearchBin(), "embed", "--text", "a"}, Env());
  EXPECT_EQ(e.exit_code, 2);
}

TEST_F(ModelPullTest, UnknownModelIsNotFound) {
  auto r = RunCommand({ImgsearchBin(), "model", "pull", "acme/no-such-model"}, Env());
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("acme/no-such-model was not found"), std::string::npos) << r.err;
}

TEST_F(ModelPullTest, TorchOnlyRepositoryPullsPytorchModelBin) {
  auto r = RunCommand({ImgsearchBin(), "model", "pull", "acme/old-clip"}, Env());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string dir = Cache() + "/acme--old-clip";
  EXPECT_EQ(InstalledFiles(dir), (std::set<std::string>{"config.json", "pytorch_model.bin", "vocab.json", "merges.txt",
                                                        "imgsearch-model.json"}));
  EXPECT_EQ(testing::ReadFile(dir + "/pytorch_model.bin"),
            testing::ReadFile(testing::TestModelDir() + "-torch/pytorch_model.bin"));
  // The same weights as the safetensors model: the same embedding.
  auto torch = RunCommand({ImgsearchBin(), "embed", "--model", "acme/old-clip", "--text", "a cat"}, Env());
  ASSERT_EQ(torch.exit_code, 0) << torch.err;
  auto safetensors =
      RunCommand({ImgsearchBin(), "embed", "--model", testing::TestModelDir(), "--text", "a cat"}, Env());
  ASSERT_EQ(safetensors.exit_code, 0) << safetensors.err;
  EXPECT_EQ(torch.out, safetensors.out);
}

TEST_F(ModelPullTest, SafetensorsArePreferredToPytorchModelBin) {
  auto r = RunCommand({ImgsearchBin(), "model", "pull", "acme/both-clip"}, Env());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(
      InstalledFiles(Cache() + "/acme--both-clip"),
      (std::set<std::string>{"config.json", "model.safetensors", "vocab.json", "merges.txt", "imgsearch-model.json"}));
}

TEST_F(ModelPullTest, WeightsWithoutATokenizerAreRefusedWithAReason) {
  auto r = RunCommand({ImgsearchBin(), "model", "pull", "acme/weights-only"}, Env());
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("acme/weights-only has no vocab.json"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("model.safetensors (or pytorch_model.bin)"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(Cache() + "/acme--weights-only"));
}

TEST_F(ModelPullTest, MultilingualSentenceTransformersLayoutKeepsItsFolders) {
  const std::string name = "sentence-transformers/clip-ViT-B-32-multilingual-v1";
  auto r = RunCommand({ImgsearchBin(), "model", "pull", name}, Env());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string dir = Cache() + "/sentence-transformers--clip-ViT-B-32-multilingual-v1";
  // The modules' folders are kept (three config.json), safetensors preferred where present.
  EXPECT_EQ(
      InstalledFiles(dir),
      (std::set<std::string>{"modules.json", "config.json", "model.safetensors", "vocab.txt", "1_Pooling/config.json",
                             "2_Dense/config.json", "2_Dense/pytorch_model.bin", "tokenizer_config.json",
                             "sentence_bert_config.json", "special_tokens_map.json", "imgsearch-model.json"}));
  for (const char* f : {"config.json", "1_Pooling/config.json", "2_Dense/config.json", "2_Dense/pytorch_model.bin"}) {
    EXPECT_EQ(testing::ReadFile(dir + "/" + f), std::string("multilingual ") + f);
  }

  auto missing = RunCommand({ImgsearchBin(), "model", "pull", "acme/multilingual-no-dense"}, Env());
  EXPECT_EQ(missing.exit_code, 2);
  EXPECT_NE(missing.err.find("has no 2_Dense/model.safetensors (or pytorch_model.bin)"), std::string::npos)
      << missing.err;
  EXPECT_NE(missing.err.find("sentence-transformers multilingual text model needs"), std::string::npos) << missing.err;
}

TEST_F(ModelPullTest, MClipLayout) {
  auto r = RunCommand({ImgsearchBin(), "model", "pull", "M-CLIP/XLM-Roberta-Large-Vit-B-32"}, Env());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(InstalledFiles(Cache() + "/M-CLIP--XLM-Roberta-Large-Vit-B-32"),
            (std::set<std::string>{"config.json", "pytorch_model.bin", "sentencepiece.bpe.model",
                                   "tokenizer_config.json", "special_tokens_map.json", "imgsearch-model.json"}));
}

TEST_F(ModelPullTest, GatedModelNeedsAToken) {
  auto r = RunCommand({ImgsearchBin(), "model", "pull", "acme/gated-clip"}, Env());
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("HF_TOKEN"), std::string::npos) << r.err;
  auto env = Env();
  env.push_back("HF_TOKEN=sesame");
  auto ok = RunCommand({ImgsearchBin(), "model", "pull", "acme/gated-clip"}, env);
  EXPECT_EQ(ok.exit_code, 0) << ok.err;
}

TEST_F(ModelPullTest, NoNetworkIsAClearMessage) {
  auto env = Env();
  env.push_back("HF_ENDPOINT=http://127.0.0.1:9");  // discard port: nothing listens
  auto r = RunCommand({ImgsearchBin(), "model", "pull"}, env);
  EXPECT_EQ(r.exit_code, 5);  // unavailable: trying again later may work
  EXPECT_NE(r.err.find("no network"), std::string::npos) << r.err;
}

TEST_F(ModelPullTest, IndexPullsTheDefaultModelOnFirstUseUnlessOffline) {
  const std::string photos = testing::MakeTempDir();
  testing::WriteFile(photos + "/notes.txt", "not an image");
  auto offline = RunCommand({ImgsearchBin(), "index", "--offline", "--db", photos + "/db", photos}, Env());
  EXPECT_EQ(offline.exit_code, 2);
  EXPECT_NE(offline.err.find("imgsearch model pull"), std::string::npos) << offline.err;
  EXPECT_FALSE(fs::exists(Cache() + "/openai--clip-vit-base-patch32"));

  auto r = RunCommand({ImgsearchBin(), "index", "--db", photos + "/db", photos}, Env());
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(fs::exists(Cache() + "/openai--clip-vit-base-patch32/model.safetensors"));
}

}  // namespace
}  // namespace imgsearch
