// What tinyasr-run's deployable readers share, whatever the model family: where the files are (a
// directory, or the program itself), the manifest's common fields and family
// (compile/deployable.py, compile/family.py), the machine check, the model library in the Relax
// VM, the weights file, and calls with weights appended.
//
// Every problem with the deployable is an InputError naming the file (one line, exit code 2).

#pragma once

#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <unistd.h>
#include <tvm/ffi/extra/json.h>
#include <tvm/ffi/extra/module.h>
#include <tvm/ffi/function.h>
#include <tvm/runtime/tensor.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <iterator>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "embedded_files.h"
#include "wav.h"  // InputError

// Defined where `tinyasr compile --static` linked a deployable's files into the program.
extern "C" __attribute__((weak)) const tinyasr::EmbeddedFile tinyasr_embedded_files[];

namespace tinyasr {

namespace ffi = tvm::ffi;
using ffi::Tensor;

// The deployable's files and format (compile/deployable.py, compile/family.py).
constexpr const char* kDeployableFormat = "tinyasr-deployable";
constexpr int64_t kDeployableVersion = 5;  // compile/deployable.py VERSION
constexpr const char* kManifestFile = "manifest.json";
constexpr const char* kLibraryFile = "model.so";
constexpr const char* kWeightsFile = "weights.bin";
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

/*! \brief Parsed JSON (tvm-ffi's parser), or std::nullopt when unread (nullopt) or invalid. */
inline std::optional<ffi::json::Value> ParseJSON(const std::optional<std::string>& text) {
  if (!text) return std::nullopt;
  ffi::String error;
  ffi::json::Value value = ffi::json::Parse(*text, &error);
  if (!error.empty()) return std::nullopt;
  return value;
}

/*!
 * \brief Where a deployable's files are: a directory (`tinyasr compile`), or this program itself
 *        (`tinyasr compile --static`: the files linked in as data, the model's code as TVM's
 *        system library, registered when the program starts).
 */
class DeployableSource {
 public:
  static DeployableSource Directory(const std::string& dir) { return {dir, false}; }

  /*! \brief The deployable linked into this program (named `program` in messages), if any. */
  static std::optional<DeployableSource> Embedded(const std::string& program) {
    if (tinyasr_embedded_files == nullptr) return std::nullopt;
    return DeployableSource{program, true};
  }

  /*! \brief The directory, or the program: what messages about the deployable name. */
  const std::string& where() const { return where_; }
  bool embedded() const { return embedded_; }

  /*! \brief A file as messages name it: DIR/NAME, or PROGRAM:NAME when linked in. */
  std::string Path(const char* name) const { return where_ + (embedded_ ? ":" : "/") + name; }

  bool Has(const char* name) const {
    return embedded_ ? Find(name) != nullptr : IsFile(Path(name));
  }

  int64_t Bytes(const char* name) const {
    if (!embedded_) return FileBytes(Path(name));
    const EmbeddedFile* file = Find(name);
    return file ? static_cast<int64_t>(file->size) : 0;
  }

  /*! \brief A file's bytes, or std::nullopt when it is missing or cannot be read. */
  std::optional<std::string> Read(const char* name) const {
    if (!embedded_) return ReadFile(Path(name));
    std::optional<std::string_view> bytes = View(name);
    if (!bytes) return std::nullopt;
    return std::string(*bytes);
  }

  /*! \brief The bytes of a file linked into the program, not copied; std::nullopt if none. */
  std::optional<std::string_view> View(const char* name) const {
    const EmbeddedFile* file = embedded_ ? Find(name) : nullptr;
    if (file == nullptr) return std::nullopt;
    return std::string_view(file->data, file->size);
  }

  /*!
   * \brief Gives the memory of bytes [from, to) of a file linked into the program back to the
   *        OS once they are copied (the weights, into tensors): they are clean pages of the
   *        program's file, read again if ever touched. A weights file would otherwise stay
   *        resident beside its tensors.
   */
  void Release(const char* name, int64_t from, int64_t to) const {
    const EmbeddedFile* file = embedded_ ? Find(name) : nullptr;
    if (file == nullptr) return;
    const uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
    const uintptr_t start = reinterpret_cast<uintptr_t>(file->data);
    const uintptr_t begin = (start + from + page - 1) / page * page;  // whole pages inside
    const uintptr_t end = (start + to) / page * page;
    if (end > begin) madvise(reinterpret_cast<void*>(begin), end - begin, MADV_DONTNEED);
  }

  /*! \brief The model library: model.so, or the system library linked into this program. */
  ffi::Module LoadLibrary() const {
    if (!embedded_) return ffi::Module::LoadFromFile(Path(kLibraryFile));
    return ffi::Function::GetGlobalRequired("ffi.SystemLib")().cast<ffi::Module>();
  }

  /*! \brief The model library as messages name it: model.so, or the program. */
  std::string LibraryPath() const { return embedded_ ? where_ : Path(kLibraryFile); }

  /*! \brief The bytes of the model's code: model.so's, or this program's but the files in it. */
  int64_t CodeBytes() const {
    if (!embedded_) return Bytes(kLibraryFile);
    // the program's path by readlink, which qemu-user answers with the emulated program's
    char program[4096];
    ssize_t length = readlink("/proc/self/exe", program, sizeof program - 1);
    int64_t bytes = FileBytes(length > 0 ? std::string(program, length) : where_);
    for (const EmbeddedFile* file = tinyasr_embedded_files; file->name != nullptr; ++file) {
      bytes -= static_cast<int64_t>(file->size);
    }
    return bytes;
  }

 private:
  DeployableSource(std::string where, bool embedded)
      : where_(std::move(where)), embedded_(embedded) {}

  static const EmbeddedFile* Find(const char* name) {
    for (const EmbeddedFile* file = tinyasr_embedded_files; file->name != nullptr; ++file) {
      if (std::strcmp(file->name, name) == 0) return file;
    }
    return nullptr;
  }

  std::string where_;
  bool embedded_;
};

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
  explicit ManifestHeader(const DeployableSource& from)
      : source(from), path(from.Path(kManifestFile)) {}

  DeployableSource source;  // its where() names the directory or the program in messages
  std::string path;     // the manifest, for messages
  std::string family;   // kFamilySanM or kFamilyWhisper (anything else is refused)
  std::string target;   // the board it was compiled for
  std::string arch;     // its uname machine
  std::vector<std::string> mattr;  // the LLVM target's attributes, e.g. "+v", "+dotprod"
  // x86-64: the extensions its code may use, as /proc/cpuinfo names them ("avx512_vnni", ...)
  std::vector<std::string> cpu_features;
  bool amx_tiles = false;  // int8 kernels on AMX tile registers, which Linux grants on request
  ffi::json::Object manifest;
};

/*! \brief The manifest of the deployable `source`: its format, family, target and attributes. */
inline ManifestHeader ReadManifestHeader(const DeployableSource& source) {
  ManifestHeader header(source);
  if (!source.Has(kManifestFile)) {
    throw InputError(source.where() + ": not a tinyasr deployable (no readable manifest.json)");
  }
  std::optional<ffi::json::Value> value = ParseJSON(source.Read(kManifestFile));
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
    if (manifest->count(ffi::String("cpu_features"))) {
      header.cpu_features = StringListField(*manifest, "cpu_features");
    }
    if (manifest->count(ffi::String("amx_tiles"))) {
      header.amx_tiles = manifest->at(ffi::String("amx_tiles")).cast<bool>();
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

/*! \brief The CPU's flags from /proc/cpuinfo (its first `flags` line); empty if unreadable. */
inline std::vector<std::string> CpuInfoFlags() {
  std::ifstream cpuinfo("/proc/cpuinfo");
  for (std::string line; std::getline(cpuinfo, line);) {
    if (line.rfind("flags", 0) != 0) continue;
    std::istringstream words(line.substr(line.find(':') + 1));
    return {std::istream_iterator<std::string>(words), std::istream_iterator<std::string>()};
  }
  return {};
}

/*!
 * \brief The instruction-set extensions that code for this machine may use and that this CPU
 *  lacks: on RISC-V and arm, those in `mattr` (the manifest's LLVM target attributes), from the
 *  kernel's AT_HWCAP; on x86-64, those in `cpu_features` (compile/deployable.py, from LLVM's
 *  model of the target's cpu), from /proc/cpuinfo. A deployable for a richer board or CPU then
 *  stops with one line instead of dying on SIGILL.
 */
inline std::vector<std::string> MissingFeatures(
    const std::vector<std::string>& mattr,
    [[maybe_unused]] const std::vector<std::string>& cpu_features) {  // x86-64 only
  std::vector<std::string> missing;
  [[maybe_unused]] const unsigned long hwcap = getauxval(AT_HWCAP);
  for ([[maybe_unused]] const std::string& feature : mattr) {
#if defined(__riscv)
    if (feature == "+v" && !(hwcap & (1UL << ('V' - 'A')))) missing.push_back("v (RVV 1.0)");
#elif defined(__aarch64__)
    constexpr unsigned long kDotProduct = 1UL << 20;  // HWCAP_ASIMDDP
    if (feature == "+dotprod" && !(hwcap & kDotProduct)) missing.push_back("dotprod");
#endif
  }
#if defined(__x86_64__)
  std::vector<std::string> flags = CpuInfoFlags();
  for (const std::string& feature : cpu_features) {
    if (!flags.empty() && std::find(flags.begin(), flags.end(), feature) == flags.end()) {
      missing.push_back(feature);
    }
  }
#endif
  return missing;
}

/*! \brief Refuses a deployable built for another architecture or for missing extensions. */
inline void CheckMachine(const ManifestHeader& header) {
  const std::string& where = header.source.where();
  utsname machine;
  if (uname(&machine) == 0 && header.arch != machine.machine) {
    throw InputError(where + ": built for " + header.target + " (" + header.arch +
                     "); this machine is " + machine.machine);
  }
  std::vector<std::string> missing = MissingFeatures(header.mattr, header.cpu_features);
  if (!missing.empty()) {
    std::string names;
    for (const std::string& name : missing) names += (names.empty() ? "" : ", ") + name;
    throw InputError(where + ": built for " + header.target + ", whose code uses " + names +
                     ", which this CPU lacks");
  }
#if defined(__x86_64__)
  // arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA): without the grant (Linux 5.16 and
  // later give it on request) the first tile instruction is SIGILL
  constexpr long kArchReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
  if (header.amx_tiles && syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) != 0) {
    throw InputError(where + ": built for " + header.target +
                     " with int8 kernels on AMX tiles, which Linux refused this process (" +
                     std::strerror(errno) + "; it grants them from Linux 5.16)");
  }
#endif
}

// ----------------------------------------------------------------------------- VM and weights

inline Tensor EmptyTensor(std::vector<int64_t> shape, DLDataType dtype) {
  return tvm::runtime::Tensor::Empty(ffi::Shape(shape), dtype, DLDevice{kDLCPU, 0});
}

template <typename T>
T* Data(const Tensor& tensor) {
  return reinterpret_cast<T*>(static_cast<char*>(tensor.data_ptr()) + tensor.byte_offset());
}

/*! \brief The VM functions `names` of the model library of `source` (each holds the VM alive). */
inline std::vector<ffi::Function> LoadVmFunctions(const DeployableSource& source,
                                                  const std::vector<std::string>& names) {
  const std::string path = source.LibraryPath();
  if (!source.embedded() && !source.Has(kLibraryFile)) {
    throw InputError(path + ": missing from the deployable");
  }
  // tvm::runtime::memory::kNaive: a storage is allocated when its function runs and freed after
  // its last use, so the C library reuses that memory for whatever comes next. The pooled
  // allocator (Python's default) keeps each freed block for a later request of the same size,
  // so encode's planned storages and decode's never share memory: with it the int8 SAN-M's peak
  // RSS for a 20 s utterance was 21.8 MiB instead of 14.9, Whisper int8's 120 instead of 96,
  // and neither ran faster.
  constexpr int kNaiveAllocator = 1;
  try {
    ffi::Module library = source.LoadLibrary();
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

/*! \brief A std::streambuf over bytes in memory (not copied), seekable. */
class MemoryBuffer : public std::streambuf {
 public:
  explicit MemoryBuffer(std::string_view bytes) {
    char* begin = const_cast<char*>(bytes.data());  // read only: nothing here writes
    setg(begin, begin, begin + bytes.size());
  }

 protected:
  pos_type seekpos(pos_type position, std::ios_base::openmode) override {
    if (position < 0 || position > egptr() - eback()) return pos_type(off_type(-1));
    setg(eback(), eback() + position, egptr());
    return position;
  }

  pos_type seekoff(off_type offset, std::ios_base::seekdir from,
                   std::ios_base::openmode mode) override {
    off_type base = from == std::ios_base::beg   ? 0
                    : from == std::ios_base::cur ? gptr() - eback()
                                                 : egptr() - eback();
    return seekpos(pos_type(base + offset), mode);
  }
};

/*! \brief Where one tensor of a TVM parameter-dict file is, and what it holds. */
struct WeightsEntry {
  std::string name;
  std::vector<int64_t> shape;
  DLDataType dtype;
  int64_t offset;  // of its data in the file
  int64_t nbytes;
};

/*!
 * \brief Every count, length and size in a TVM parameter-dict file checked against what is left
 *        of the file, as compile/deployable.py read_weights_index does (the same messages), so
 *        TVM's own loader, which allocates whatever the file says, only reads a sound file.
 *        Tensor data is skipped, not read; Run() returns where each tensor is.
 */
class WeightsFileCheck {
 public:
  /*! \brief The file at `path`. */
  explicit WeightsFileCheck(const std::string& path)
      : path_(path), file_(path, std::ios::binary), in_(file_.rdbuf()), size_(FileBytes(path)) {
    if (!file_) in_.setstate(std::ios::badbit);
  }

  /*! \brief The file's `bytes`, in memory (`path` names it in messages). */
  WeightsFileCheck(const std::string& path, std::string_view bytes)
      : path_(path), memory_(bytes), in_(&memory_), size_(static_cast<int64_t>(bytes.size())) {}

  std::vector<WeightsEntry> Run() {
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
    std::vector<WeightsEntry> entries;
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
      entries.push_back({name, shape, DLDataType{code, bits, lanes}, position_, nbytes});
      Skip(static_cast<uint64_t>(nbytes), what);
    }
    if (position_ != size_) {
      Corrupt(std::to_string(size_ - position_) + " bytes after the last tensor");
    }
    return entries;
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
  std::ifstream file_;
  MemoryBuffer memory_{std::string_view()};
  std::istream in_;
  int64_t size_;
  int64_t position_ = 0;
};

/*!
 * \brief The tensors of the weights file `name` linked into the program, checked as a file's are
 *        and copied into tensors one by one; the pages of each copied tensor go back to the OS
 *        (DeployableSource::Release), so loading holds about one copy of the weights, as TVM's
 *        loader of a file does.
 */
inline ffi::Map<ffi::String, Tensor> LoadEmbeddedWeights(const DeployableSource& source,
                                                         const char* name) {
  std::string_view bytes = *source.View(name);
  ffi::Map<ffi::String, Tensor> weights;
  int64_t released = 0;
  for (const WeightsEntry& entry : WeightsFileCheck(source.Path(name), bytes).Run()) {
    Tensor tensor = EmptyTensor(entry.shape, entry.dtype);
    std::memcpy(Data<char>(tensor), bytes.data() + entry.offset, entry.nbytes);
    weights.Set(entry.name, tensor);
    source.Release(name, released, entry.offset + entry.nbytes);
    released = entry.offset + entry.nbytes;
  }
  return weights;
}

/*!
 * \brief Per list of keys, the weights under those keys: computed ones (by key) or those of the
 *        weights file of `source`, checked first (WeightsFileCheck).
 */
inline std::vector<std::vector<Tensor>> LoadWeights(
    const DeployableSource& source, const std::vector<std::vector<std::string>>& key_lists,
    const std::map<std::string, Tensor>& computed = {}) {
  const std::string path = source.Path(kWeightsFile);
  if (!source.Has(kWeightsFile)) throw InputError(path + ": missing from the deployable");
  ffi::Map<ffi::String, Tensor> weights;
  try {
    if (source.embedded()) {
      weights = LoadEmbeddedWeights(source, kWeightsFile);
    } else {
      WeightsFileCheck(path).Run();
      weights = ffi::Function::GetGlobalRequired("runtime.LoadParamsFromFile")(path)
                    .cast<ffi::Map<ffi::String, Tensor>>();
    }
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
  const std::string library = header.source.LibraryPath();
  std::vector<ffi::Function> functions = LoadVmFunctions(header.source, wanted);
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
  return {functions, LoadWeights(header.source, key_lists, computed)};
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
