// torch.save checkpoints read without Python. There is no torch here, so the tests write the files
// themselves, byte for byte as torch.save does (tools/torch_zip_writer.h: the zip as miniz lays it
// out for PyTorchStreamWriter, the pickle with the opcode sequence Python's pickler emits for a
// state dict). Then they damage them on purpose.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>
#include <map>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "model/torch_checkpoint.h"
#include "test_util.h"
#include "torch_zip_writer.h"

namespace imgsearch::model {
namespace {

using tools::Le;
using tools::Pickler;
using tools::TensorSpec;
using tools::WriteZip;
using tools::ZipEntry;
using tools::ZipOptions;

const TensorSpec kWeight{"FloatStorage", "0", 6, 0, {2, 3}, {3, 1}};  // arange(6).reshape(2, 3)
const TensorSpec kBias{"HalfStorage", "1", 3, 0, {3}, {1}};
const TensorSpec kRow{"FloatStorage", "0", 6, 3, {3}, {1}};  // weight[1]: shares storage 0

// torch.save(model.state_dict()): _metadata names the model ("") and its module a.
std::string StateDictPickle(const std::vector<std::pair<std::string, TensorSpec>>& tensors) {
  return tools::StateDictPickle(tensors, std::vector<std::string>{"", "a"});
}

std::string DefaultPickle() { return StateDictPickle({{"a.weight", kWeight}, {"b.bias", kBias}, {"c.row", kRow}}); }

std::string FloatBytes(const std::vector<float>& v) {
  std::string s(v.size() * 4, '\0');
  std::memcpy(s.data(), v.data(), s.size());
  return s;
}

const std::string kStorage0 = FloatBytes({0, 1, 2, 3, 4, 5});
const std::string kStorage1 = Le(0x3C00, 2) + Le(0xC000, 2) + Le(0x3800, 2);  // 1, -2, 0.5 in binary16

std::vector<ZipEntry> CheckpointFiles(const std::string& pickle, const std::string& folder = "archive") {
  return tools::TorchSaveRecords(pickle, {{"0", kStorage0}, {"1", kStorage1}}, folder);
}

// The record of that name, to be damaged.
ZipEntry& Record(std::vector<ZipEntry>& files, const std::string& name) {
  for (ZipEntry& f : files) {
    if (f.name == name) return f;
  }
  throw std::invalid_argument("no record " + name);
}

std::string CheckpointZip(const std::string& pickle, const ZipOptions& opt = {}) {
  return WriteZip(CheckpointFiles(pickle), opt);
}

// Reads from an exactly sized heap copy, so AddressSanitizer flags any read past the end.
Result<std::map<std::string, TensorInfo>> ReadBytes(const std::string& bytes, std::vector<uint8_t>* keep) {
  keep->assign(bytes.begin(), bytes.end());
  return ReadTorchCheckpoint(std::span<const uint8_t>(keep->data(), keep->size()), "test.bin");
}

Status ReadStatus(const std::string& bytes) {
  std::vector<uint8_t> keep;
  auto r = ReadBytes(bytes, &keep);
  return r.ok() ? Status::Ok() : r.status();
}

void ExpectRefused(const std::string& zip, const std::string& needle) {
  const Status st = ReadStatus(zip);
  ASSERT_FALSE(st.ok()) << "should be refused: " << needle;
  EXPECT_NE(st.message().find(needle), std::string::npos) << st.ToString();
  EXPECT_NE(st.message().find("test.bin"), std::string::npos) << st.ToString();
}

void ExpectPickleRefused(const std::string& pickle, const std::string& needle) {
  SCOPED_TRACE(needle);
  ExpectRefused(CheckpointZip(pickle), needle);
}

std::vector<float> Floats(const TensorInfo& t) {
  std::vector<float> v(t.n_bytes / 4);
  std::memcpy(v.data(), t.data, t.n_bytes);
  return v;
}

// ---- reading ----

TEST(TorchCheckpoint, ReadsAStateDictAsTorchSaveWritesIt) {
  const std::string path = testing::MakeTempDir() + "/pytorch_model.bin";
  testing::WriteFile(path, WriteZip(CheckpointFiles(DefaultPickle(), "pytorch_model")));
  auto file = MappedFile::Open(path);
  ASSERT_TRUE(file.ok()) << file.status().ToString();
  auto tensors = ReadTorchCheckpoint(*file);
  ASSERT_TRUE(tensors.ok()) << tensors.status().ToString();
  ASSERT_EQ(tensors->size(), 3u);

  const TensorInfo& w = tensors->at("a.weight");
  EXPECT_EQ(w.name, "a.weight");
  EXPECT_EQ(w.dtype, DType::kF32);
  EXPECT_EQ(w.dtype_name, "F32");
  EXPECT_EQ(w.shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(w.n_bytes, 24u);
  EXPECT_EQ(Floats(w), (std::vector<float>{0, 1, 2, 3, 4, 5}));
  // Into the mapping, at the entry torch aligned to 64 bytes.
  EXPECT_GE(w.data, file->data());
  EXPECT_LE(w.data + w.n_bytes, file->data() + file->size());
  EXPECT_EQ((w.data - file->data()) % 64, 0);

  const TensorInfo& b = tensors->at("b.bias");
  EXPECT_EQ(b.dtype, DType::kF16);
  EXPECT_EQ(b.dtype_name, "F16");
  EXPECT_EQ(b.shape, (std::vector<int64_t>{3}));
  ASSERT_EQ(b.n_bytes, 6u);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(b.data), 6), kStorage1);

  // A view of the same storage, three elements in.
  const TensorInfo& row = tensors->at("c.row");
  EXPECT_EQ(row.dtype_name, "F32");
  EXPECT_EQ(row.shape, (std::vector<int64_t>{3}));
  EXPECT_EQ(row.data, w.data + 3 * 4);
  EXPECT_EQ(Floats(row), (std::vector<float>{3, 4, 5}));
}

TEST(TorchCheckpoint, ReadsZip64FieldsAndZipsWithoutZip64Records) {
  for (const ZipOptions& opt : {ZipOptions{true, true}, ZipOptions{false, false}, ZipOptions{false, true}}) {
    std::vector<uint8_t> keep;
    auto tensors = ReadBytes(CheckpointZip(DefaultPickle(), opt), &keep);
    ASSERT_TRUE(tensors.ok()) << tensors.status().ToString();
    ASSERT_EQ(tensors->size(), 3u);
    EXPECT_EQ(Floats(tensors->at("c.row")), (std::vector<float>{3, 4, 5}));
    const TensorInfo& bias = tensors->at("b.bias");
    EXPECT_EQ(std::string(reinterpret_cast<const char*>(bias.data), bias.n_bytes), kStorage1);
  }
}

TEST(TorchCheckpoint, ReadsProtocol4ADictOfParametersTiedWeightsAndIntegers) {
  // A plain dict (as transformers' shards are), pickled with protocol 4: FRAME, SHORT_BINUNICODE,
  // STACK_GLOBAL and MEMOIZE. "p" is an nn.Parameter; "tied" is the same tensor object as "p"
  // (tied weights), which the pickler writes as a memo reference.
  std::string ints64 = Le(static_cast<uint64_t>(-1), 8) + Le(uint64_t{1} << 40, 8);
  std::string ints32;
  for (int i = 0; i < 300; ++i) ints32 += Le(static_cast<uint32_t>(i * 7 - 5), 4);

  Pickler p(4);
  p.Op('}').Put().Op('(');
  p.Str("p").Global("torch._utils", "_rebuild_parameter").Op('(').Tensor(kBias).Op(0x88).EmptyOrderedDict();
  p.Op('t').Put().Op('R').Put("param");
  p.Str("tied");
  ASSERT_TRUE(p.Get("param"));
  p.Str("ids").Tensor({"LongStorage", "2", 2, 0, {2}, {1}});
  p.Str("table").Tensor({"IntStorage", "3", 300, 0, {3, 100}, {100, 1}});
  // A scalar and an empty tensor: sizes () and (0, 5).
  p.Str("scalar").Tensor({"FloatStorage", "0", 6, 5, {}, {}});
  p.Str("empty").Tensor({"FloatStorage", "0", 6, 6, {0, 5}, {5, 1}});
  p.Op('u');
  std::string body = p.Stop();
  // One frame after PROTO, holding the rest.
  const std::string pickle = body.substr(0, 2) + "\x95" + Le(body.size() - 2, 8) + body.substr(2);

  auto files = CheckpointFiles(pickle);
  files.push_back({"archive/data/2", ints64});
  files.push_back({"archive/data/3", ints32});
  std::vector<uint8_t> keep;
  auto tensors = ReadBytes(WriteZip(files), &keep);
  ASSERT_TRUE(tensors.ok()) << tensors.status().ToString();
  ASSERT_EQ(tensors->size(), 6u);
  EXPECT_EQ(tensors->at("p").dtype_name, "F16");
  EXPECT_EQ(tensors->at("tied").data, tensors->at("p").data);
  EXPECT_EQ(tensors->at("tied").shape, (std::vector<int64_t>{3}));

  const TensorInfo& ids = tensors->at("ids");
  EXPECT_EQ(ids.dtype, DType::kOther);
  EXPECT_EQ(ids.dtype_name, "I64");
  ASSERT_EQ(ids.n_bytes, 16u);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(ids.data), 16), ints64);

  const TensorInfo& table = tensors->at("table");
  EXPECT_EQ(table.dtype_name, "I32");
  EXPECT_EQ(table.shape, (std::vector<int64_t>{3, 100}));
  ASSERT_EQ(table.n_bytes, 1200u);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(table.data), 1200), ints32);

  EXPECT_TRUE(tensors->at("scalar").shape.empty());
  EXPECT_EQ(Floats(tensors->at("scalar")), std::vector<float>{5});
  EXPECT_EQ(tensors->at("empty").n_bytes, 0u);
}

TEST(TorchCheckpoint, ReadsLong1BinFloatAndMetadataWithFalseBits) {
  // LONG1 for the storage size (Python uses it beyond 32 bits; it decodes the same for any size),
  // a negative LONG1 and a BINFLOAT ignored in _metadata, and the 7th argument of
  // _rebuild_tensor_v2 (tensor metadata) with every bit false.
  Pickler p;
  p.EmptyOrderedDict().Str("w").Global("torch._utils", "_rebuild_tensor_v2").Op('(');
  p.Op('(').Str("storage").Global("torch", "FloatStorage").Str("0").Str("cpu").Op(0x8a).Op(1).Op(6).Op('t').Put();
  p.Op('Q').Int(0).IntTuple({6}).IntTuple({1}).Op(0x89).EmptyOrderedDict();
  p.Op('}').Put().Str("neg").Op(0x89).Op('s');
  p.Op('t').Put().Op('R').Put().Op('s');
  p.Op('}').Put().Str("_metadata").EmptyOrderedDict().Str("").Op('}').Put().Op('(');
  p.Str("version").Op(0x8a).Op(2).Raw(Le(0xFFFE, 2)).Str("lr").Op('G').Raw(std::string("\x3f\xe0\0\0\0\0\0\0", 8));
  p.Op('u').Op('s').Op('s').Op('b');
  std::vector<uint8_t> keep;
  auto tensors = ReadBytes(CheckpointZip(p.Stop()), &keep);
  ASSERT_TRUE(tensors.ok()) << tensors.status().ToString();
  EXPECT_EQ(Floats(tensors->at("w")), (std::vector<float>{0, 1, 2, 3, 4, 5}));
}

TEST(TorchCheckpoint, ReadsWhatWriteTorchStateDictWrites) {
  // The writer the tools use (make_test_model): F32, F16 and BF16 tensors, a scalar and an empty
  // one, as a module's state dict and as transformers' plain dict, whole or made one at a time.
  const std::string bf16 = Le(0x3F80, 2) + Le(0xC000, 2);  // 1, -2
  std::vector<tools::NamedTensor> tensors = {{"text.layers.0.fc.weight", "F32", {2, 3}, FloatBytes({0, 1, 2, 3, 4, 5})},
                                             {"text.layers.0.fc.bias", "F16", {3}, kStorage1},
                                             {"vision.proj", "BF16", {1, 2}, bf16},
                                             {"logit_scale", "F32", {}, FloatBytes({2.5f})},
                                             {"empty", "F16", {0, 4}, ""}};
  for (const bool module_state_dict : {true, false}) {
    SCOPED_TRACE(module_state_dict ? "state dict" : "plain dict");
    const std::string zip = tools::WriteTorchStateDict(tensors, {"pytorch_model", module_state_dict});
    std::vector<uint8_t> keep;
    auto read = ReadBytes(zip, &keep);
    ASSERT_TRUE(read.ok()) << read.status().ToString();
    ASSERT_EQ(read->size(), tensors.size());
    for (const tools::NamedTensor& t : tensors) {
      const TensorInfo& info = read->at(t.name);
      EXPECT_EQ(info.dtype_name, t.dtype) << t.name;
      EXPECT_EQ(info.shape, t.shape) << t.name;
      EXPECT_EQ(std::string(reinterpret_cast<const char*>(info.data), info.n_bytes), t.data) << t.name;
      EXPECT_EQ((info.data - keep.data()) % 64, 0) << t.name;
    }
    EXPECT_NE(zip.find("pytorch_model/data/4"), std::string::npos);

    std::vector<tools::NamedTensor> lazy = tensors;
    std::string order;
    for (tools::NamedTensor& t : lazy) {
      t.make_data = [&order, &t, data = t.data] {
        order += t.name + " ";
        return data;
      };
      t.data.clear();
    }
    std::string streamed;
    tools::WriteTorchStateDict(lazy, [&](std::string_view b) { streamed.append(b); },
                               {"pytorch_model", module_state_dict});
    EXPECT_EQ(streamed, zip);
    EXPECT_EQ(order, "text.layers.0.fc.weight text.layers.0.fc.bias vision.proj logit_scale empty ");
  }
  EXPECT_NE(tools::WriteTorchStateDict(tensors), tools::WriteTorchStateDict(tensors, {"archive", false}));
  tensors[0].data.pop_back();
  EXPECT_THROW(tools::WriteTorchStateDict(tensors), std::invalid_argument);
}

// ---- refusals ----

TEST(TorchCheckpoint, RefusesGlobalsOutsideTheAllowlistWhenTheyAreRead) {
  // The classic payload: os.system("...") via GLOBAL + REDUCE. Refused at the GLOBAL (offset 2),
  // before the REDUCE that would call it.
  Pickler p;
  p.Op('c').Raw("os\nsystem\n").Str("touch /tmp/pwned").Op(0x85).Op('R');
  const Status st = ReadStatus(CheckpointZip(p.Stop()));
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.code(), StatusCode::kUnsupported);
  EXPECT_NE(st.message().find("data.pkl offset 2: refuses pickle global os.system"), std::string::npos)
      << st.ToString();

  for (const auto& [module, name] : std::vector<std::pair<std::string, std::string>>{
           {"builtins", "eval"},
           {"posix", "system"},
           {"__builtin__", "getattr"},
           {"torch.storage", "_load_from_bytes"},
           {"torch", "DoubleStorage"},
           {"torch", "UntypedStorage"},
           {"torch._utils", "_rebuild_tensor"},
           {"torch._utils", "_rebuild_parameter_with_state"},
           {"collections", "defaultdict"},
       }) {
    Pickler g;
    g.Op('c').Raw(module + "\n" + name + "\n").Op(')').Op('R');
    ExpectPickleRefused(g.Stop(), "refuses pickle global " + module + "." + name);
    // The same names through STACK_GLOBAL (protocol 4).
    Pickler s(4);
    s.Str(module).Str(name).Op(0x93).Op(')').Op('R');
    ExpectPickleRefused(s.Stop(), "refuses pickle global " + module + "." + name);
  }
}

TEST(TorchCheckpoint, RefusesOpcodesOutsideTheSubset) {
  ExpectPickleRefused(Pickler().Raw("\xff").Stop(), "unknown pickle opcode 0xff");
  ExpectPickleRefused(Pickler().Op('i').Raw("os\nsystem\n").Stop(), "refuses pickle opcode INST (0x69)");
  for (const auto& [op, name] : std::vector<std::pair<uint8_t, std::string>>{{'o', "OBJ"},
                                                                             {0x81, "NEWOBJ"},
                                                                             {0x92, "NEWOBJ_EX"},
                                                                             {0x82, "EXT1"},
                                                                             {'P', "PERSID"},
                                                                             {'S', "STRING"},
                                                                             {'B', "BINBYTES"},
                                                                             {'2', "DUP"},
                                                                             {0x8f, "EMPTY_SET"},
                                                                             {0x97, "NEXT_BUFFER"}}) {
    ExpectPickleRefused(Pickler().Op('N').Op(op).Stop(), "refuses pickle opcode " + name);
  }
}

TEST(TorchCheckpoint, RefusesTensorsItCannotPointInto) {
  ExpectPickleRefused(StateDictPickle({{"t", {"FloatStorage", "0", 6, 0, {2, 3}, {1, 2}}}}),
                      "size (2, 3) with strides (1, 2) is not contiguous");
  ExpectPickleRefused(StateDictPickle({{"t", {"FloatStorage", "0", 6, 4, {3}, {1}}}}),
                      "tensor elements [4, 4 + 3) lie outside storage 0 of 6 elements");
  ExpectPickleRefused(StateDictPickle({{"t", {"FloatStorage", "0", 6, 0, {7}, {1}}}}), "lie outside storage 0");
  ExpectPickleRefused(StateDictPickle({{"t", {"FloatStorage", "0", 6, 7, {0}, {1}}}}), "lie outside storage 0");
  ExpectPickleRefused(StateDictPickle({{"t", {"FloatStorage", "0", 6, 0, {int64_t{1} << 62, 8}, {8, 1}}}}),
                      "tensor size overflows");
  ExpectPickleRefused(StateDictPickle({{"t", {"FloatStorage", "0", 6, 0, {-1}, {1}}}}), "not a natural number");
  // The persistent id's size must match the storage entry: 7 floats are not 24 bytes.
  ExpectPickleRefused(StateDictPickle({{"t", {"FloatStorage", "0", 7, 0, {7}, {1}}}}),
                      "storage 0 holds 24 bytes, not the 7 x 4");
  // A storage named twice with different types.
  ExpectPickleRefused(StateDictPickle({{"a", kWeight}, {"b", {"IntStorage", "0", 6, 0, {6}, {1}}}}),
                      "storage 0 appears with two types or sizes");
  ExpectPickleRefused(StateDictPickle({{"t", {"FloatStorage", "9", 1, 0, {1}, {1}}}}),
                      "storage 9 has no zip entry archive/data/9");
}

TEST(TorchCheckpoint, RefusesBrokenZips) {
  const std::string zip = CheckpointZip(DefaultPickle());
  ASSERT_TRUE(ReadStatus(zip).ok()) << ReadStatus(zip).ToString();

  ExpectRefused(zip.substr(0, zip.size() / 2), "no zip end of central directory record");
  ExpectRefused(zip.substr(0, zip.size() - 1), "no zip end of central directory record");
  ExpectRefused("", "not a torch.save checkpoint");
  ExpectRefused(std::string("\x80\x02\x8a\x0a", 4), "before PyTorch 1.6");

  // The central directory's offset past the end of the file, in the ZIP64 record and in a zip
  // with only the classic end record.
  std::string past = zip;
  const size_t record = past.size() - 22 - 20 - 56;
  past.replace(record + 48, 8, Le(uint64_t{1} << 40, 8));
  ExpectRefused(past, "central directory of");
  std::string classic = CheckpointZip(DefaultPickle(), {false, false});
  classic.replace(classic.size() - 6, 4, Le(0x7FFFFFF0, 4));
  ExpectRefused(classic, "lies outside the");
  // The ZIP64 locator pointing past its own record.
  std::string locator = zip;
  locator.replace(locator.size() - 22 - 20 + 8, 8, Le(locator.size(), 8));
  ExpectRefused(locator, "ZIP64 end of central directory record");

  // A compressed entry (a zip repacked by a zip tool): refused before its bytes are looked at.
  auto files = CheckpointFiles(DefaultPickle());
  Record(files, "archive/data.pkl").method = 8;
  ExpectRefused(WriteZip(files), "zip entry archive/data.pkl is compressed (method 8, deflate)");
  files = CheckpointFiles(DefaultPickle());
  Record(files, "archive/data/0").method = 8;
  ExpectRefused(WriteZip(files), "zip entry archive/data/0 is compressed");

  // No data.pkl, two of them, a TorchScript archive, a big-endian one.
  files = CheckpointFiles(DefaultPickle());
  Record(files, "archive/data.pkl").name = "archive/data.pickle";
  ExpectRefused(WriteZip(files), "no <folder>/data.pkl");
  files = CheckpointFiles(DefaultPickle());
  files.push_back({"other/data.pkl", DefaultPickle()});
  ExpectRefused(WriteZip(files), "two pickles");
  files = CheckpointFiles(DefaultPickle());
  files.push_back({"archive/constants.pkl", Pickler().Op(')').Stop()});
  ExpectRefused(WriteZip(files), "TorchScript");
  files = CheckpointFiles(DefaultPickle());
  Record(files, "archive/byteorder").data = "big";
  ExpectRefused(WriteZip(files), "not little-endian");

  // An entry whose local header offset points into another entry's data.
  std::string moved = WriteZip({{"archive/data.pkl", DefaultPickle()}}, {false, false});
  const size_t central = moved.size() - 22 - (46 + 16);
  moved.replace(central + 42, 4, Le(100, 4));
  ExpectRefused(moved, "no local header at offset 100");
}

TEST(TorchCheckpoint, BoundsWhatAPickleCanMakeItDo) {
  // 2^21 + 1 NONEs: past the value budget, refused before the stack grows further.
  Pickler flood;
  flood.Raw(std::string((size_t{1} << 21) + 1, 'N'));
  const Status st = ReadStatus(CheckpointZip(flood.Stop()));
  EXPECT_EQ(st.code(), StatusCode::kResourceExhausted) << st.ToString();
  EXPECT_NE(st.message().find("more than 2097152 values"), std::string::npos) << st.ToString();

  // A long argument tuple, which a memo reference could hand to REDUCE again and again: refused
  // before it is copied.
  Pickler args;
  args.Global("torch._utils", "_rebuild_tensor_v2").Op('(');
  for (int i = 0; i < 8; ++i) args.Op('N');
  ExpectPickleRefused(args.Op('t').Op('R').Stop(), "REDUCE with 8 arguments");

  // A refused name 100 kB long is shown cut short and with its control characters escaped.
  Pickler name(4);
  name.Str("os\n" + std::string(100000, 'x')).Str("system").Op(0x93);
  const Status long_name = ReadStatus(CheckpointZip(name.Stop()));
  EXPECT_NE(long_name.message().find("refuses pickle global os\\x0axxx"), std::string::npos) << long_name.ToString();
  EXPECT_LT(long_name.message().size(), 1000u);
}

TEST(TorchCheckpoint, RefusesMalformedPickles) {
  // A string length far past the end of data.pkl, and one just past it.
  ExpectPickleRefused(Pickler().Op('X').Raw(Le(0x7FFFFFF0, 4) + "abc").Stop(),
                      "BINUNICODE string of 2147483632 bytes is longer than");
  ExpectPickleRefused(Pickler().Op('X').Raw(Le(100, 4) + "abc").Stop(), "BINUNICODE needs 100 bytes");
  ExpectPickleRefused(Pickler().Op(0x8d).Raw(Le(uint64_t{1} << 62, 8)).Stop(), "BINUNICODE8 string of");
  ExpectPickleRefused(Pickler().Op('h').Op(5).Stop(), "BINGET of memo slot 5, never set");
  ExpectPickleRefused(Pickler().Op('j').Raw(Le(0xFFFFFFFF, 4)).Stop(), "LONG_BINGET of memo slot 4294967295");
  ExpectPickleRefused(Pickler().Raw(std::string(1000, '(')).Stop(), "MARKs nest deeper than 64");
  ExpectPickleRefused(Pickler().Op(']').Stop(), "data.pkl holds a list, not a dict");
  ExpectPickleRefused(Pickler().Op('K').Op(1).Stop(), "data.pkl holds an int, not a dict");
  ExpectPickleRefused(Pickler().Op('}').Str("epoch").Int(6).Op('s').Stop(), "entry epoch is an int, not a tensor");
  ExpectPickleRefused(Pickler().Op('}').Int(1).Tensor(kWeight).Op('s').Stop(), "a state dict key is an int");
  ExpectPickleRefused(StateDictPickle({{"a.weight", kWeight}, {"a.weight", kRow}}), "tensor a.weight appears twice");
  // Stack discipline: nothing below a MARK is reachable, and every opcode checks what it pops.
  ExpectPickleRefused(Pickler().Op('R').Stop(), "REDUCE on an empty stack");
  ExpectPickleRefused(Pickler().Op('}').Op('(').Op('N').Op('N').Op('s').Stop(), "SETITEM on nothing");
  ExpectPickleRefused(Pickler().Op(')').Op('N').Op('N').Op('s').Stop(), "SETITEM on a tuple, not a dict");
  ExpectPickleRefused(Pickler().Op(']').Op('(').Op('N').Op('u').Stop(), "SETITEMS with an odd number");
  ExpectPickleRefused(Pickler().Op('}').Op('N').Op('a').Stop(), "APPEND on a dict, not a list");
  ExpectPickleRefused(Pickler().Op('t').Stop(), "TUPLE without a MARK");
  ExpectPickleRefused(Pickler().Op('N').Op(0x87).Stop(), "TUPLE3 with fewer values");
  ExpectPickleRefused(Pickler().Op('q').Op(0).Stop(), "BINPUT on an empty stack");
  ExpectPickleRefused(Pickler().Op('}').Op('}').Stop(), "STOP leaves 2 values");
  ExpectPickleRefused(Pickler().Op('}').Op('(').Stop(), "STOP leaves 1 values and 1 MARKs");
  ExpectPickleRefused(Pickler().Op('}').bytes(), "data.pkl ends without STOP");
  ExpectPickleRefused(Pickler().Op(0x80).Op(6).Stop(), "pickle protocol 6");
  ExpectPickleRefused(Pickler().Op(0x8a).Op(9).Raw(std::string(9, '\1')).Stop(), "LONG1 of 9 bytes");
  ExpectPickleRefused(Pickler().Op(0x95).Raw(Le(1000, 8)).Stop(), "FRAME of 1000 bytes runs past the end");
  ExpectPickleRefused(Pickler().Op('c').Raw(std::string(300, 'a')).Stop(), "GLOBAL name has no newline");
  ExpectPickleRefused(Pickler(4).Int(1).Str("x").Op(0x93).Stop(), "STACK_GLOBAL of non-strings");

  // Calls that are allowed by name but not with these arguments.
  ExpectPickleRefused(Pickler().Global("collections", "OrderedDict").Op('N').Op(0x85).Op('R').Stop(),
                      "OrderedDict called with arguments");
  ExpectPickleRefused(Pickler().Global("torch", "FloatStorage").Op(')').Op('R').Stop(),
                      "storages may only appear in persistent ids");
  ExpectPickleRefused(Pickler().Op('N').Op(')').Op('R').Stop(), "REDUCE calls None, not an allowed global");
  ExpectPickleRefused(Pickler().Global("torch._utils", "_rebuild_tensor_v2").Op('N').Op('R').Stop(),
                      "REDUCE arguments are None, not a tuple");
  ExpectPickleRefused(Pickler().Global("torch._utils", "_rebuild_tensor_v2").Op(')').Op('R').Stop(),
                      "_rebuild_tensor_v2 takes 6 or 7 arguments, not 0");
  ExpectPickleRefused(
      Pickler().Global("torch._utils", "_rebuild_parameter").Op('N').Op('N').Op('N').Op(0x87).Op('R').Stop(),
      "_rebuild_parameter arguments are not");
  ExpectPickleRefused(Pickler().Op('(').Str("module").Op('N').Op('N').Op('N').Op('N').Op('t').Op('Q').Stop(),
                      "persistent id of a kind other than 'storage'");
  ExpectPickleRefused(Pickler().Op('N').Op('Q').Stop(), "persistent id is None");
  ExpectPickleRefused(Pickler()
                          .Op('(')
                          .Str("storage")
                          .Global("torch", "FloatStorage")
                          .Str(std::string(300, '7'))
                          .Str("cpu")
                          .Int(6)
                          .Op('t')
                          .Op('Q')
                          .Stop(),
                      "storage key of 300 bytes");

  // Backward hooks, a set negative bit, BUILD of anything but _metadata.
  {
    Pickler p;
    p.Op('}').Str("t").Global("torch._utils", "_rebuild_tensor_v2").Op('(');
    p.Op('(').Str("storage").Global("torch", "FloatStorage").Str("0").Str("cpu").Int(6).Op('t').Op('Q');
    p.Int(0).IntTuple({6}).IntTuple({1}).Op(0x89).EmptyOrderedDict().Int(1).Int(2).Op('s');
    ExpectPickleRefused(p.Op('t').Op('R').Op('s').Stop(), "a tensor carries backward hooks");
  }
  {
    Pickler p;
    p.Op('}').Str("t").Global("torch._utils", "_rebuild_tensor_v2").Op('(');
    p.Op('(').Str("storage").Global("torch", "FloatStorage").Str("0").Str("cpu").Int(6).Op('t').Op('Q');
    p.Int(0).IntTuple({6}).IntTuple({1}).Op(0x89).EmptyOrderedDict().Op('}').Str("neg").Op(0x88).Op('s');
    ExpectPickleRefused(p.Op('t').Op('R').Op('s').Stop(), "conjugate or negative bit");
  }
  ExpectPickleRefused(Pickler().EmptyOrderedDict().Op('}').Str("__class__").Op('N').Op('s').Op('b').Stop(),
                      "BUILD sets attribute __class__ on an OrderedDict");
  ExpectPickleRefused(Pickler()
                          .EmptyOrderedDict()
                          .Op('}')
                          .Op('(')
                          .Str("_metadata")
                          .Op('N')
                          .Str("_metadata")
                          .Op('N')
                          .Op('u')
                          .Op('b')
                          .Stop(),
                      "BUILD sets several attributes");
  ExpectPickleRefused(Pickler().Op('}').Op('}').Op('b').Stop(), "BUILD on a dict");
  ExpectPickleRefused(Pickler().EmptyOrderedDict().Op(']').Op('b').Stop(), "BUILD with a list");
}

// ---- damage ----

size_t ElementSize(const TensorInfo& t) {
  if (t.dtype_name == "F16" || t.dtype_name == "BF16") return 2;
  return t.dtype_name == "I64" ? 8 : 4;
}

// Whatever damaged input gives, tensors read from it lie inside it.
void ExpectInside(const std::map<std::string, TensorInfo>& tensors, const std::vector<uint8_t>& bytes) {
  for (const auto& [name, t] : tensors) {
    ASSERT_TRUE(t.dtype_name == "F32" || t.dtype_name == "F16" || t.dtype_name == "BF16" || t.dtype_name == "I64" ||
                t.dtype_name == "I32")
        << t.dtype_name;
    ASSERT_EQ(t.n_bytes, static_cast<size_t>(t.numel()) * ElementSize(t)) << name;
    ASSERT_GE(t.data, bytes.data()) << name;
    ASSERT_LE(t.data + t.n_bytes, bytes.data() + bytes.size()) << name;
  }
}

// Truncations, flipped bits and bytes, random edits: each gives an error or tensors inside the file,
// never a crash, a hang or a read out of bounds (this binary runs under ASan and UBSan, and each
// input is an exactly sized heap copy).
TEST(TorchCheckpoint, DamagedFilesGiveErrorsNeverCrashes) {
  const std::string pickle = DefaultPickle();
  const std::string zip = CheckpointZip(pickle);
  size_t read = 0, refused = 0;
  auto run = [&](const std::string& bytes) {
    std::vector<uint8_t> keep;
    auto r = ReadBytes(bytes, &keep);
    if (r.ok()) {
      ++read;
      ExpectInside(*r, keep);
    } else {
      ++refused;
      ASSERT_NE(r.status().message().find("test.bin: "), std::string::npos) << r.status().ToString();
    }
  };

  for (size_t n = 0; n < zip.size(); ++n) run(zip.substr(0, n));
  for (size_t i = 0; i < zip.size(); ++i) {
    for (uint8_t mask : {0x01, 0x02, 0x10, 0x80, 0xFF}) {
      std::string b = zip;
      b[i] = static_cast<char>(b[i] ^ mask);
      run(b);
    }
  }
  // The pickle alone, zipped again so the damage reaches the unpickler: every byte replaced by
  // random values, then random edits (overwrite, insert, delete, repeat a slice) of several bytes.
  std::mt19937 rng(20240607);
  for (size_t i = 0; i < pickle.size(); ++i) {
    for (int k = 0; k < 24; ++k) {
      std::string p = pickle;
      p[i] = static_cast<char>(rng());
      run(CheckpointZip(p));
    }
  }
  for (int iter = 0; iter < 3000; ++iter) {
    std::string p = pickle;
    const int edits = 1 + static_cast<int>(rng() % 4);
    for (int e = 0; e < edits && !p.empty(); ++e) {
      const size_t at = rng() % p.size();
      switch (rng() % 4) {
        case 0: p[at] = static_cast<char>(rng()); break;
        case 1: p.insert(at, 1, static_cast<char>(rng())); break;
        case 2: p.erase(at, 1 + rng() % 8); break;
        case 3: p.insert(at, p.substr(rng() % p.size(), 1 + rng() % 32)); break;
      }
    }
    run(CheckpointZip(p));
  }
  EXPECT_GT(read, 0u);
  EXPECT_GT(refused, 0u);
  std::printf("damaged inputs: %zu read, %zu refused\n", read, refused);
}

}  // namespace
}  // namespace imgsearch::model
