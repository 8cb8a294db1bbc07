// Writes PyTorch checkpoints (pytorch_model.bin) for tests and tools, byte for byte as torch.save
// writes them: there is no torch here (no Debian package, no Python), and a reader of hostile files
// is best tested against files laid out exactly as the real ones, then damaged.
//
// torch.save (PyTorch >= 1.6) writes a zip through PyTorchStreamWriter, which uses miniz:
//   - every entry stored (no compression) in one folder, "archive" or the stem of the file name;
//   - each entry's data aligned to 64 bytes by an "FB" extra field of 'Z' padding
//     (caffe2/serialize/inline_container.cc, getPadding);
//   - CRC and sizes in a data descriptor after the data, zeros in the local header; UTF-8 names;
//     no modification times (miniz is built without them);
//   - the ZIP64 end records always (MZ_ZIP_FLAG_WRITE_ZIP64), even for a small file.
// Its data.pkl is the object pickled with protocol 2 by Python's pickler, the storages replaced by
// persistent ids; its storages follow, one entry each. (StateDictPickle's bytes were checked against
// CPython 3.11's pickler run on stand-ins for torch's tensor, storage and persistent_id: identical,
// for 1,201 tensors, with and without _metadata.)
//
//   std::string bin = WriteTorchStateDict({{"fc.weight", "F32", {2, 3}, six_floats}}, {.archive = "pytorch_model"});
//
// The lower-level pieces (WriteZip, Pickler, StateDictPickle, TorchSaveRecords) are here too, for
// tests that craft what torch.save would never write.
#pragma once

#include <zlib.h>

#include <algorithm>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace imgsearch::tools {

inline void PutLe(std::string& out, uint64_t v, int n) {
  for (int i = 0; i < n; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
}

inline std::string Le(uint64_t v, int n) {
  std::string s;
  PutLe(s, v, n);
  return s;
}

// ---- a zip as miniz writes it for torch ----

struct ZipEntry {
  std::string name;
  std::string data;
  uint16_t method = 0;  // 0 stored; 8 claims deflate (the data is left as is: a damaged file for tests)
  // When set, the data is made by this, as the entry is written, instead of taken from `data`: a
  // model's storages need not all be in memory at once.
  std::function<std::string()> make_data;
};

struct ZipOptions {
  bool zip64_end_records = true;  // miniz always writes them for torch
  bool zip64_extra = false;       // sizes and offset in the central directory's ZIP64 extra field, as past 4 GiB
};

// Receives the file's bytes in order.
using ByteSink = std::function<void(std::string_view)>;

// Writes the entries in order. Past 4 GiB (of the file, or of an entry) miniz adds ZIP64 fields to
// the local headers and data descriptors, which this writer does not do: it throws instead.
inline void WriteZip(const std::vector<ZipEntry>& files, const ByteSink& sink, const ZipOptions& opt = {}) {
  uint64_t offset = 0;
  auto put = [&](const std::string& bytes) {
    sink(bytes);
    offset += bytes.size();
  };
  std::string central;
  for (const ZipEntry& f : files) {
    const std::string made = f.make_data ? f.make_data() : std::string();
    const std::string& data = f.make_data ? made : f.data;
    if (offset >= 0xFFFFFFFF || data.size() >= 0xFFFFFFFF) {
      throw std::length_error("torch_zip_writer: " + f.name + " lies past 4 GiB, which needs ZIP64 fields");
    }
    const uint64_t local = offset;
    const auto crc = static_cast<uint32_t>(crc32_z(0, reinterpret_cast<const Bytef*>(data.data()), data.size()));
    // getPadding(): the "FB" field's 'Z's put the data on a 64-byte boundary.
    const uint64_t start = local + 30 + f.name.size() + 4;
    const uint64_t pad = (64 - start % 64) % 64;
    const std::string extra = "FB" + Le(pad, 2) + std::string(pad, 'Z');
    // UTF-8 names (bit 11); CRC and sizes in a data descriptor (bit 3), except for an empty entry.
    const uint16_t flags = data.empty() ? 0x0800 : 0x0808;
    const uint16_t version = f.method ? 20 : 0;
    put(Le(0x04034b50, 4) + Le(version, 2) + Le(flags, 2) + Le(f.method, 2) + Le(0, 4) + Le(0, 4) + Le(0, 4) +
        Le(0, 4) + Le(f.name.size(), 2) + Le(extra.size(), 2) + f.name + extra);
    sink(data);
    offset += data.size();
    if (!data.empty()) put(Le(0x08074b50, 4) + Le(crc, 4) + Le(data.size(), 4) + Le(data.size(), 4));

    std::string central_extra;
    uint64_t central_size = data.size(), central_offset = local;
    if (opt.zip64_extra) {
      central_extra = Le(1, 2) + Le(24, 2) + Le(data.size(), 8) + Le(data.size(), 8) + Le(local, 8);
      central_size = central_offset = 0xFFFFFFFF;
    }
    central += Le(0x02014b50, 4) + Le(0, 2) + Le(version, 2) + Le(flags, 2) + Le(f.method, 2) + Le(0, 4) + Le(crc, 4) +
               Le(central_size, 4) + Le(central_size, 4) + Le(f.name.size(), 2) + Le(central_extra.size(), 2) +
               Le(0, 2) + Le(0, 2) + Le(0, 2) + Le(0, 4) + Le(central_offset, 4) + f.name + central_extra;
  }
  const uint64_t dir_offset = offset;
  put(central);
  if (opt.zip64_end_records) {
    const uint64_t record = offset;
    put(Le(0x06064b50, 4) + Le(44, 8) + Le(0x031E, 2) + Le(0x2D, 2) + Le(0, 4) + Le(0, 4) + Le(files.size(), 8) +
        Le(files.size(), 8) + Le(central.size(), 8) + Le(dir_offset, 8));
    put(Le(0x07064b50, 4) + Le(0, 4) + Le(record, 8) + Le(1, 4));
  }
  put(Le(0x06054b50, 4) + Le(0, 2) + Le(0, 2) + Le(files.size(), 2) + Le(files.size(), 2) + Le(central.size(), 4) +
      Le(dir_offset, 4) + Le(0, 2));
}

inline std::string WriteZip(const std::vector<ZipEntry>& files, const ZipOptions& opt = {}) {
  std::string out;
  WriteZip(
      files, [&](std::string_view bytes) { out.append(bytes); }, opt);
  return out;
}

// ---- a pickle as Python's pickler writes it ----

// A tensor as torch pickles it: a view of `size` and `stride` into a storage, `offset` elements in.
struct TensorSpec {
  std::string storage_type;  // "FloatStorage", "HalfStorage", "BFloat16Storage", ...
  std::string key;           // the storage's entry: <folder>/data/<key>
  int64_t storage_numel;
  int64_t offset;
  std::vector<int64_t> size, stride;
};

class Pickler {
 public:
  explicit Pickler(int protocol = 2) : protocol_(protocol) { Op(0x80).Op(static_cast<uint8_t>(protocol)); }

  Pickler& Op(uint8_t op) {
    out_.push_back(static_cast<char>(op));
    return *this;
  }
  Pickler& Raw(const std::string& bytes) {
    out_ += bytes;
    return *this;
  }
  // Memoization as the pickler does it: an object seen before comes back with BINGET; a new
  // string, global, tuple or container is stored with BINPUT (MEMOIZE from protocol 4 on). Python
  // memoizes by identity, this by value: the same bytes for a state dict, whose repeated strings
  // ('storage', 'cpu', 'version') are each one object and whose other strings all differ.
  Pickler& Put(const std::string& key = "") {
    const size_t index = next_memo_++;
    if (!key.empty()) memo_[key] = index;
    if (protocol_ >= 4) return Op(0x94);
    return index < 256 ? Op('q').Op(static_cast<uint8_t>(index)) : Op('r').Raw(Le(index, 4));
  }
  bool Get(const std::string& key) {
    auto it = memo_.find(key);
    if (it == memo_.end()) return false;
    if (it->second < 256) {
      Op('h').Op(static_cast<uint8_t>(it->second));
    } else {
      Op('j').Raw(Le(it->second, 4));
    }
    return true;
  }
  Pickler& Str(const std::string& s) {
    if (Get("str:" + s)) return *this;
    if (protocol_ >= 4 && s.size() < 256) {
      Op(0x8c).Op(static_cast<uint8_t>(s.size()));
    } else {
      Op('X').Raw(Le(s.size(), 4));
    }
    return Raw(s).Put("str:" + s);
  }
  Pickler& Global(const std::string& module, const std::string& name) {
    if (Get("global:" + module + "." + name)) return *this;
    if (protocol_ >= 4) {
      Str(module).Str(name).Op(0x93);
    } else {
      Op('c').Raw(module + "\n" + name + "\n");
    }
    return Put("global:" + module + "." + name);
  }
  // BININT1, BININT2, BININT, else LONG1 with as few bytes as hold the value and its sign
  // (pickle.encode_long).
  Pickler& Int(int64_t v) {
    if (v >= 0 && v < 256) return Op('K').Op(static_cast<uint8_t>(v));
    if (v >= 0 && v < 65536) return Op('M').Raw(Le(static_cast<uint64_t>(v), 2));
    if (v >= INT32_MIN && v <= INT32_MAX) return Op('J').Raw(Le(static_cast<uint32_t>(v), 4));
    int n = 8;
    while (n > 1 && (v >> (8 * (n - 1) - 1)) == (v >> 63)) --n;
    return Op(0x8a).Op(static_cast<uint8_t>(n)).Raw(Le(static_cast<uint64_t>(v), n));
  }
  Pickler& IntTuple(const std::vector<int64_t>& v) {
    if (v.empty()) return Op(')');  // the empty tuple is not memoized
    if (v.size() > 3) Op('(');
    for (int64_t x : v) Int(x);
    return Op(v.size() > 3 ? 't' : static_cast<uint8_t>(0x84 + v.size())).Put();
  }
  Pickler& EmptyOrderedDict() { return Global("collections", "OrderedDict").Op(')').Op('R').Put(); }

  // A tensor as Tensor.__reduce_ex__ has it pickled: _rebuild_tensor_v2(storage, offset, size,
  // stride, requires_grad, OrderedDict()), the storage a persistent id ('storage', type, key,
  // 'cpu', numel).
  Pickler& Tensor(const TensorSpec& t, const std::string& memo_key = "") {
    Global("torch._utils", "_rebuild_tensor_v2").Op('(');
    Op('(').Str("storage").Global("torch", t.storage_type).Str(t.key).Str("cpu").Int(t.storage_numel);
    Op('t').Put().Op('Q');
    Int(t.offset).IntTuple(t.size).IntTuple(t.stride).Op(0x89).EmptyOrderedDict();
    return Op('t').Put().Op('R').Put(memo_key);
  }

  // A dict's items, `save` pickling the key and value of item i, in batches of 1000 as the pickler
  // writes them: MARK ... SETITEMS, or SETITEM for a batch of one.
  Pickler& SetItems(size_t n, const std::function<void(size_t)>& save) {
    for (size_t begin = 0; begin < n; begin += 1000) {
      const size_t end = std::min(n, begin + 1000);
      if (end - begin > 1) Op('(');
      for (size_t i = begin; i < end; ++i) save(i);
      Op(end - begin > 1 ? 'u' : 's');
    }
    return *this;
  }

  std::string Stop() {
    Op('.');
    return out_;
  }
  const std::string& bytes() const { return out_; }

 private:
  int protocol_;
  std::string out_;
  std::map<std::string, size_t> memo_;
  size_t next_memo_ = 0;
};

// The modules a model with these tensors has, as module.state_dict() lists them in its _metadata:
// "" (the model itself), then every prefix of a tensor name, in the order a walk of the module
// tree meets them when the tensors are in the model's order.
inline std::vector<std::string> ModulesOf(const std::vector<std::string>& tensor_names) {
  std::vector<std::string> modules = {""};
  std::set<std::string> seen = {""};
  for (const std::string& name : tensor_names) {
    for (size_t dot = name.find('.'); dot != std::string::npos; dot = name.find('.', dot + 1)) {
      if (seen.insert(name.substr(0, dot)).second) modules.push_back(name.substr(0, dot));
    }
  }
  return modules;
}

// data.pkl for a dict of name -> tensor. With `metadata_modules`, the OrderedDict that
// module.state_dict() returns: its items, then BUILD restoring its _metadata attribute, an
// OrderedDict of {'version': 1} per module. Without, a plain dict, as transformers' save_pretrained
// saves each shard.
inline std::string StateDictPickle(const std::vector<std::pair<std::string, TensorSpec>>& tensors,
                                   const std::optional<std::vector<std::string>>& metadata_modules) {
  Pickler p;
  if (metadata_modules) {
    p.EmptyOrderedDict();
  } else {
    p.Op('}').Put();
  }
  p.SetItems(tensors.size(), [&](size_t i) { p.Str(tensors[i].first).Tensor(tensors[i].second); });
  if (metadata_modules) {
    const std::vector<std::string>& modules = *metadata_modules;
    p.Op('}').Put().Str("_metadata").EmptyOrderedDict();
    p.SetItems(modules.size(), [&](size_t i) { p.Str(modules[i]).Op('}').Put().Str("version").Int(1).Op('s'); });
    p.Op('s').Op('b');
  }
  return p.Stop();
}

// ---- torch.save ----

// The records torch.save writes, in its order (PyTorch >= 2.7): the pickle, .format_version (1:
// storages in the order the pickle names them) and .storage_alignment, the byte order, each
// storage (`storages`, named by key), then, as the archive is closed, the file format version and
// a serialization id. (PyTorch 2.1 to 2.6 wrote no .format_version or .storage_alignment and
// sorted the storages as strings: 0, 1, 10, 100, 11, ...; the reader takes either.) torch derives
// the 40-digit serialization id from the records' names and CRCs; nothing reads it, and here it is
// a fixed one.
inline std::vector<ZipEntry> TorchSaveRecords(std::string pickle, std::vector<ZipEntry> storages,
                                              const std::string& archive = "archive") {
  std::vector<ZipEntry> records = {{archive + "/data.pkl", std::move(pickle)},
                                   {archive + "/.format_version", "1"},
                                   {archive + "/.storage_alignment", "64"},
                                   {archive + "/byteorder", "little"}};
  for (ZipEntry& s : storages) {
    s.name = archive + "/data/" + s.name;
    records.push_back(std::move(s));
  }
  records.push_back({archive + "/version", "3\n"});
  records.push_back({archive + "/.data/serialization_id", "0000000000000000000000000000000000000000"});
  return records;
}

struct NamedTensor {
  std::string name;
  std::string dtype;  // "F32", "F16" or "BF16"
  std::vector<int64_t> shape;
  std::string data;  // the elements, little-endian, row-major
  // When set, makes the data instead, when the tensor's storage is written (in the tensors' order).
  std::function<std::string()> make_data;
};

struct TorchSaveOptions {
  // torch.save names the zip's folder after the file's stem ("pytorch_model" for
  // pytorch_model.bin), or "archive" when it writes to a buffer.
  std::string archive = "archive";
  // An OrderedDict with _metadata, as module.state_dict() returns (true), or a plain dict, as
  // transformers' save_pretrained saves (false).
  bool module_state_dict = true;
};

// torch.save(state_dict)'s records: each tensor contiguous in a storage of its own, keyed "0",
// "1", ... in order.
inline std::vector<ZipEntry> TorchStateDictRecords(const std::vector<NamedTensor>& tensors,
                                                   const TorchSaveOptions& options = {}) {
  std::vector<std::pair<std::string, TensorSpec>> specs;
  std::vector<ZipEntry> storages;
  std::vector<std::string> names;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const NamedTensor& t = tensors[i];
    const bool f32 = t.dtype == "F32";
    if (!f32 && t.dtype != "F16" && t.dtype != "BF16") {
      throw std::invalid_argument("torch_zip_writer: " + t.name + " has dtype " + t.dtype + ", not F32, F16 or BF16");
    }
    // Contiguous strides, as torch computes them (a dimension of 0 counts as 1).
    std::vector<int64_t> stride(t.shape.size());
    int64_t numel = 1, step = 1;
    for (size_t d = t.shape.size(); d-- > 0;) {
      stride[d] = step;
      step *= std::max<int64_t>(t.shape[d], 1);
      numel *= t.shape[d];
    }
    const std::string key = std::to_string(i);
    specs.push_back({t.name,
                     {f32                ? "FloatStorage"
                      : t.dtype == "F16" ? "HalfStorage"
                                         : "BFloat16Storage",
                      key, numel, 0, t.shape, stride}});
    names.push_back(t.name);
    const size_t n_bytes = static_cast<size_t>(numel) * (f32 ? 4 : 2);
    auto checked = [name = t.name, n_bytes](std::string data) {
      if (data.size() != n_bytes) {
        throw std::invalid_argument("torch_zip_writer: " + name + " has " + std::to_string(data.size()) +
                                    " bytes of data, not " + std::to_string(n_bytes));
      }
      return data;
    };
    if (t.make_data) {
      storages.push_back({key, "", 0, [checked, make = t.make_data] { return checked(make()); }});
    } else {
      storages.push_back({key, checked(t.data)});
    }
  }
  std::optional<std::vector<std::string>> modules;
  if (options.module_state_dict) modules = ModulesOf(names);
  return TorchSaveRecords(StateDictPickle(specs, modules), std::move(storages), options.archive);
}

inline void WriteTorchStateDict(const std::vector<NamedTensor>& tensors, const ByteSink& sink,
                                const TorchSaveOptions& options = {}) {
  WriteZip(TorchStateDictRecords(tensors, options), sink);
}

inline std::string WriteTorchStateDict(const std::vector<NamedTensor>& tensors, const TorchSaveOptions& options = {}) {
  return WriteZip(TorchStateDictRecords(tensors, options));
}

}  // namespace imgsearch::tools
