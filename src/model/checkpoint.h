// A model's weights file, memory-mapped, with its tensors by name. Two formats:
//   safetensors (model.safetensors): an 8-byte little-endian header length, a JSON header naming
//     each tensor's dtype, shape and byte range, then the raw tensor bytes;
//   torch.save's zip (pytorch_model.bin), read without running its pickle (torch_checkpoint.h).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "base/file.h"
#include "imgsearch/status.h"

namespace imgsearch::model {

enum class DType { kF32, kF16, kBF16, kOther };

const char* DTypeName(DType dtype);

struct TensorInfo {
  std::string name;
  DType dtype = DType::kOther;
  std::string dtype_name;  // as written in the header, e.g. "F32", "I64"
  std::vector<int64_t> shape;
  const uint8_t* data = nullptr;  // into the mapping
  size_t n_bytes = 0;

  int64_t numel() const;
};

class CheckpointFile {
 public:
  // Maps and validates the file, whichever format its first bytes say: dtypes, byte ranges inside
  // the file and matching shapes.
  static Result<CheckpointFile> Open(const std::string& path);

  const std::string& path() const { return file_.path(); }
  size_t file_size() const { return file_.size(); }
  const std::map<std::string, TensorInfo>& tensors() const { return tensors_; }
  const TensorInfo* Find(const std::string& name) const;

  // A 64-bit hex fingerprint of the weights: the tensor table (safetensors: its header), the file
  // size and 64 evenly spaced 4 KiB samples of the data. Cheap (no full read of a 600 MB file) and different for any
  // retrained or converted checkpoint.
  std::string Fingerprint() const;

  // Drops the mapped pages wholly inside [p, p + n_bytes) from memory (they are read again if used).
  void Release(const void* p, size_t n_bytes) const { file_.Release(p, n_bytes); }

 private:
  explicit CheckpointFile(MappedFile file) : file_(std::move(file)) {}

  MappedFile file_;
  std::map<std::string, TensorInfo> tensors_;
  bool torch_ = false;  // a torch.save zip, not safetensors
};

}  // namespace imgsearch::model
