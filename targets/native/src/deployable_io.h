// What tinyasr-run's deployable readers share, whatever the model family: files, the manifest's
// common fields and family (compile/deployable.py, compile/family.py), the machine check, the
// model library in the Relax VM, the weights file, and calls with weights appended.
//
// Every problem with the deployable is an InputError naming the file (one line, exit code 2).

#pragma once

#include <sys/auxv.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <tvm/ffi/extra/json.h>
#include <tvm/ffi/extra/module.h>
#include <tvm/ffi/function.h>
#include <tvm/runtime/tensor.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "wav.h"  // InputError

namespace tinyasr {

namespace ffi = tvm::ffi;
using ffi::Tensor;

// The deployable's files and format (compile/deployable.py, compile/family.py).
constexpr const char* kDeployableFormat = "tinyasr-deployable";
constexpr int64_t kDeployableVersion = 5;  // compile/deployable.py VERSION
constexpr const char* kManifestFile = "/manifest.json";
constexpr const char* kLibraryFile = "/model.so";
constexpr const char* kWeightsFile = "/weights.bin";
constexpr const char* kFamilySanM = "san-m";       // also a manifest without "family"
constexpr const char* kFamilyWhisper = "whisper";

// ----------------------------------------------------------------------------- files

inline bool IsFile(const std::string& path) {
  struct stat info;
  return stat(path.c_str(), &info) == 0 && S_ISREG(info.st_mode);
}

inline int64_t FileBytes(const std::string& path) {
  struct stat info;
  return stat(path.c_str(), &info) == 0 ? static_cast<int64_t>(info.st_size) : 0;
}

/*! \brief The whole file, or std::nullopt when it cannot be read. */
inline std::optional<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  std::ostringstream bytes;
  bytes << in.rdbuf();
  if (in.bad()) return std::nullopt;
  return bytes.str();
}

/*! \brief The parsed JSON file (tvm-ffi's parser), or std::nullopt when unreadable or invalid. */
inline std::optional<ffi::json::Value> ReadJSON(const std::string& path) {
  std::optional<std::string> text = ReadFile(path);
  if (!text) return std::nullopt;
  ffi::String error;
  ffi::json::Value value = ffi::json::Parse(*text, &error);
  if (!error.empty()) return std::nullopt;
  return value;
}

// ----------------------------------------------------------------------------- manifest

// Field access that throws ffi::Error when a field is missing or of the wrong type; the readers
// turn that into one InputError naming the manifest.
inline ffi::json::Object Field(const ffi::json::Object& object, const char* key) {
  return object.at(ffi::String(key)).cast<ffi::json::Object>();
}

inline int64_t IntField(const ffi::json::Object& object, const char* key) {
  return object.at(ffi::String(key)).cast<int64_t>();
}

/*! \brief A list field as a vector of T, each item read as JSON's `Item` (ffi::String for text). */
template <typename T, typename Item = T>
std::vector<T> ListField(const ffi::json::Object& object, const char* key) {
  std::vector<T> values;
  for (const ffi::Any& value : object.at(ffi::String(key)).cast<ffi::json::Array>()) {
    values.push_back(value.cast<Item>());
  }
  return values;
}

inline std::vector<int64_t> IntListField(const ffi::json::Object& object, const char* key) {
  return ListField<int64_t>(object, key);
}

inline std::vector<std::string> StringListField(const ffi::json::Object& object, const char* key) {
  return ListField<std::string, ffi::String>(object, key);
}

/*! \brief A number field, integer or not, as a double. */
inline double NumberField(const ffi::json::Object& object, const char* key) {
  const ffi::Any& value = object.at(ffi::String(key));
  if (auto integer = value.try_cast<int64_t>()) return static_cast<double>(*integer);
  return value.cast<double>();
}

/*! \brief The manifest's fields every family has. */
struct ManifestHeader {
  std::string dir;
  std::string path;     // dir + manifest.json
  std::string family;   // kFamilySanM or kFamilyWhisper (anything else is refused)
  std::string target;   // the board it was compiled for
  std::string arch;     // its uname machine
  std::vector<std::string> mattr;  // the LLVM target's attributes, e.g. "+v", "+dotprod"
  ffi::json::Object manifest;
};

/*! \brief The manifest of the deployable `dir`: its format, family, target and attributes. */
inline ManifestHeader ReadManifestHeader(const std::string& dir) {
  ManifestHeader header;
  header.dir = dir;
  header.path = dir + kManifestFile;
  if (!IsFile(header.path)) {
    throw InputError(dir + ": not a tinyasr deployable (no readable manifest.json)");
  }
  std::optional<ffi::json::Value> value = ReadJSON(header.path);
  auto manifest = value ? value->try_cast<ffi::json::Object>() : std::nullopt;
  if (!manifest || !manifest->count(ffi::String("format")) ||
      manifest->at(ffi::String("format")).try_cast<ffi::String>() != kDeployableFormat) {
    throw InputError(header.path + ": not a tinyasr deployable manifest");
  }
  header.manifest = *manifest;
  try {
    header.family = kFamilySanM;
    if (manifest->count(ffi::String("family"))) {
      header.family = manifest->at(ffi::String("family")).cast<ffi::String>();
    }
    int64_t version = manifest->at(ffi::String("version")).cast<int64_t>();
    if (version != kDeployableVersion) {
      throw InputError(header.path + ": deployable version " + std::to_string(version) +
                       ", this tinyasr-run reads version " + std::to_string(kDeployableVersion) +
                       ": compile it again");
    }
    header.target = manifest->at(ffi::String("target")).cast<ffi::String>();
    header.arch = manifest->at(ffi::String("arch")).cast<ffi::String>();
    ffi::json::Object llvm_target = Field(*manifest, "llvm_target");
    if (llvm_target.count(ffi::String("mattr"))) {
      header.mattr = StringListField(llvm_target, "mattr");
    }
  } catch (const ffi::Error& error) {
    throw InputError(header.path + ": not a tinyasr deployable manifest (" + error.message() + ")");
  }
  if (header.family != kFamilySanM && header.family != kFamilyWhisper) {
    throw InputError(header.path + ": model family \"" + header.family +
                     "\", this tinyasr-run runs san-m and whisper");
  }
  return header;
}

/*!
 * \brief The weight keys of the manifest's function `name`, after checking it takes the runtime
 *        inputs we pass.
 */
inline std::vector<std::string> FunctionWeights(const ManifestHeader& header, const char* name,
                                                const std::vector<std::string>& inputs) {
  ffi::json::Object function = Field(Field(header.manifest, "functions"), name);
  if (StringListField(function, "inputs") != inputs) {
    throw InputError(header.path + ": function " + name +
                     " takes inputs this tinyasr-run does not know");
  }
  return StringListField(function, "weights");
}

// ----------------------------------------------------------------------------- machine

/*!
 * \brief The instruction-set extensions in `mattr` (the manifest's LLVM target attributes) that
 *  code for this machine may use and that this CPU lacks, from the kernel's AT_HWCAP: a
 *  deployable for a richer board then stops with one line instead of dying on SIGILL.
 */
inline std::vector<std::string> MissingFeatures(const std::vector<std::string>& mattr) {
  std::vector<std::string> missing;
  [[maybe_unused]] const unsigned long hwcap = getauxval(AT_HWCAP);
  for ([[maybe_unused]] const std::string& feature : mattr) {  // none checked on x86-64
#if defined(__riscv)
    if (feature == "+v" && !(hwcap & (1UL << ('V' - 'A')))) missing.push_back("v (RVV 1.0)");
#elif defined(__aarch64__)
    constexpr unsigned long kDotProduct = 1UL << 20;  // HWCAP_ASIMDDP
    if (feature == "+dotprod" && !(hwcap & kDotProduct)) missing.push_back("dotprod");
#endif
  }
  return missing;
}

/*! \brief Refuses a deployable built for another architecture or for missing extensions. */
inline void CheckMachine(const ManifestHeader& header) {
  utsname machine;
  if (uname(&machine) == 0 && header.arch != machine.machine) {
    throw InputError(header.dir + ": built for " + header.target + " (" + header.arch +
                     "); this machine is " + machine.machine);
  }
  std::vector<std::string> missing = MissingFeatures(header.mattr);
  if (!missing.empty()) {
    std::string names;
    for (const std::string& name : missing) names += (names.empty() ? "" : ", ") + name;
    throw InputError(header.dir + ": built for " + header.target + ", whose code uses " + names +
                     ", which this CPU lacks");
  }
}

// ----------------------------------------------------------------------------- VM and weights

inline Tensor EmptyTensor(std::vector<int64_t> shape, DLDataType dtype) {
  return tvm::runtime::Tensor::Empty(ffi::Shape(shape), dtype, DLDevice{kDLCPU, 0});
}

template <typename T>
T* Data(const Tensor& tensor) {
  return reinterpret_cast<T*>(static_cast<char*>(tensor.data_ptr()) + tensor.byte_offset());
}

/*! \brief The VM functions `names` of the model library at `path` (each holds the VM alive). */
inline std::vector<ffi::Function> LoadVmFunctions(const std::string& path,
                                                  const std::vector<std::string>& names) {
  if (!IsFile(path)) throw InputError(path + ": missing from the deployable");
  // tvm::runtime::memory::kNaive: a storage is allocated when its function runs and freed after
  // its last use, so the C library reuses that memory for whatever comes next. The pooled
  // allocator (Python's default) keeps each freed block for a later request of the same size,
  // so encode's planned storages and decode's never share memory: with it the int8 SAN-M's peak
  // RSS for a 20 s utterance was 21.8 MiB instead of 14.9, Whisper int8's 120 instead of 96,
  // and neither ran faster.
  constexpr int kNaiveAllocator = 1;
  try {
    ffi::Module library = ffi::Module::LoadFromFile(path);
    auto vm = library->GetFunction("vm_load_executable").value()().cast<ffi::Module>();
    vm->GetFunction("vm_initialization").value()(static_cast<int>(kDLCPU), 0, kNaiveAllocator);
    std::vector<ffi::Function> functions;
    for (const std::string& name : names) {
      auto function = vm->GetFunction(name);
      if (!function.has_value()) {
        throw InputError(path + ": the model library has no function " + name);
      }
      functions.push_back(function.value());
    }
    return functions;
  } catch (const ffi::Error& error) {
    throw InputError(path + ": cannot load the model library (" + error.message() + ")");
  }
}

/*!
 * \brief Every count, length and size in a TVM parameter-dict file checked against what is left
 *        of the file, as compile/deployable.py read_weights_index does (the same messages), so
 *        TVM's own loader, which allocates whatever the file says, only reads a sound file.
 *        Tensor data is skipped, not read.
 */
class WeightsFileCheck {
 public:
  explicit WeightsFileCheck(const std::string& path)
      : path_(path), in_(path, std::ios::binary), size_(FileBytes(path)) {}

  void Run() {
    if (!in_) throw InputError(path_ + ": unreadable weights file");
    if (size_ == 0) throw InputError(path_ + ": empty weights file");
    if (Number<uint64_t>("header") != kParamsMagic) {
      throw InputError(path_ + ": not a TVM weights file (bad magic)");
    }
    Number<uint64_t>("header");
    uint64_t name_count = Number<uint64_t>("name count");
    std::vector<std::string> names;
    for (uint64_t i = 0; i < name_count; ++i) {
      if (i >= static_cast<uint64_t>(size_ / 8)) {
        Corrupt("more names than the file can hold");
      }
      uint64_t length = Number<uint64_t>("name length");
      std::string name = Take(length, "name " + std::to_string(i));
      names.push_back(name);
    }
    std::vector<std::string> sorted = names;
    std::sort(sorted.begin(), sorted.end());
    if (Number<uint64_t>("tensor count") != names.size() ||
        std::adjacent_find(sorted.begin(), sorted.end()) != sorted.end()) {
      Corrupt("names and tensors do not pair up");
    }
    for (const std::string& name : names) {
      std::string what = "tensor '" + name + "'";
      std::string header = Take(kTensorHeaderBytes, what);
      uint64_t magic;
      int32_t device_type, ndim;
      uint8_t code = static_cast<uint8_t>(header[28]), bits = static_cast<uint8_t>(header[29]);
      uint16_t lanes;
      std::memcpy(&magic, header.data(), 8);
      std::memcpy(&device_type, header.data() + 16, 4);
      std::memcpy(&ndim, header.data() + 24, 4);
      std::memcpy(&lanes, header.data() + 30, 2);
      if (magic != kTensorMagic || device_type != kDLCPU || ndim < 0 || ndim > kMaxNdim ||
          code > 2 || (bits != 8 && bits != 16 && bits != 32 && bits != 64) ||
          (code == 2 && bits == 8) || lanes != 1) {
        Corrupt(what + " has a bad header");
      }
      std::vector<int64_t> shape(ndim);
      for (int64_t& dim : shape) dim = Number<int64_t>(what + " shape");
      int64_t nbytes = Number<int64_t>(what + " size");
      if (!SizeAgrees(shape, bits, nbytes)) Corrupt(what + ": shape and size disagree");
      Skip(static_cast<uint64_t>(nbytes), what);
    }
    if (position_ != size_) {
      Corrupt(std::to_string(size_ - position_) + " bytes after the last tensor");
    }
  }

 private:
  static constexpr uint64_t kParamsMagic = 0xF7E58D4F05049CB7ULL;
  static constexpr uint64_t kTensorMagic = 0xDD5E40F096B4A13FULL;
  static constexpr uint64_t kTensorHeaderBytes = 32;  // magic, reserved, device, ndim, dtype
  static constexpr int32_t kMaxNdim = 8;

  [[noreturn]] void Corrupt(const std::string& why) const {
    throw InputError(path_ + ": corrupt weights file (" + why + ")");
  }

  void Bound(uint64_t bytes, const std::string& what) const {
    if (bytes > static_cast<uint64_t>(size_ - position_)) {
      Corrupt(what + " runs past the end of the file at byte " + std::to_string(position_));
    }
  }

  std::string Take(uint64_t bytes, const std::string& what) {
    Bound(bytes, what);
    std::string out(bytes, '\0');
    in_.read(out.data(), static_cast<std::streamsize>(bytes));
    if (!in_) Corrupt(what + " could not be read");
    position_ += static_cast<int64_t>(bytes);
    return out;
  }

  void Skip(uint64_t bytes, const std::string& what) {
    Bound(bytes, what);
    position_ += static_cast<int64_t>(bytes);
    in_.seekg(position_);
  }

  template <typename T>
  T Number(const std::string& what) {
    std::string bytes = Take(sizeof(T), what);
    T value;
    std::memcpy(&value, bytes.data(), sizeof(T));
    return value;
  }

  /*! \brief nbytes == prod(shape) * bits / 8, without overflow (it is bounded by the file). */
  bool SizeAgrees(const std::vector<int64_t>& shape, int bits, int64_t nbytes) const {
    if (nbytes < 0) return false;
    int64_t elements = 1;
    for (int64_t dim : shape) {
      if (dim < 0) return false;
      if (dim != 0 && elements > (size_ * 8 / bits) / dim) return false;  // larger than the file
      elements *= dim;
    }
    return elements * bits / 8 == nbytes;
  }

  std::string path_;
  std::ifstream in_;
  int64_t size_;
  int64_t position_ = 0;
};

/*!
 * \brief Per list of keys, the weights under those keys: computed ones (by key) or those of the
 *        weights file at `path`.
 */
inline std::vector<std::vector<Tensor>> LoadWeights(
    const std::string& path, const std::vector<std::vector<std::string>>& key_lists,
    const std::map<std::string, Tensor>& computed = {}) {
  if (!IsFile(path)) throw InputError(path + ": missing from the deployable");
  WeightsFileCheck(path).Run();
  ffi::Map<ffi::String, Tensor> weights;
  try {
    weights = ffi::Function::GetGlobalRequired("runtime.LoadParamsFromFile")(path)
                  .cast<ffi::Map<ffi::String, Tensor>>();
  } catch (const ffi::Error& error) {
    throw InputError(path + ": not a TVM parameter file (" + error.message() + ")");
  }
  std::vector<std::vector<Tensor>> picked;
  for (const std::vector<std::string>& keys : key_lists) {
    picked.emplace_back();
    for (const std::string& key : keys) {
      auto made = computed.find(key);
      if (made != computed.end()) {
        picked.back().push_back(made->second);
        continue;
      }
      if (!weights.count(key)) throw InputError(path + ": no weight " + key);
      picked.back().push_back(weights.at(key));
    }
  }
  return picked;
}

/*!
 * \brief A VM function that computes some of a function's weights when the deployable is loaded
 *        (the manifest's functions.<name>.tables, compile/passes/load_time_tables.py): its name
 *        and the keys of its outputs, in order.
 */
struct TableFunction {
  std::string function;
  std::vector<std::string> keys;
};

/*! \brief The table functions of the manifest's functions `names`. */
inline std::vector<TableFunction> TableFunctions(const ManifestHeader& header,
                                                 const std::vector<std::string>& names) {
  std::vector<TableFunction> tables;
  try {
    for (const std::string& name : names) {
      ffi::json::Object function = Field(Field(header.manifest, "functions"), name.c_str());
      if (!function.count(ffi::String("tables"))) continue;
      ffi::json::Object entry = Field(function, "tables");
      tables.push_back({std::string(entry.at(ffi::String("function")).cast<ffi::String>()),
                        StringListField(entry, "weights")});
    }
  } catch (const ffi::Error& error) {
    throw InputError(header.path + ": not a tinyasr deployable manifest (" + error.message() +
                     ")");
  }
  return tables;
}

/*! \brief The VM functions `names` of a deployable's library and the weights each takes (keys:
 *         its list in `key_lists`), from the weights file or made by a table function. */
struct LoadedFunctions {
  std::vector<ffi::Function> functions;
  std::vector<std::vector<Tensor>> weights;
};

inline LoadedFunctions LoadFunctionsAndWeights(
    const ManifestHeader& header, const std::vector<std::string>& names,
    const std::vector<std::vector<std::string>>& key_lists) {
  std::vector<TableFunction> tables = TableFunctions(header, names);
  std::vector<std::string> wanted = names;
  for (const TableFunction& table : tables) wanted.push_back(table.function);
  const std::string library = header.dir + kLibraryFile;
  std::vector<ffi::Function> functions = LoadVmFunctions(library, wanted);
  std::map<std::string, Tensor> computed;
  for (size_t i = 0; i < tables.size(); ++i) {
    ffi::Array<Tensor> made;
    try {
      made = functions[names.size() + i]().cast<ffi::Array<Tensor>>();
    } catch (const ffi::Error& error) {
      throw InputError(library + ": " + tables[i].function + " failed (" + error.message() +
                       ")");
    }
    if (made.size() != tables[i].keys.size()) {
      throw InputError(library + ": " + tables[i].function + " made " +
                       std::to_string(made.size()) + " tables, the manifest names " +
                       std::to_string(tables[i].keys.size()));
    }
    for (size_t j = 0; j < made.size(); ++j) computed[tables[i].keys[j]] = made[j];
  }
  functions.resize(names.size());
  return {functions, LoadWeights(header.dir + kWeightsFile, key_lists, computed)};
}

/*! \brief Call a VM function with its runtime inputs followed by its weights. */
inline ffi::Any CallWithWeights(const ffi::Function& function, std::vector<ffi::Any> inputs,
                                const std::vector<Tensor>& weights) {
  std::vector<ffi::AnyView> args(inputs.begin(), inputs.end());
  args.insert(args.end(), weights.begin(), weights.end());
  ffi::Any result;
  function.CallPacked(args.data(), static_cast<int32_t>(args.size()), &result);
  return result;
}

}  // namespace tinyasr
