#include "model/checkpoint.h"

#include <xxhash.h>

#include <cstdio>
#include <cstring>
#include <limits>

#include <nlohmann/json.hpp>

#include "model/torch_checkpoint.h"

namespace imgsearch::model {

namespace {

struct DTypeEntry {
  const char* name;
  DType dtype;
  size_t size;
};

constexpr DTypeEntry kDTypes[] = {
    {"F32", DType::kF32, 4},   {"F16", DType::kF16, 2},       {"BF16", DType::kBF16, 2},     {"F64", DType::kOther, 8},
    {"I64", DType::kOther, 8}, {"I32", DType::kOther, 4},     {"I16", DType::kOther, 2},     {"I8", DType::kOther, 1},
    {"U8", DType::kOther, 1},  {"BOOL", DType::kOther, 1},    {"U16", DType::kOther, 2},     {"U32", DType::kOther, 4},
    {"U64", DType::kOther, 8}, {"F8_E4M3", DType::kOther, 1}, {"F8_E5M2", DType::kOther, 1},
};

const DTypeEntry* FindDType(const std::string& name) {
  for (const DTypeEntry& e : kDTypes) {
    if (name == e.name) return &e;
  }
  return nullptr;
}

constexpr uint64_t kMaxHeaderBytes = 100u << 20;  // the format's own limit is 100 MB

}  // namespace

const char* DTypeName(DType dtype) {
  switch (dtype) {
    case DType::kF32: return "F32";
    case DType::kF16: return "F16";
    case DType::kBF16: return "BF16";
    case DType::kOther: return "other";
  }
  return "other";
}

int64_t TensorInfo::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

const TensorInfo* CheckpointFile::Find(const std::string& name) const {
  auto it = tensors_.find(name);
  return it == tensors_.end() ? nullptr : &it->second;
}

std::string CheckpointFile::Fingerprint() const {
  XXH3_state_t* state = XXH3_createState();
  XXH3_64bits_reset(state);
  const uint64_t size = file_.size();
  XXH3_64bits_update(state, &size, sizeof(size));
  size_t header_end = 0;
  if (torch_) {
    // No header to hash: the names, dtypes and shapes stand in for it.
    for (const auto& [name, t] : tensors_) {
      XXH3_64bits_update(state, name.data(), name.size() + 1);
      XXH3_64bits_update(state, t.dtype_name.data(), t.dtype_name.size() + 1);
      XXH3_64bits_update(state, t.shape.data(), t.shape.size() * sizeof(int64_t));
    }
  } else {
    uint64_t header_len = 0;
    for (int i = 7; i >= 0 && size >= 8; --i) header_len = (header_len << 8) | file_.data()[i];
    header_end = static_cast<size_t>(std::min<uint64_t>(8 + header_len, size));
    XXH3_64bits_update(state, file_.data(), header_end);
  }
  constexpr size_t kSamples = 64, kSampleBytes = 4096;
  const size_t data_bytes = size - header_end;
  for (size_t i = 0; i < kSamples && data_bytes > 0; ++i) {
    const size_t at = header_end + data_bytes / kSamples * i;
    XXH3_64bits_update(state, file_.data() + at, std::min(kSampleBytes, size - at));
  }
  const uint64_t hash = XXH3_64bits_digest(state);
  XXH3_freeState(state);
  char hex[17];
  std::snprintf(hex, sizeof(hex), "%016llx", static_cast<unsigned long long>(hash));
  return hex;
}

Result<CheckpointFile> CheckpointFile::Open(const std::string& path) {
  ASSIGN_OR_RETURN(MappedFile mapped, MappedFile::Open(path));
  if (mapped.size() >= 4 && std::memcmp(mapped.data(), "PK\x03\x04", 4) == 0) {
    ASSIGN_OR_RETURN(auto tensors, ReadTorchCheckpoint(mapped));
    CheckpointFile file(std::move(mapped));
    file.tensors_ = std::move(tensors);
    file.torch_ = true;
    return file;
  }
  CheckpointFile file(std::move(mapped));
  const size_t size = file.file_.size();
  const uint8_t* base = file.file_.data();
  if (size < 8) {
    return Status::Corruption(path + ": file is " + std::to_string(size) +
                              " bytes, too short for a safetensors header");
  }
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | base[i];
  if (header_len > kMaxHeaderBytes || header_len > size - 8) {
    return Status::Corruption(path + ": header length " + std::to_string(header_len) + " does not fit in a file of " +
                              std::to_string(size) + " bytes (truncated or not safetensors)");
  }
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(base + 8, base + 8 + header_len);
  } catch (const nlohmann::json::exception& e) {
    return Status::Corruption(path + ": header is not valid JSON: " + e.what());
  }
  if (!header.is_object()) return Status::Corruption(path + ": header is not a JSON object");

  const uint8_t* data_begin = base + 8 + header_len;
  const uint64_t data_size = size - 8 - header_len;
  for (auto it = header.begin(); it != header.end(); ++it) {
    if (it.key() == "__metadata__") continue;
    const std::string& name = it.key();
    const nlohmann::json& entry = it.value();
    auto bad = [&](const std::string& why) { return Status::Corruption(path + ": tensor " + name + ": " + why); };
    if (!entry.is_object()) return bad("header entry is not an object");
    auto dtype_it = entry.find("dtype");
    auto shape_it = entry.find("shape");
    auto offsets_it = entry.find("data_offsets");
    if (dtype_it == entry.end() || !dtype_it->is_string()) return bad("missing or non-string dtype");
    if (shape_it == entry.end() || !shape_it->is_array()) return bad("missing or non-array shape");
    if (offsets_it == entry.end() || !offsets_it->is_array() || offsets_it->size() != 2) {
      return bad("data_offsets must be [begin, end]");
    }
    TensorInfo info;
    info.name = name;
    info.dtype_name = dtype_it->get<std::string>();
    const DTypeEntry* dtype = FindDType(info.dtype_name);
    if (dtype == nullptr) return bad("unknown dtype " + info.dtype_name);
    info.dtype = dtype->dtype;
    uint64_t numel = 1;
    for (const nlohmann::json& dim : *shape_it) {
      if (!dim.is_number_unsigned()) return bad("shape has a negative or non-integer dimension");
      const uint64_t d = dim.get<uint64_t>();
      if (d != 0 && numel > std::numeric_limits<uint32_t>::max() / d) return bad("shape is absurdly large");
      numel *= d;
      info.shape.push_back(static_cast<int64_t>(d));
    }
    const nlohmann::json& b = (*offsets_it)[0];
    const nlohmann::json& e = (*offsets_it)[1];
    if (!b.is_number_unsigned() || !e.is_number_unsigned()) return bad("data_offsets are not unsigned integers");
    const uint64_t begin = b.get<uint64_t>();
    const uint64_t end = e.get<uint64_t>();
    if (begin > end || end > data_size) {
      return bad("bytes [" + std::to_string(begin) + ", " + std::to_string(end) + ") lie outside the " +
                 std::to_string(data_size) + " data bytes (file truncated?)");
    }
    if (end - begin != numel * dtype->size) {
      return bad("holds " + std::to_string(end - begin) + " bytes but shape and dtype need " +
                 std::to_string(numel * dtype->size));
    }
    info.data = data_begin + begin;
    info.n_bytes = end - begin;
    file.tensors_.emplace(name, std::move(info));
  }
  return file;
}

}  // namespace imgsearch::model
