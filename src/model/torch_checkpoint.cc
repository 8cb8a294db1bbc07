#include "model/torch_checkpoint.h"

#include <bit>
#include <cstdio>
#include <cstring>
#include <functional>
#include <limits>
#include <optional>
#include <string_view>
#include <variant>
#include <vector>

namespace imgsearch::model {

namespace {

// ---- limits: far above what any state dict needs, low enough that hostile input stays cheap ----

constexpr uint64_t kMaxZipEntries = uint64_t{1} << 20;
constexpr uint64_t kMaxPickleBytes = uint64_t{64} << 20;
// A budget charged for every value pushed on the pickle stack, memo store, object made and tensor
// dimension (a state dict spends about 40 per tensor). Every stack slot, container element, memo
// entry and object is paid for, so the budget bounds memory (to about 150 MB) and, since no
// opcode does more than a bounded amount of work, time.
constexpr size_t kMaxValues = size_t{1} << 21;
constexpr size_t kMaxMarkDepth = 64;  // a state dict nests 3 deep
constexpr uint64_t kMaxStringBytes = uint64_t{1} << 20;
constexpr size_t kMaxGlobalPartBytes = 256;
constexpr size_t kMaxStorageKeyBytes = 256;  // torch's keys are "0", "1", ...
constexpr size_t kMaxDims = 32;
constexpr size_t kMaxTensors = size_t{1} << 17;

// A name from the file, for an error message: at most 100 bytes, control characters escaped.
std::string Shown(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size() && i < 100; ++i) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (c < 0x20 || c == 0x7f) {
      char hex[8];
      std::snprintf(hex, sizeof(hex), "\\x%02x", c);
      out += hex;
    } else {
      out += static_cast<char>(c);
    }
  }
  if (s.size() > 100) out += "...";
  return out;
}

uint16_t Le16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }
uint32_t Le32(const uint8_t* p) {
  return uint32_t{p[0]} | (uint32_t{p[1]} << 8) | (uint32_t{p[2]} << 16) | (uint32_t{p[3]} << 24);
}
uint64_t Le64(const uint8_t* p) { return uint64_t{Le32(p)} | (uint64_t{Le32(p + 4)} << 32); }

// ---- zip ----

constexpr uint32_t kLocalHeaderSig = 0x04034b50;
constexpr uint32_t kCentralHeaderSig = 0x02014b50;
constexpr uint32_t kEndSig = 0x06054b50;
constexpr uint32_t kZip64EndSig = 0x06064b50;
constexpr uint32_t kZip64LocatorSig = 0x07064b50;
constexpr size_t kLocalHeaderSize = 30;
constexpr size_t kCentralHeaderSize = 46;
constexpr size_t kEndSize = 22;
constexpr size_t kZip64LocatorSize = 20;
constexpr size_t kZip64EndSize = 56;
constexpr uint16_t kZip64ExtraId = 0x0001;

struct ZipEntry {
  uint16_t flags = 0;
  uint16_t method = 0;
  uint64_t compressed_size = 0;
  uint64_t size = 0;
  uint64_t local_header = 0;
};

// The central directory of a zip held in memory. Sizes and offsets come from the central
// directory (torch's local headers carry zeros and a data descriptor instead).
class ZipReader {
 public:
  static Result<ZipReader> Open(std::span<const uint8_t> bytes);

  const std::map<std::string, ZipEntry>& entries() const { return entries_; }
  bool Has(const std::string& name) const { return entries_.count(name) != 0; }
  // The bytes of a stored (uncompressed) entry, inside the file and before the central directory.
  Result<std::span<const uint8_t>> Read(const std::string& name) const;

 private:
  explicit ZipReader(std::span<const uint8_t> bytes) : bytes_(bytes) {}
  Status ReadCentralDirectory(uint64_t offset, uint64_t size, uint64_t count);

  std::span<const uint8_t> bytes_;
  uint64_t directory_offset_ = 0;
  std::map<std::string, ZipEntry> entries_;
};

Result<ZipReader> ZipReader::Open(std::span<const uint8_t> bytes) {
  const uint8_t* b = bytes.data();
  const size_t n = bytes.size();
  if (n < 4 || Le32(b) != kLocalHeaderSig) {
    // torch.load tells the formats apart the same way: a zip starts with a local header.
    if (n >= 2 && b[0] == 0x80 && b[1] <= 5) {
      return Status::Unsupported(
          "a bare pickle, not a zip: the format torch.save wrote before PyTorch 1.6 (or with "
          "_use_new_zipfile_serialization=False), which is not read");
    }
    return Status::Corruption("does not start with a zip local header: not a torch.save checkpoint");
  }
  if (n < kEndSize) return Status::Corruption("zip of " + std::to_string(n) + " bytes is truncated");

  // The end record is the last 22 bytes unless a comment (up to 64 KiB) follows it.
  size_t end = n;
  const size_t lowest = n - kEndSize > 0xFFFF ? n - kEndSize - 0xFFFF : 0;
  for (size_t pos = n - kEndSize + 1; pos-- > lowest;) {
    if (Le32(b + pos) == kEndSig && pos + kEndSize + Le16(b + pos + 20) <= n) {
      end = pos;
      break;
    }
  }
  if (end == n) return Status::Corruption("no zip end of central directory record (truncated file?)");

  ZipReader zip(bytes);
  uint64_t count = Le16(b + end + 10);
  uint64_t dir_size = Le32(b + end + 12);
  uint64_t dir_offset = Le32(b + end + 16);
  uint64_t dir_limit = end;  // the central directory ends before the end records
  // miniz (torch's zip writer) always writes the ZIP64 end record and its locator just before the
  // end record; their 64-bit counts and offsets are the ones to use.
  if (end >= kZip64LocatorSize && Le32(b + end - kZip64LocatorSize) == kZip64LocatorSig) {
    const uint64_t record = Le64(b + end - kZip64LocatorSize + 8);
    const uint64_t record_limit = end - kZip64LocatorSize;
    if (record > record_limit || record_limit - record < kZip64EndSize || Le32(b + record) != kZip64EndSig) {
      return Status::Corruption("ZIP64 end of central directory record at offset " + std::to_string(record) +
                                " is missing or lies outside the file");
    }
    count = Le64(b + record + 32);
    dir_size = Le64(b + record + 40);
    dir_offset = Le64(b + record + 48);
    dir_limit = record;
  }
  if (dir_offset > dir_limit || dir_size > dir_limit - dir_offset) {
    return Status::Corruption("central directory of " + std::to_string(dir_size) + " bytes at offset " +
                              std::to_string(dir_offset) + " lies outside the " + std::to_string(n) +
                              "-byte file (truncated?)");
  }
  if (count > kMaxZipEntries) {
    return Status::ResourceExhausted("zip lists " + std::to_string(count) + " entries, more than the " +
                                     std::to_string(kMaxZipEntries) + " read");
  }
  if (count > dir_size / kCentralHeaderSize) {
    return Status::Corruption("zip lists " + std::to_string(count) + " entries in a central directory of " +
                              std::to_string(dir_size) + " bytes");
  }
  RETURN_IF_ERROR(zip.ReadCentralDirectory(dir_offset, dir_size, count));
  return zip;
}

Status ZipReader::ReadCentralDirectory(uint64_t offset, uint64_t size, uint64_t count) {
  directory_offset_ = offset;
  const uint8_t* p = bytes_.data() + offset;
  const uint8_t* const limit = p + size;
  for (uint64_t i = 0; i < count; ++i) {
    auto bad = [&](const std::string& why) {
      return Status::Corruption("central directory entry " + std::to_string(i) + ": " + why);
    };
    if (static_cast<size_t>(limit - p) < kCentralHeaderSize || Le32(p) != kCentralHeaderSig) {
      return bad("missing or runs past the directory's end");
    }
    ZipEntry e;
    e.flags = Le16(p + 8);
    e.method = Le16(p + 10);
    e.compressed_size = Le32(p + 20);
    e.size = Le32(p + 24);
    const size_t name_len = Le16(p + 28), extra_len = Le16(p + 30), comment_len = Le16(p + 32);
    const uint16_t disk = Le16(p + 34);
    e.local_header = Le32(p + 42);
    if (static_cast<size_t>(limit - p) - kCentralHeaderSize < name_len + extra_len + comment_len) {
      return bad("its name and extra fields run past the directory's end");
    }
    std::string name(reinterpret_cast<const char*>(p + kCentralHeaderSize), name_len);
    // ZIP64 extended information: the 64-bit values of the fields saturated at 0xFFFFFFFF (0xFFFF
    // for the disk), in this order.
    const uint8_t* x = p + kCentralHeaderSize + name_len;
    const uint8_t* const x_end = x + extra_len;
    while (x_end - x >= 4) {
      const uint16_t id = Le16(x), len = Le16(x + 2);
      if (x_end - x - 4 < len) return bad(Shown(name) + ": extra field runs past its end");
      if (id == kZip64ExtraId) {
        const uint8_t* f = x + 4;
        const uint8_t* const f_end = f + len;
        for (uint64_t* field : {&e.size, &e.compressed_size, &e.local_header}) {
          if (*field != 0xFFFFFFFF) continue;
          if (f_end - f < 8) return bad(Shown(name) + ": ZIP64 extra field is too short");
          *field = Le64(f);
          f += 8;
        }
      }
      x += 4 + len;
    }
    if (disk != 0 && disk != 0xFFFF) return bad(Shown(name) + ": split over several disks");
    if (e.flags & 1) return Status::Unsupported("zip entry " + Shown(name) + " is encrypted");
    if (!entries_.emplace(name, e).second) return bad(Shown(name) + " is listed twice");
    p += kCentralHeaderSize + name_len + extra_len + comment_len;
  }
  return Status::Ok();
}

Result<std::span<const uint8_t>> ZipReader::Read(const std::string& name) const {
  auto it = entries_.find(name);
  if (it == entries_.end()) return Status::NotFound("zip has no entry " + Shown(name));
  const ZipEntry& e = it->second;
  auto bad = [&](const std::string& why) { return Status::Corruption("zip entry " + Shown(name) + ": " + why); };
  if (e.method != 0) {
    return Status::Unsupported("zip entry " + Shown(name) + " is compressed (method " + std::to_string(e.method) +
                               (e.method == 8 ? ", deflate" : "") +
                               "); torch.save stores entries uncompressed, so this file was repacked: save it "
                               "again with torch.save");
  }
  if (e.compressed_size != e.size) return bad("stored, yet its compressed and uncompressed sizes differ");
  const uint8_t* b = bytes_.data();
  // Entries' data precede the central directory.
  if (e.local_header > directory_offset_ || directory_offset_ - e.local_header < kLocalHeaderSize ||
      Le32(b + e.local_header) != kLocalHeaderSig) {
    return bad("no local header at offset " + std::to_string(e.local_header));
  }
  const uint8_t* local = b + e.local_header;
  const size_t name_len = Le16(local + 26), extra_len = Le16(local + 28);
  const uint64_t data = e.local_header + kLocalHeaderSize + name_len + extra_len;
  if (data > directory_offset_ || e.size > directory_offset_ - data) {
    return bad(std::to_string(e.size) + " bytes at offset " + std::to_string(data) +
               " run past the central directory (truncated?)");
  }
  if (name_len != name.size() || std::memcmp(local + kLocalHeaderSize, name.data(), name_len) != 0) {
    return bad("its local header names another file");
  }
  return bytes_.subspan(static_cast<size_t>(data), static_cast<size_t>(e.size));
}

// ---- pickle ----

// Opcode bytes (Python's Lib/pickle.py); names for the error messages of every one we refuse.
enum Op : uint8_t {
  kMark = '(',
  kStop = '.',
  kBinInt = 'J',
  kBinInt1 = 'K',
  kBinInt2 = 'M',
  kNone = 'N',
  kBinPersId = 'Q',
  kReduce = 'R',
  kBinUnicode = 'X',
  kAppend = 'a',
  kBuild = 'b',
  kGlobal = 'c',
  kEmptyDict = '}',
  kAppends = 'e',
  kBinGet = 'h',
  kLongBinGet = 'j',
  kEmptyList = ']',
  kBinPut = 'q',
  kLongBinPut = 'r',
  kSetItem = 's',
  kTuple = 't',
  kEmptyTuple = ')',
  kSetItems = 'u',
  kBinFloat = 'G',
  kProto = 0x80,
  kTuple1 = 0x85,
  kTuple2 = 0x86,
  kTuple3 = 0x87,
  kNewTrue = 0x88,
  kNewFalse = 0x89,
  kLong1 = 0x8a,
  kShortBinUnicode = 0x8c,
  kBinUnicode8 = 0x8d,
  kStackGlobal = 0x93,
  kMemoize = 0x94,
  kFrame = 0x95,
};

const char* OpName(uint8_t op) {
  switch (op) {
    case '(': return "MARK";
    case '.': return "STOP";
    case '0': return "POP";
    case '1': return "POP_MARK";
    case '2': return "DUP";
    case 'F': return "FLOAT";
    case 'I': return "INT";
    case 'J': return "BININT";
    case 'K': return "BININT1";
    case 'L': return "LONG";
    case 'M': return "BININT2";
    case 'N': return "NONE";
    case 'P': return "PERSID";
    case 'Q': return "BINPERSID";
    case 'R': return "REDUCE";
    case 'S': return "STRING";
    case 'T': return "BINSTRING";
    case 'U': return "SHORT_BINSTRING";
    case 'V': return "UNICODE";
    case 'X': return "BINUNICODE";
    case 'a': return "APPEND";
    case 'b': return "BUILD";
    case 'c': return "GLOBAL";
    case 'd': return "DICT";
    case '}': return "EMPTY_DICT";
    case 'e': return "APPENDS";
    case 'g': return "GET";
    case 'h': return "BINGET";
    case 'i': return "INST";
    case 'j': return "LONG_BINGET";
    case 'l': return "LIST";
    case ']': return "EMPTY_LIST";
    case 'o': return "OBJ";
    case 'p': return "PUT";
    case 'q': return "BINPUT";
    case 'r': return "LONG_BINPUT";
    case 's': return "SETITEM";
    case 't': return "TUPLE";
    case ')': return "EMPTY_TUPLE";
    case 'u': return "SETITEMS";
    case 'G': return "BINFLOAT";
    case 'B': return "BINBYTES";
    case 'C': return "SHORT_BINBYTES";
    case 0x80: return "PROTO";
    case 0x81: return "NEWOBJ";
    case 0x82: return "EXT1";
    case 0x83: return "EXT2";
    case 0x84: return "EXT4";
    case 0x85: return "TUPLE1";
    case 0x86: return "TUPLE2";
    case 0x87: return "TUPLE3";
    case 0x88: return "NEWTRUE";
    case 0x89: return "NEWFALSE";
    case 0x8a: return "LONG1";
    case 0x8b: return "LONG4";
    case 0x8c: return "SHORT_BINUNICODE";
    case 0x8d: return "BINUNICODE8";
    case 0x8e: return "BINBYTES8";
    case 0x8f: return "EMPTY_SET";
    case 0x90: return "ADDITEMS";
    case 0x91: return "FROZENSET";
    case 0x92: return "NEWOBJ_EX";
    case 0x93: return "STACK_GLOBAL";
    case 0x94: return "MEMOIZE";
    case 0x95: return "FRAME";
    case 0x96: return "BYTEARRAY8";
    case 0x97: return "NEXT_BUFFER";
    case 0x98: return "READONLY_BUFFER";
  }
  return nullptr;
}

struct StorageType {
  std::string_view global;  // in module torch
  const char* dtype_name;
  DType dtype;
  size_t element_size;
};

constexpr StorageType kStorageTypes[] = {
    {"FloatStorage", "F32", DType::kF32, 4},      {"HalfStorage", "F16", DType::kF16, 2},
    {"BFloat16Storage", "BF16", DType::kBF16, 2}, {"LongStorage", "I64", DType::kOther, 8},
    {"IntStorage", "I32", DType::kOther, 4},
};

// What an allowed global stands for; the unpickler interprets calls to these, it never runs them.
enum class Callable { kOrderedDict, kRebuildTensorV2, kRebuildParameter, kStorageType };

struct Global {
  Callable callable;
  const StorageType* storage = nullptr;  // for kStorageType
};

std::optional<Global> FindGlobal(std::string_view module, std::string_view name) {
  if (module == "collections" && name == "OrderedDict") return Global{Callable::kOrderedDict};
  if (module == "torch._utils" && name == "_rebuild_tensor_v2") return Global{Callable::kRebuildTensorV2};
  if (module == "torch._utils" && name == "_rebuild_parameter") return Global{Callable::kRebuildParameter};
  if (module == "torch") {
    for (const StorageType& t : kStorageTypes) {
      if (name == t.global) return Global{Callable::kStorageType, &t};
    }
  }
  return std::nullopt;
}

// A value on the pickle stack. Strings point into data.pkl; containers, globals, storages and
// tensors live in the unpickler's object table, so memo references share them as in Python.
struct None {};
struct ObjectRef {
  uint32_t index;
};
using Value = std::variant<None, bool, int64_t, double, std::string_view, ObjectRef>;

enum class ObjectKind : uint8_t { kTuple, kList, kDict, kOrderedDict, kGlobal, kStorage, kTensor };

struct Object {
  ObjectKind kind;
  std::vector<Value> items;  // tuple and list elements; dict keys and values, interleaved
  uint32_t ref = 0;          // kStorage: index in storages_, kTensor: index in tensors_
  Global global{};           // kGlobal
};

struct Storage {
  const StorageType* type;
  std::string_view key;
  uint64_t numel;
  std::span<const uint8_t> bytes;
};

struct Tensor {
  uint32_t storage;
  uint64_t offset;  // in elements
  uint64_t numel;
  std::vector<int64_t> shape;
};

// Finds the zip entry of storage `key` (`<folder>/data/<key>`).
using StorageLookup = std::function<Result<std::span<const uint8_t>>(std::string_view key)>;

class Unpickler {
 public:
  Unpickler(std::span<const uint8_t> pickle, StorageLookup lookup) : in_(pickle), lookup_(std::move(lookup)) {}

  // Runs to STOP and returns the name -> tensor pairs of the top-level dict.
  Result<std::vector<std::pair<std::string_view, const Tensor*>>> Run();
  const Storage& storage(uint32_t i) const { return storages_[i]; }

 private:
  Status Step(uint8_t op, bool* stop);
  Status Fail(StatusCode code, const std::string& why) const {
    return Status(code, "data.pkl offset " + std::to_string(op_offset_) + ": " + why);
  }
  Status Corrupt(const std::string& why) const { return Fail(StatusCode::kCorruption, why); }
  Status Refuse(const std::string& why) const { return Fail(StatusCode::kUnsupported, why); }
  std::string CurrentOp() const {
    const char* name = op_offset_ < in_.size() ? OpName(in_[op_offset_]) : nullptr;
    return name != nullptr ? name : "opcode";
  }

  Result<std::span<const uint8_t>> Take(uint64_t n);
  Result<uint64_t> TakeLe(size_t n);
  Result<std::string_view> TakeLine();
  Status Charge(size_t n);
  Status Push(Value v);
  Status NewObject(ObjectKind kind, std::vector<Value> items, Value* out);
  size_t FrameSize() const { return stack_.size() - (marks_.empty() ? 0 : marks_.back()); }
  Result<Value> Pop();
  Result<std::vector<Value>> PopMark();
  Status MemoPut(uint64_t index);
  Status PushGlobal(std::string_view module, std::string_view name);
  Status Reduce();
  Status Build();
  Status PersistentLoad();
  Status RebuildTensor(const std::vector<Value>& args, Value* out);

  const Object* AsObject(const Value& v, ObjectKind kind) const;
  const Object* AsDict(const Value& v) const;
  std::string KindName(const Value& v) const;

  std::span<const uint8_t> in_;
  StorageLookup lookup_;
  size_t pos_ = 0;
  size_t op_offset_ = 0;
  size_t values_ = 0;  // counted against kMaxValues
  std::vector<Value> stack_;
  std::vector<size_t> marks_;       // stack sizes at each open MARK
  std::map<uint32_t, Value> memo_;  // ordered, so no index can be made to collide
  std::vector<Object> objects_;
  std::vector<Storage> storages_;
  std::map<std::string_view, uint32_t> storage_by_key_;
  std::vector<Tensor> tensors_;
};

Result<std::span<const uint8_t>> Unpickler::Take(uint64_t n) {
  if (n > in_.size() - pos_) {
    return Corrupt(CurrentOp() + " needs " + std::to_string(n) + " bytes but data.pkl ends after " +
                   std::to_string(in_.size() - pos_));
  }
  auto out = in_.subspan(pos_, static_cast<size_t>(n));
  pos_ += static_cast<size_t>(n);
  return out;
}

Result<uint64_t> Unpickler::TakeLe(size_t n) {
  ASSIGN_OR_RETURN(auto bytes, Take(n));
  uint64_t v = 0;
  for (size_t i = n; i-- > 0;) v = (v << 8) | bytes[i];
  return v;
}

Result<std::string_view> Unpickler::TakeLine() {
  const size_t limit = std::min(in_.size() - pos_, kMaxGlobalPartBytes + 1);
  for (size_t i = 0; i < limit; ++i) {
    if (in_[pos_ + i] == '\n') {
      std::string_view line(reinterpret_cast<const char*>(in_.data() + pos_), i);
      pos_ += i + 1;
      return line;
    }
  }
  return Corrupt("GLOBAL name has no newline within " + std::to_string(kMaxGlobalPartBytes) + " bytes");
}

Status Unpickler::Charge(size_t n) {
  values_ += n;
  if (values_ > kMaxValues) {
    return Fail(StatusCode::kResourceExhausted,
                "more than " + std::to_string(kMaxValues) + " values: too large for a state dict");
  }
  return Status::Ok();
}

Status Unpickler::Push(Value v) {
  RETURN_IF_ERROR(Charge(1));
  stack_.push_back(v);
  return Status::Ok();
}

Status Unpickler::NewObject(ObjectKind kind, std::vector<Value> items, Value* out) {
  // `items` were charged when pushed.
  RETURN_IF_ERROR(Charge(1));
  objects_.push_back(Object{kind, std::move(items)});
  *out = ObjectRef{static_cast<uint32_t>(objects_.size() - 1)};
  return Status::Ok();
}

Result<Value> Unpickler::Pop() {
  // Like Python's unpickler, a MARK starts a fresh stack: what lies below it is out of reach.
  if (FrameSize() == 0) return Corrupt(CurrentOp() + " on an empty stack");
  Value v = stack_.back();
  stack_.pop_back();
  return v;
}

Result<std::vector<Value>> Unpickler::PopMark() {
  if (marks_.empty()) return Corrupt(CurrentOp() + " without a MARK");
  const size_t mark = marks_.back();
  marks_.pop_back();
  std::vector<Value> items(stack_.begin() + static_cast<std::ptrdiff_t>(mark), stack_.end());
  stack_.resize(mark);
  return items;
}

Status Unpickler::MemoPut(uint64_t index) {
  if (FrameSize() == 0) return Corrupt(CurrentOp() + " on an empty stack");
  if (index > std::numeric_limits<uint32_t>::max()) return Corrupt("memo index " + std::to_string(index));
  RETURN_IF_ERROR(Charge(1));
  memo_[static_cast<uint32_t>(index)] = stack_.back();
  return Status::Ok();
}

const Object* Unpickler::AsObject(const Value& v, ObjectKind kind) const {
  const ObjectRef* ref = std::get_if<ObjectRef>(&v);
  if (ref == nullptr || objects_[ref->index].kind != kind) return nullptr;
  return &objects_[ref->index];
}

const Object* Unpickler::AsDict(const Value& v) const {
  const Object* o = AsObject(v, ObjectKind::kDict);
  return o != nullptr ? o : AsObject(v, ObjectKind::kOrderedDict);
}

std::string Unpickler::KindName(const Value& v) const {
  struct Namer {
    const Unpickler* self;
    std::string operator()(None) const { return "None"; }
    std::string operator()(bool) const { return "a bool"; }
    std::string operator()(int64_t) const { return "an int"; }
    std::string operator()(double) const { return "a float"; }
    std::string operator()(std::string_view) const { return "a str"; }
    std::string operator()(ObjectRef r) const {
      switch (self->objects_[r.index].kind) {
        case ObjectKind::kTuple: return "a tuple";
        case ObjectKind::kList: return "a list";
        case ObjectKind::kDict: return "a dict";
        case ObjectKind::kOrderedDict: return "an OrderedDict";
        case ObjectKind::kGlobal: return "a global";
        case ObjectKind::kStorage: return "a storage";
        case ObjectKind::kTensor: return "a tensor";
      }
      return "an object";
    }
  };
  return std::visit(Namer{this}, v);
}

Status Unpickler::PushGlobal(std::string_view module, std::string_view name) {
  // Refused on sight, before anything could call it: this is the whole of the reader's safety.
  std::optional<Global> g = FindGlobal(module, name);
  if (!g) {
    return Refuse("refuses pickle global " + Shown(module) + "." + Shown(name) +
                  " (a state dict names only collections.OrderedDict, torch._utils._rebuild_tensor_v2, "
                  "torch._utils._rebuild_parameter and the torch Float/Half/BFloat16/Long/Int storages)");
  }
  Value v;
  RETURN_IF_ERROR(NewObject(ObjectKind::kGlobal, {}, &v));
  objects_.back().global = *g;
  return Push(v);
}

Status Unpickler::PersistentLoad() {
  // torch.save's persistent ids: ('storage', <storage type>, '<key>', '<location>', numel).
  ASSIGN_OR_RETURN(Value pid, Pop());
  const Object* t = AsObject(pid, ObjectKind::kTuple);
  if (t == nullptr || t->items.size() != 5) {
    return Refuse("persistent id is " + KindName(pid) + ", not a ('storage', type, key, location, numel) tuple");
  }
  const auto* tag = std::get_if<std::string_view>(&t->items[0]);
  const Object* type = AsObject(t->items[1], ObjectKind::kGlobal);
  const auto* key = std::get_if<std::string_view>(&t->items[2]);
  const auto* location = std::get_if<std::string_view>(&t->items[3]);
  const auto* numel = std::get_if<int64_t>(&t->items[4]);
  if (tag == nullptr || *tag != "storage") return Refuse("persistent id of a kind other than 'storage'");
  if (type == nullptr || type->global.callable != Callable::kStorageType || key == nullptr || location == nullptr ||
      numel == nullptr || *numel < 0) {
    return Corrupt("malformed storage persistent id");
  }
  if (key->empty() || key->size() > kMaxStorageKeyBytes) {
    return Corrupt("storage key of " + std::to_string(key->size()) + " bytes");
  }
  const StorageType* st = type->global.storage;
  uint32_t index = 0;
  if (auto it = storage_by_key_.find(*key); it != storage_by_key_.end()) {
    // Tensors sharing a storage name it again; torch.save refuses to mix dtypes on one storage.
    index = it->second;
    if (storages_[index].type != st || storages_[index].numel != static_cast<uint64_t>(*numel)) {
      return Corrupt("storage " + Shown(*key) + " appears with two types or sizes");
    }
  } else {
    ASSIGN_OR_RETURN(auto bytes, lookup_(*key));
    const uint64_t n = static_cast<uint64_t>(*numel);
    if (n > bytes.size() / st->element_size || n * st->element_size != bytes.size()) {
      return Corrupt("storage " + Shown(*key) + " holds " + std::to_string(bytes.size()) + " bytes, not the " +
                     std::to_string(n) + " x " + std::to_string(st->element_size) + " its persistent id says");
    }
    storages_.push_back(Storage{st, *key, n, bytes});
    index = static_cast<uint32_t>(storages_.size() - 1);
    storage_by_key_.emplace(*key, index);
  }
  Value v;
  RETURN_IF_ERROR(NewObject(ObjectKind::kStorage, {}, &v));
  objects_.back().ref = index;
  return Push(v);
}

// torch._utils._rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad,
// backward_hooks[, metadata]), checked rather than called.
Status Unpickler::RebuildTensor(const std::vector<Value>& args, Value* out) {
  if (args.size() != 6 && args.size() != 7) {
    return Corrupt("_rebuild_tensor_v2 takes 6 or 7 arguments, not " + std::to_string(args.size()));
  }
  const Object* storage_obj = AsObject(args[0], ObjectKind::kStorage);
  const auto* offset = std::get_if<int64_t>(&args[1]);
  const Object* size = AsObject(args[2], ObjectKind::kTuple);
  const Object* stride = AsObject(args[3], ObjectKind::kTuple);
  const Object* hooks = AsDict(args[5]);
  if (storage_obj == nullptr || offset == nullptr || *offset < 0 || size == nullptr || stride == nullptr ||
      !std::holds_alternative<bool>(args[4]) || hooks == nullptr) {
    return Corrupt("_rebuild_tensor_v2 arguments are not (storage, offset, size, stride, requires_grad, hooks)");
  }
  if (!hooks->items.empty()) return Refuse("a tensor carries backward hooks");
  if (args.size() == 7 && !std::holds_alternative<None>(args[6])) {
    // get_tensor_metadata: {'conj': bool, 'neg': bool} when a bit is set; a set bit would change
    // the values, so only all-false metadata is accepted.
    const Object* meta = AsDict(args[6]);
    if (meta == nullptr) return Corrupt("_rebuild_tensor_v2 metadata is " + KindName(args[6]) + ", not a dict");
    if (meta->items.size() > 8) return Refuse("tensor metadata with more than the conj and neg bits");
    for (size_t i = 1; i < meta->items.size(); i += 2) {
      const auto* bit = std::get_if<bool>(&meta->items[i]);
      if (bit == nullptr || *bit) return Refuse("a tensor with the conjugate or negative bit set");
    }
  }
  if (size->items.size() > kMaxDims || size->items.size() != stride->items.size()) {
    return Corrupt("tensor has " + std::to_string(size->items.size()) + " sizes and " +
                   std::to_string(stride->items.size()) + " strides");
  }
  RETURN_IF_ERROR(Charge(size->items.size()));  // the shape kept below
  Tensor t;
  t.storage = storage_obj->ref;
  t.offset = static_cast<uint64_t>(*offset);
  t.numel = 1;
  std::vector<int64_t> strides;
  for (size_t i = 0; i < size->items.size(); ++i) {
    const auto* d = std::get_if<int64_t>(&size->items[i]);
    const auto* s = std::get_if<int64_t>(&stride->items[i]);
    if (d == nullptr || s == nullptr || *d < 0) return Corrupt("tensor size or stride is not a natural number");
    const uint64_t du = static_cast<uint64_t>(*d);
    if (du != 0 && t.numel > std::numeric_limits<uint64_t>::max() / du) return Corrupt("tensor size overflows");
    t.numel *= du;
    t.shape.push_back(*d);
    strides.push_back(*s);
  }
  auto list = [](const std::vector<int64_t>& v) {
    std::string s = "(";
    for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + std::to_string(v[i]);
    return s + ")";
  };
  // Row-major, as torch's is_contiguous() sees it: dimensions of size 1 may have any stride, and
  // so may every dimension of an empty tensor. The product stays below numel, which fits.
  if (t.numel != 0) {
    uint64_t expected = 1;
    for (size_t i = t.shape.size(); i-- > 0;) {
      if (t.shape[i] != 1 && static_cast<uint64_t>(strides[i]) != expected) {
        return Refuse("a tensor of size " + list(t.shape) + " with strides " + list(strides) +
                      " is not contiguous; save t.contiguous() instead");
      }
      expected *= static_cast<uint64_t>(t.shape[i]);
    }
  }
  const Storage& st = storages_[t.storage];
  if (t.offset > st.numel || t.numel > st.numel - t.offset) {
    return Corrupt("tensor elements [" + std::to_string(t.offset) + ", " + std::to_string(t.offset) + " + " +
                   std::to_string(t.numel) + ") lie outside storage " + Shown(st.key) + " of " +
                   std::to_string(st.numel) + " elements");
  }
  tensors_.push_back(std::move(t));
  RETURN_IF_ERROR(NewObject(ObjectKind::kTensor, {}, out));
  objects_.back().ref = static_cast<uint32_t>(tensors_.size() - 1);
  return Status::Ok();
}

Status Unpickler::Reduce() {
  ASSIGN_OR_RETURN(Value args_value, Pop());
  if (FrameSize() == 0) return Corrupt("REDUCE without a callable");
  const Object* func = AsObject(stack_.back(), ObjectKind::kGlobal);
  const Object* args_obj = AsObject(args_value, ObjectKind::kTuple);
  if (func == nullptr) return Refuse("REDUCE calls " + KindName(stack_.back()) + ", not an allowed global");
  if (args_obj == nullptr) return Corrupt("REDUCE arguments are " + KindName(args_value) + ", not a tuple");
  // No allowed callable takes more than 7 arguments; checked before the copy, which a memo
  // reference to a long tuple would otherwise make expensive, again and again.
  if (args_obj->items.size() > 7) {
    return Corrupt("REDUCE with " + std::to_string(args_obj->items.size()) + " arguments");
  }
  const std::vector<Value> args = args_obj->items;  // copied: new objects may move the table
  Value result;
  switch (func->global.callable) {
    case Callable::kOrderedDict:
      if (!args.empty()) return Refuse("OrderedDict called with arguments");
      RETURN_IF_ERROR(NewObject(ObjectKind::kOrderedDict, {}, &result));
      break;
    case Callable::kRebuildTensorV2: RETURN_IF_ERROR(RebuildTensor(args, &result)); break;
    case Callable::kRebuildParameter:
      // _rebuild_parameter(data, requires_grad, backward_hooks): an nn.Parameter around a tensor.
      if (args.size() != 3 || AsObject(args[0], ObjectKind::kTensor) == nullptr ||
          !std::holds_alternative<bool>(args[1]) || AsDict(args[2]) == nullptr) {
        return Corrupt("_rebuild_parameter arguments are not (tensor, requires_grad, hooks)");
      }
      if (!AsDict(args[2])->items.empty()) return Refuse("a parameter carries backward hooks");
      result = args[0];
      break;
    case Callable::kStorageType:
      return Refuse("REDUCE calls torch." + std::string(func->global.storage->global) +
                    ": storages may only appear in persistent ids");
  }
  stack_.back() = result;
  return Status::Ok();
}

Status Unpickler::Build() {
  // A state dict is an OrderedDict with a `_metadata` attribute (module versions), which pickle
  // restores with BUILD; it is accepted and ignored, nothing else is.
  ASSIGN_OR_RETURN(Value state, Pop());
  if (FrameSize() == 0) return Corrupt("BUILD without an object");
  if (AsObject(stack_.back(), ObjectKind::kOrderedDict) == nullptr) {
    return Refuse("BUILD on " + KindName(stack_.back()) + ": only an OrderedDict's _metadata is accepted");
  }
  if (std::holds_alternative<None>(state)) return Status::Ok();
  const Object* attrs = AsObject(state, ObjectKind::kDict);
  if (attrs == nullptr) return Refuse("BUILD with " + KindName(state) + " as an OrderedDict's state");
  if (attrs->items.size() > 2) return Refuse("BUILD sets several attributes on an OrderedDict");
  for (size_t i = 0; i < attrs->items.size(); i += 2) {
    const auto* name = std::get_if<std::string_view>(&attrs->items[i]);
    if (name == nullptr || *name != "_metadata") {
      return Refuse("BUILD sets attribute " + (name ? Shown(*name) : KindName(attrs->items[i])) +
                    " on an OrderedDict: only _metadata is accepted");
    }
  }
  return Status::Ok();
}

Status Unpickler::Step(uint8_t op, bool* stop) {
  switch (op) {
    case kProto: {
      ASSIGN_OR_RETURN(uint64_t v, TakeLe(1));
      if (v > 5) return Refuse("pickle protocol " + std::to_string(v) + " (5 is the newest)");
      return Status::Ok();
    }
    case kFrame: {  // protocol 4 framing: a length hint for buffered readers, nothing to do
      ASSIGN_OR_RETURN(uint64_t n, TakeLe(8));
      if (n > in_.size() - pos_) return Corrupt("FRAME of " + std::to_string(n) + " bytes runs past the end");
      return Status::Ok();
    }
    case kStop:
      if (!marks_.empty() || stack_.size() != 1) {
        return Corrupt("STOP leaves " + std::to_string(stack_.size()) + " values and " + std::to_string(marks_.size()) +
                       " MARKs on the stack");
      }
      *stop = true;
      return Status::Ok();
    case kMark:
      if (marks_.size() >= kMaxMarkDepth) {
        return Fail(StatusCode::kResourceExhausted, "MARKs nest deeper than " + std::to_string(kMaxMarkDepth));
      }
      marks_.push_back(stack_.size());
      return Status::Ok();
    case kNone: return Push(None{});
    case kNewTrue: return Push(true);
    case kNewFalse: return Push(false);
    case kBinInt: {
      ASSIGN_OR_RETURN(uint64_t v, TakeLe(4));
      return Push(int64_t{static_cast<int32_t>(static_cast<uint32_t>(v))});
    }
    case kBinInt1: {
      ASSIGN_OR_RETURN(uint64_t v, TakeLe(1));
      return Push(static_cast<int64_t>(v));
    }
    case kBinInt2: {
      ASSIGN_OR_RETURN(uint64_t v, TakeLe(2));
      return Push(static_cast<int64_t>(v));
    }
    case kLong1: {  // n bytes of little-endian two's complement
      ASSIGN_OR_RETURN(uint64_t n, TakeLe(1));
      if (n > 8) return Refuse("LONG1 of " + std::to_string(n) + " bytes: an integer beyond 64 bits");
      ASSIGN_OR_RETURN(uint64_t v, TakeLe(static_cast<size_t>(n)));
      if (n > 0 && n < 8 && (v >> (8 * n - 1)) & 1) v |= ~uint64_t{0} << (8 * n);
      return Push(static_cast<int64_t>(v));
    }
    case kBinFloat: {  // big-endian IEEE double
      ASSIGN_OR_RETURN(auto b, Take(8));
      uint64_t bits = 0;
      for (uint8_t byte : b) bits = (bits << 8) | byte;
      return Push(std::bit_cast<double>(bits));
    }
    case kBinUnicode:
    case kShortBinUnicode:
    case kBinUnicode8: {
      const size_t width = op == kShortBinUnicode ? 1 : op == kBinUnicode ? 4 : 8;
      ASSIGN_OR_RETURN(uint64_t n, TakeLe(width));
      if (n > kMaxStringBytes) {
        return Fail(StatusCode::kResourceExhausted, std::string(OpName(op)) + " string of " + std::to_string(n) +
                                                        " bytes is longer than the " + std::to_string(kMaxStringBytes) +
                                                        " accepted");
      }
      ASSIGN_OR_RETURN(auto b, Take(n));
      return Push(std::string_view(reinterpret_cast<const char*>(b.data()), b.size()));
    }
    case kEmptyTuple:
    case kEmptyList:
    case kEmptyDict: {
      Value v;
      const ObjectKind kind = op == kEmptyTuple  ? ObjectKind::kTuple
                              : op == kEmptyList ? ObjectKind::kList
                                                 : ObjectKind::kDict;
      RETURN_IF_ERROR(NewObject(kind, {}, &v));
      return Push(v);
    }
    case kTuple: {
      ASSIGN_OR_RETURN(std::vector<Value> items, PopMark());
      Value v;
      RETURN_IF_ERROR(NewObject(ObjectKind::kTuple, std::move(items), &v));
      return Push(v);
    }
    case kTuple1:
    case kTuple2:
    case kTuple3: {
      const size_t n = op - kTuple1 + 1;
      if (FrameSize() < n) return Corrupt(std::string(OpName(op)) + " with fewer values on the stack");
      std::vector<Value> items(stack_.end() - static_cast<std::ptrdiff_t>(n), stack_.end());
      stack_.resize(stack_.size() - n);
      Value v;
      RETURN_IF_ERROR(NewObject(ObjectKind::kTuple, std::move(items), &v));
      return Push(v);
    }
    case kBinPut: {
      ASSIGN_OR_RETURN(uint64_t i, TakeLe(1));
      return MemoPut(i);
    }
    case kLongBinPut: {
      ASSIGN_OR_RETURN(uint64_t i, TakeLe(4));
      return MemoPut(i);
    }
    case kMemoize: return MemoPut(memo_.size());
    case kBinGet:
    case kLongBinGet: {
      ASSIGN_OR_RETURN(uint64_t i, TakeLe(op == kBinGet ? 1 : 4));
      auto it = memo_.find(i);
      if (it == memo_.end())
        return Corrupt(std::string(OpName(op)) + " of memo slot " + std::to_string(i) + ", never set");
      return Push(it->second);
    }
    case kSetItem:
    case kSetItems: {
      std::vector<Value> items;
      if (op == kSetItem) {
        ASSIGN_OR_RETURN(Value v, Pop());
        ASSIGN_OR_RETURN(Value k, Pop());
        items = {k, v};
      } else {
        ASSIGN_OR_RETURN(items, PopMark());
        if (items.size() % 2 != 0) return Corrupt("SETITEMS with an odd number of values");
      }
      const ObjectRef* target = FrameSize() ? std::get_if<ObjectRef>(&stack_.back()) : nullptr;
      if (target == nullptr || AsDict(stack_.back()) == nullptr) {
        return Corrupt(std::string(OpName(op)) + " on " + (FrameSize() ? KindName(stack_.back()) : "nothing") +
                       ", not a dict");
      }
      auto& dict = objects_[target->index].items;
      dict.insert(dict.end(), items.begin(), items.end());
      return Status::Ok();
    }
    case kAppend:
    case kAppends: {
      std::vector<Value> items;
      if (op == kAppend) {
        ASSIGN_OR_RETURN(Value v, Pop());
        items = {v};
      } else {
        ASSIGN_OR_RETURN(items, PopMark());
      }
      if (FrameSize() == 0 || AsObject(stack_.back(), ObjectKind::kList) == nullptr) {
        return Corrupt(std::string(OpName(op)) + " on " + (FrameSize() ? KindName(stack_.back()) : "nothing") +
                       ", not a list");
      }
      auto& list = objects_[std::get<ObjectRef>(stack_.back()).index].items;
      list.insert(list.end(), items.begin(), items.end());
      return Status::Ok();
    }
    case kGlobal: {
      ASSIGN_OR_RETURN(std::string_view module, TakeLine());
      ASSIGN_OR_RETURN(std::string_view name, TakeLine());
      return PushGlobal(module, name);
    }
    case kStackGlobal: {
      ASSIGN_OR_RETURN(Value name, Pop());
      ASSIGN_OR_RETURN(Value module, Pop());
      const auto* n = std::get_if<std::string_view>(&name);
      const auto* m = std::get_if<std::string_view>(&module);
      if (n == nullptr || m == nullptr) return Corrupt("STACK_GLOBAL of non-strings");
      return PushGlobal(*m, *n);
    }
    case kReduce: return Reduce();
    case kBuild: return Build();
    case kBinPersId: return PersistentLoad();
  }
  if (const char* name = OpName(op)) {
    char hex[8];
    std::snprintf(hex, sizeof(hex), "0x%02x", op);
    return Refuse("refuses pickle opcode " + std::string(name) + " (" + hex + "): not one a state dict is made of");
  }
  char hex[8];
  std::snprintf(hex, sizeof(hex), "0x%02x", op);
  return Corrupt("unknown pickle opcode " + std::string(hex));
}

Result<std::vector<std::pair<std::string_view, const Tensor*>>> Unpickler::Run() {
  bool stop = false;
  while (!stop) {
    if (pos_ >= in_.size()) {
      op_offset_ = pos_;
      return Corrupt("data.pkl ends without STOP");
    }
    op_offset_ = pos_;
    RETURN_IF_ERROR(Step(in_[pos_++], &stop));
  }
  const Value& top = stack_.back();
  const Object* dict = AsDict(top);
  if (dict == nullptr) {
    return Status::Unsupported("data.pkl holds " + KindName(top) + ", not a dict of name -> tensor (a state dict)");
  }
  if (dict->items.size() / 2 > kMaxTensors) {
    return Status::ResourceExhausted("data.pkl: a dict of " + std::to_string(dict->items.size() / 2) +
                                     " entries, more than the " + std::to_string(kMaxTensors) + " tensors read");
  }
  std::vector<std::pair<std::string_view, const Tensor*>> out;
  for (size_t i = 0; i < dict->items.size(); i += 2) {
    const auto* name = std::get_if<std::string_view>(&dict->items[i]);
    if (name == nullptr) return Status::Unsupported("data.pkl: a state dict key is " + KindName(dict->items[i]));
    const Object* tensor = AsObject(dict->items[i + 1], ObjectKind::kTensor);
    if (tensor == nullptr) {
      return Status::Unsupported("data.pkl: entry " + Shown(*name) + " is " + KindName(dict->items[i + 1]) +
                                 ", not a tensor");
    }
    out.emplace_back(*name, &tensors_[tensor->ref]);
  }
  return out;
}

Result<std::map<std::string, TensorInfo>> Read(std::span<const uint8_t> bytes) {
  ASSIGN_OR_RETURN(ZipReader zip, ZipReader::Open(bytes));

  // Every record sits in one folder, named after the file torch.save wrote (or "archive").
  std::string folder;
  for (const auto& [name, entry] : zip.entries()) {
    const size_t slash = name.find('/');
    if (slash == 0 || slash == std::string::npos || name.compare(slash, std::string::npos, "/data.pkl") != 0) {
      continue;
    }
    if (!folder.empty()) {
      return Status::Corruption("zip holds two pickles, " + Shown(folder) + "/data.pkl and " + Shown(name));
    }
    folder = name.substr(0, slash);
  }
  if (folder.empty()) return Status::Corruption("zip has no <folder>/data.pkl: not a torch.save checkpoint");
  if (zip.Has(folder + "/constants.pkl")) {
    return Status::Unsupported("a TorchScript archive (torch.jit.save), not a torch.save state dict");
  }
  if (zip.Has(folder + "/byteorder")) {
    ASSIGN_OR_RETURN(auto order, zip.Read(folder + "/byteorder"));
    if (std::string_view(reinterpret_cast<const char*>(order.data()), order.size()) != "little") {
      return Status::Unsupported("storages are not little-endian (byteorder record)");
    }
  }
  ASSIGN_OR_RETURN(auto pickle, zip.Read(folder + "/data.pkl"));
  if (pickle.size() > kMaxPickleBytes) {
    return Status::ResourceExhausted("data.pkl of " + std::to_string(pickle.size()) + " bytes is larger than the " +
                                     std::to_string(kMaxPickleBytes) + " read");
  }

  Unpickler unpickler(pickle, [&](std::string_view key) -> Result<std::span<const uint8_t>> {
    const std::string name = folder + "/data/" + std::string(key);
    if (!zip.Has(name)) return Status::Corruption("storage " + Shown(key) + " has no zip entry " + Shown(name));
    return zip.Read(name);
  });
  ASSIGN_OR_RETURN(auto pairs, unpickler.Run());

  std::map<std::string, TensorInfo> out;
  for (const auto& [name, tensor] : pairs) {
    const Storage& storage = unpickler.storage(tensor->storage);
    const size_t element = storage.type->element_size;
    TensorInfo info;
    info.name = std::string(name);
    info.dtype = storage.type->dtype;
    info.dtype_name = storage.type->dtype_name;
    info.shape = tensor->shape;
    // Checked against the storage when the tensor was rebuilt, so these stay inside its entry.
    info.data = storage.bytes.data() + tensor->offset * element;
    info.n_bytes = static_cast<size_t>(tensor->numel * element);
    if (!out.emplace(info.name, std::move(info)).second) {
      return Status::Corruption("data.pkl: tensor " + Shown(name) + " appears twice");
    }
  }
  return out;
}

}  // namespace

Result<std::map<std::string, TensorInfo>> ReadTorchCheckpoint(std::span<const uint8_t> bytes,
                                                              const std::string& label) {
  auto result = Read(bytes);
  if (!result.ok()) return result.status().WithContext(label);
  return result;
}

Result<std::map<std::string, TensorInfo>> ReadTorchCheckpoint(const MappedFile& file) {
  return ReadTorchCheckpoint(file.bytes(), file.path());
}

}  // namespace imgsearch::model
