// Reader for PyTorch checkpoints written by torch.save (PyTorch >= 1.6), e.g. pytorch_model.bin,
// without Python and without running the pickle inside.
//
// The format: a zip archive whose entries all sit in one folder (`archive/`, or the stem of the
// file name torch.save was given), stored uncompressed, each entry's data aligned to 64 bytes by
// an "FB" padding extra field (caffe2/serialize/inline_container.cc, written with miniz):
//   <folder>/data.pkl          a pickle (protocol 2 by default) of the saved object
//   <folder>/data/<key>        the raw little-endian bytes of each storage
//   <folder>/byteorder         "little" (PyTorch >= 2.1); also <folder>/version,
//                              .data/serialization_id, .format_version, .storage_alignment (2.7), ...
// miniz writes sizes and CRCs into data descriptors after the data and the central directory,
// leaving them zero in the local headers, and always adds the ZIP64 end records. The tests write
// such files with tools/torch_zip_writer.h.
//
// A pickle is a program for a stack machine that may call any Python function it names. This
// reader interprets only the opcodes a state dict (a dict or OrderedDict of name -> tensor) is
// made of, and only the globals such a pickle names (collections.OrderedDict,
// torch._utils._rebuild_tensor_v2 / _rebuild_parameter and five storage types); any other opcode
// or global is refused, by name, when it is read. Nothing is ever called: the "calls" are
// recognised and turned into tensor descriptions. Every count, length and offset is bounded, so
// damaged or hostile input gives an error, never a crash, an unbounded allocation or a read
// outside the file.
#pragma once

#include <cstdint>
#include <map>
#include <span>
#include <string>

#include "base/file.h"
#include "imgsearch/status.h"
#include "model/checkpoint.h"

namespace imgsearch::model {

// The tensors of a torch.save zip checkpoint, by name, pointing into `file`'s mapping (torch
// stores entries uncompressed). Only contiguous tensors of dtype float32, float16 and bfloat16
// (dtype_name "F32", "F16", "BF16") and int64, int32 (DType::kOther, "I64", "I32") are accepted;
// `data` is the storage entry's bytes from storage offset x element size, `n_bytes` is numel x
// element size. The top-level object must be a dict of name -> tensor.
Result<std::map<std::string, TensorInfo>> ReadTorchCheckpoint(const MappedFile& file);

// The same over bytes in memory (which must outlive the result); `label` names them in errors.
Result<std::map<std::string, TensorInfo>> ReadTorchCheckpoint(std::span<const uint8_t> bytes, const std::string& label);

}  // namespace imgsearch::model
