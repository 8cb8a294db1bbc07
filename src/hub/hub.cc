// Pulling models from the Hugging Face hub into the local cache.
//
// Layout of the cache:
//   <cache>/<org>--<repo>/                    an installed model (e.g. config.json, model.safetensors
//                                             or pytorch_model.bin, vocab.json, merges.txt,
//                                             imgsearch-model.json)
//   <cache>/.partial/<org>--<repo>/<commit>/  downloads in progress (kept to resume)
//   <cache>/.staging-…                        a model being assembled, renamed into place at the end
#include <openssl/evp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <regex>
#include <string_view>
#include <thread>
#include <vector>

#include "base/http_client.h"
#include "imgsearch/hub.h"
#include "imgsearch/paths.h"

namespace imgsearch {

namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

// The files each kind of repository needs, and those read when present. "model.safetensors"
// stands for the weights of its folder: pytorch_model.bin takes its place in a repository without
// it (torch.save's zip, read without running its pickle). A sentence-transformers CLIP repository
// keeps its files in 0_CLIPModel/. Files only one kind has tell them apart (CLIP has none of them).
struct Layout {
  const char* family;
  std::vector<const char*> markers;  // all present only in this kind's repositories
  std::vector<const char*> needed;
  std::vector<const char*> optional;
};
const Layout kLayouts[] = {
    {"SigLIP",
     {"spiece.model"},
     {"config.json", "model.safetensors", "spiece.model"},
     {"tokenizer_config.json", "preprocessor_config.json"}},
    {"SigLIP 2",
     {"tokenizer.model"},
     {"config.json", "model.safetensors", "tokenizer.model"},
     {"tokenizer_config.json", "preprocessor_config.json"}},
    // A multilingual text tower trained to CLIP's image space (sentence-transformers/
    // clip-ViT-B-32-multilingual-v1): a BERT-style model with a WordPiece vocabulary, mean pooling,
    // then a dense projection, each module in its own folder.
    {"sentence-transformers multilingual text",
     {"modules.json", "vocab.txt"},
     {"modules.json", "config.json", "model.safetensors", "vocab.txt", "1_Pooling/config.json", "2_Dense/config.json",
      "2_Dense/model.safetensors"},
     {"tokenizer_config.json", "sentence_bert_config.json", "special_tokens_map.json"}},
    // Multilingual CLIP (M-CLIP/XLM-Roberta-Large-Vit-B-32): an XLM-RoBERTa text tower with a
    // SentencePiece vocabulary.
    {"M-CLIP",
     {"sentencepiece.bpe.model"},
     {"config.json", "model.safetensors", "sentencepiece.bpe.model"},
     {"tokenizer_config.json", "special_tokens_map.json"}},
    {"CLIP", {}, {"config.json", "model.safetensors", "vocab.json", "merges.txt"}, {}},
};

constexpr std::string_view kSafetensors = "model.safetensors";
constexpr std::string_view kTorchWeights = "pytorch_model.bin";

std::string KnownModelList() {
  std::string all;
  for (const char* n : kKnownModels) all += (all.empty() ? "" : ", ") + std::string(n);
  return all;
}

std::string Env(const char* name) {
  const char* v = std::getenv(name);
  return v == nullptr ? "" : v;
}

std::string DirName(const std::string& name) {
  std::string d = name;
  for (size_t i = d.find('/'); i != std::string::npos; i = d.find('/', i + 2)) d.replace(i, 1, "--");
  return d;
}

bool LooksLikeModelName(const std::string& s) {
  static const std::regex kName(R"(^[A-Za-z0-9][A-Za-z0-9_.\-]*/[A-Za-z0-9][A-Za-z0-9_.\-]*$)");
  return std::regex_match(s, kName) && s.find("..") == std::string::npos;
}

// Hex digest of a file: SHA-256, or git's blob SHA-1 ("blob <size>\0" + content), which is what
// the hub lists for files not stored in LFS.
Result<std::string> FileDigest(const std::string& path, bool git_blob) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::IoError("cannot read " + path);
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  EVP_DigestInit_ex(ctx.get(), git_blob ? EVP_sha1() : EVP_sha256(), nullptr);
  if (git_blob) {
    std::error_code ec;
    const std::string header = "blob " + std::to_string(fs::file_size(path, ec)) + std::string(1, '\0');
    EVP_DigestUpdate(ctx.get(), header.data(), header.size());
  }
  std::vector<char> buf(1 << 20);
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    if (in.gcount() > 0) EVP_DigestUpdate(ctx.get(), buf.data(), static_cast<size_t>(in.gcount()));
  }
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_DigestFinal_ex(ctx.get(), md, &len);
  std::string hex;
  char b[3];
  for (unsigned int i = 0; i < len; ++i) {
    std::snprintf(b, sizeof(b), "%02x", md[i]);
    hex += b;
  }
  return hex;
}

struct RemoteFile {
  std::string path;   // in the repository
  std::string local;  // in the installed model's folder
  int64_t size = 0;
  std::string digest;  // SHA-256 for LFS files, git blob SHA-1 otherwise
  bool sha256 = false;
};

Status HubError(const std::string& what, const std::string& name, const HttpResponse& r, const std::string& endpoint) {
  std::string detail;
  try {
    detail = json::parse(r.body).value("error", "");
  } catch (const std::exception&) {
  }
  if (r.code == 401 || r.code == 403) {
    return Status::InvalidArgument("access to " + name + " on " + endpoint + " was refused (HTTP " +
                                   std::to_string(r.code) + (detail.empty() ? "" : ": " + detail) +
                                   "); for a gated or private model set HF_TOKEN to a token that may read it");
  }
  if (r.code == 404) {
    return Status::NotFound("model " + name + " was not found on " + endpoint +
                            " (check the name; known models: " + KnownModelList() + ")");
  }
  return Status::IoError(what + " " + name + " from " + endpoint + " failed: HTTP " + std::to_string(r.code) +
                         (detail.empty() ? "" : ": " + detail));
}

std::string NowIso8601() {
  const std::time_t t = std::time(nullptr);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&t));
  return buf;
}

class Puller {
 public:
  Puller(const std::string& name, const PullOptions& o) : name_(name), o_(o) {
    endpoint_ = !o.endpoint.empty() ? o.endpoint : Env("HF_ENDPOINT");
    if (endpoint_.empty()) endpoint_ = "https://huggingface.co";
    while (!endpoint_.empty() && endpoint_.back() == '/') endpoint_.pop_back();
    std::string token = !o.token.empty() ? o.token : Env("HF_TOKEN");
    if (token.empty()) token = Env("HUGGING_FACE_HUB_TOKEN");
    http_ = HttpClient(token);
    cache_ = o.cache_dir.empty() ? DefaultModelCache() : o.cache_dir;
  }

  Result<std::string> Run() {
    if (!LooksLikeModelName(name_)) {
      return Status::InvalidArgument("'" + name_ + "' is not a model name (expected owner/name, like " +
                                     std::string(kDefaultModelName) + ")");
    }
    ASSIGN_OR_RETURN(const std::string commit, ResolveCommit());
    ASSIGN_OR_RETURN(const std::vector<RemoteFile> files, ListFiles(commit));
    const std::string partial = cache_ + "/.partial/" + DirName(name_) + "/" + commit;
    std::error_code ec;
    fs::create_directories(partial, ec);
    if (ec) return Status::IoError("cannot create " + partial + ": " + ec.message());

    int64_t total = 0;
    for (const RemoteFile& f : files) total += f.size;
    int64_t done_before = 0;
    for (const RemoteFile& f : files) {
      RETURN_IF_ERROR(Fetch(f, partial, done_before, total));
      done_before += f.size;
    }
    return Install(files, partial, commit, total);
  }

 private:
  Result<std::string> ResolveCommit() {
    const std::string url = endpoint_ + "/api/models/" + name_ + "/revision/" + o_.revision;
    ASSIGN_OR_RETURN(HttpResponse r, http_.Get(url));
    if (r.code != 200) return HubError("looking up", name_, r, endpoint_);
    try {
      const std::string sha = json::parse(r.body).at("sha").get<std::string>();
      if (sha.empty() || sha.find_first_not_of("0123456789abcdef") != std::string::npos) {
        return Status::Corruption(url + " gave a malformed commit id");
      }
      return sha;
    } catch (const std::exception& e) {
      return Status::Corruption(url + " did not answer with model metadata: " + e.what());
    }
  }

  Result<std::vector<RemoteFile>> ListFiles(const std::string& commit) {
    const std::string url = endpoint_ + "/api/models/" + name_ + "/tree/" + commit + "?recursive=true";
    ASSIGN_OR_RETURN(HttpResponse r, http_.Get(url));
    if (r.code != 200) return HubError("listing the files of", name_, r, endpoint_);
    std::map<std::string, RemoteFile> listed;
    try {
      for (const json& e : json::parse(r.body)) {
        if (e.value("type", "") != "file") continue;
        RemoteFile f;
        f.path = e.at("path").get<std::string>();
        f.size = e.at("size").get<int64_t>();
        if (e.contains("lfs") && e["lfs"].is_object()) {
          f.digest = e["lfs"].at("oid").get<std::string>();
          f.sha256 = true;
          f.size = e["lfs"].value("size", f.size);
        } else {
          f.digest = e.at("oid").get<std::string>();
        }
        listed[f.path] = f;
      }
    } catch (const std::exception& e) {
      return Status::Corruption(url + " did not answer with a file list: " + e.what());
    }
    auto has = [&](const std::string& path) { return listed.contains(path); };
    // The weights a layout's "model.safetensors" stands for: safetensors when the repository has
    // them (no pickle at all), else pytorch_model.bin beside it.
    auto weights = [&](const std::string& path) {
      if (!path.ends_with(kSafetensors) || has(path)) return path;
      return path.substr(0, path.size() - kSafetensors.size()) + std::string(kTorchWeights);
    };
    auto shown = [](const std::string& path) {
      return path.ends_with(kSafetensors) ? path + " (or " + std::string(kTorchWeights) + ")" : path;
    };
    for (const std::string prefix : {"", "0_CLIPModel/"}) {
      if (!has(weights(prefix + std::string(kSafetensors)))) continue;
      const Layout* layout = &kLayouts[std::size(kLayouts) - 1];  // CLIP, unless another kind's files are there
      for (const Layout& l : kLayouts) {
        if (!l.markers.empty() &&
            std::all_of(l.markers.begin(), l.markers.end(), [&](const char* m) { return has(prefix + m); })) {
          layout = &l;
          break;
        }
      }
      std::vector<RemoteFile> files;
      auto add = [&](const char* n, bool needed) -> Status {
        auto it = listed.find(weights(prefix + n));
        if (it == listed.end()) {
          if (!needed) return Status::Ok();
          std::string all;
          for (const char* f : layout->needed) all += (all.empty() ? "" : ", ") + shown(f);
          return Status::Unsupported(name_ + " has no " + shown(prefix + n) + "; a " + layout->family +
                                     " model needs " + all + (prefix.empty() ? "" : " in " + prefix));
        }
        if (it->second.path.find("..") != std::string::npos) return Status::Corruption("bad path " + it->second.path);
        RemoteFile f = it->second;
        // Installed relative to the model's folder: a sentence-transformers CLIP model's
        // 0_CLIPModel/ is flattened (the loader reads it the same way), other folders are kept.
        f.local = f.path.substr(prefix.size());
        files.push_back(std::move(f));
        return Status::Ok();
      };
      for (const char* n : layout->needed) RETURN_IF_ERROR(add(n, true));
      for (const char* n : layout->optional) RETURN_IF_ERROR(add(n, false));
      return files;
    }
    return Status::Unsupported(name_ + " has no model.safetensors or pytorch_model.bin (nor 0_CLIPModel/ with " +
                               "either): not a model imgsearch can load");
  }

  Status Fetch(const RemoteFile& f, const std::string& partial, int64_t done_before, int64_t total) {
    const std::string path = partial + "/" + f.path;
    std::error_code ec;
    fs::create_directories(fs::path(path).parent_path(), ec);
    const std::string url =
        endpoint_ + "/" + name_ + "/resolve/" + partial.substr(partial.rfind('/') + 1) + "/" + f.path;
    auto report = [&](int64_t have) {
      if (!o_.on_progress) return;
      PullProgress p{f.path, have, f.size, done_before + have, total};
      o_.on_progress(p);
    };
    Status last;
    for (int attempt = 0; attempt <= o_.retries; ++attempt) {
      const int64_t have = fs::exists(path, ec) ? static_cast<int64_t>(fs::file_size(path, ec)) : 0;
      if (have > f.size) fs::remove(path, ec);  // not what the hub lists: start over
      if (have != f.size) {
        if (attempt > 0) std::this_thread::sleep_for(std::chrono::milliseconds(250 << std::min(attempt, 5)));
        auto code = http_.Download(url, path, report);
        if (!code.ok()) {
          last = code.status();  // a cut connection: resume from what arrived
          continue;
        }
        if (*code != 200 && *code != 206 && *code != 416) {
          return HubError("downloading " + f.path + " of", name_, {*code, ""}, endpoint_);
        }
      }
      const int64_t now = fs::exists(path, ec) ? static_cast<int64_t>(fs::file_size(path, ec)) : 0;
      if (now < f.size) {
        last = Status::IoError("the connection closed after " + std::to_string(now) + " of " + std::to_string(f.size) +
                               " bytes of " + f.path);
        continue;
      }
      ASSIGN_OR_RETURN(const std::string digest, FileDigest(path, !f.sha256));
      if (now != f.size || digest != f.digest) {
        fs::remove(path, ec);
        return Status::Corruption("checksum mismatch for " + f.path + " of " + name_ + ": the hub lists " +
                                  (f.sha256 ? "SHA-256 " : "git blob ") + f.digest + " (" + std::to_string(f.size) +
                                  " bytes), the download has " + digest + " (" + std::to_string(now) +
                                  " bytes); nothing was installed");
      }
      report(f.size);
      return Status::Ok();
    }
    return Status::IoError("giving up on " + f.path + " of " + name_ + " after " + std::to_string(o_.retries + 1) +
                           " attempts: " + last.message() + " (run the pull again to resume)");
  }

  Result<std::string> Install(const std::vector<RemoteFile>& files, const std::string& partial,
                              const std::string& commit, int64_t total) {
    const std::string target = cache_ + "/" + DirName(name_);
    const std::string staging = cache_ + "/.staging-" + DirName(name_) + "-" + std::to_string(::getpid());
    std::error_code ec;
    fs::remove_all(staging, ec);
    fs::create_directories(staging, ec);
    if (ec) return Status::IoError("cannot create " + staging + ": " + ec.message());
    json manifest = {{"name", name_},  {"revision", commit},        {"endpoint", endpoint_},
                     {"bytes", total}, {"pulled_at", NowIso8601()}, {"files", json::array()}};
    for (const RemoteFile& f : files) {
      fs::create_directories(fs::path(staging + "/" + f.local).parent_path(), ec);
      if (!ec) fs::rename(partial + "/" + f.path, staging + "/" + f.local, ec);
      if (ec) return Status::IoError("cannot move " + f.path + " into " + staging + ": " + ec.message());
      manifest["files"].push_back({{"path", f.path}, {"size", f.size}, {f.sha256 ? "sha256" : "git_sha1", f.digest}});
    }
    {
      std::ofstream m(staging + "/" + kModelManifest);
      m << manifest.dump(2) << "\n";
      if (!m) return Status::IoError("cannot write " + staging + "/" + kModelManifest);
    }
    // Swap in: the previous version (if any) stays usable until the new one is complete.
    const std::string old = target + ".old-" + std::to_string(::getpid());
    if (fs::exists(target, ec)) fs::rename(target, old, ec);
    fs::rename(staging, target, ec);
    if (ec) return Status::IoError("cannot install " + target + ": " + ec.message());
    fs::remove_all(old, ec);
    fs::remove_all(fs::path(partial).parent_path(), ec);
    return target;
  }

  const std::string name_;
  const PullOptions& o_;
  std::string endpoint_, cache_;
  HttpClient http_;
};

}  // namespace

std::string DefaultModelCache() { return CacheDir("models"); }

std::string CachedModelDir(const std::string& name, const std::string& cache_dir) {
  return (cache_dir.empty() ? DefaultModelCache() : cache_dir) + "/" + DirName(name);
}

Result<std::string> PullModel(const std::string& name, const PullOptions& options) {
  return Puller(name, options).Run();
}

std::vector<CachedModel> ListCachedModels(const std::string& cache_dir) {
  const std::string cache = cache_dir.empty() ? DefaultModelCache() : cache_dir;
  std::vector<CachedModel> models;
  std::error_code ec;
  for (fs::directory_iterator it(cache, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string dir = it->path().string();
    if (it->path().filename().string().starts_with(".")) continue;
    std::ifstream in(dir + "/" + kModelManifest);
    if (!in) continue;
    try {
      const json m = json::parse(in);
      models.push_back(
          {m.at("name"), dir, m.value("revision", ""), m.value("bytes", int64_t{0}), m.value("pulled_at", "")});
    } catch (const std::exception&) {
      continue;  // not ours, or damaged: not listed
    }
  }
  std::sort(models.begin(), models.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  return models;
}

Result<std::string> ResolveModel(const std::string& flag, const ResolveOptions& options) {
  std::string value = flag;
  std::string source = options.flag_name;
  if (value.empty()) {
    value = Env("IMGSEARCH_MODEL");
    source = "IMGSEARCH_MODEL";
  }
  if (value.empty()) {
    value = kDefaultModelName;
    source = "the default model";
  }
  std::error_code ec;
  if (fs::is_directory(value, ec)) return value;
  if (!LooksLikeModelName(value)) {
    return Status::NotFound("model directory " + value + " (from " + source + ") does not exist");
  }
  const std::string cache = options.pull.cache_dir.empty() ? DefaultModelCache() : options.pull.cache_dir;
  const std::string dir = CachedModelDir(value, cache);
  if (fs::exists(dir + "/" + kModelManifest, ec)) return dir;
  if (!options.pull_if_missing || options.offline) {
    return Status::NotFound("model " + value + " (" + source + ") is not in the cache " + cache +
                            (options.offline ? " and --offline forbids downloading it" : "") +
                            "; fetch it with `imgsearch model pull " + value + "`, or pass " + options.flag_name +
                            " DIR with the model's Hugging Face folder");
  }
  auto pulled = PullModel(value, options.pull);
  if (!pulled.ok()) {
    return Status(pulled.status().code(), "cannot download model " + value + " (" + source +
                                              "): " + pulled.status().message() + "; alternatively pass " +
                                              options.flag_name + " DIR with the model's Hugging Face folder");
  }
  return pulled;
}

}  // namespace imgsearch
