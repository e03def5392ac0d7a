// tinyasr-run: transcribe wav files on a board with a deployable, no Python on the board.
//
//   tinyasr-run [--beam N] [--mode MODE] DEPLOYABLE WAV...
//
// Loads a deployable (`tinyasr compile --target BOARD`: model.so, weights.bin, tokens.json,
// manifest.json) into the runtime's Relax VM and prints one transcript per wav on stdout; timings
// and sizes go to stderr. The front end (fbank + CMVN) is compiled into model.so, so the program
// only reads PCM samples (wav.h). Decoding is the host's: the CTC search is the same C++
// (ctc_search.h), the prefix tree and attention rescoring (decoding.h) are twins of the host's
// Python, so a board prints exactly what the host prints: CTC greedy, CTC prefix beam search, or
// attention rescoring of the CTC n-best (the default).
//
// Audio longer than 30 s is transcribed in windows, exactly as model/network/windows.py cuts it
// for the host's recognizers (decoding.h WindowBounds), the windows' texts joined with a space,
// so memory stays bounded and a board prints the host's transcript of long audio too.
//
// Bad input (no deployable, a foreign or broken one, a wav in the wrong format) gets one line on
// stderr naming the file and exit code 2.

#include <sys/auxv.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <tvm/ffi/extra/json.h>
#include <tvm/ffi/extra/module.h>
#include <tvm/ffi/function.h>
#include <tvm/runtime/tensor.h>

#include "ctc_search.h"
#include "decoding.h"
#include "wav.h"  // ReadWav, InputError

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <limits>
#include <map>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace tinyasr {

namespace ffi = tvm::ffi;
using ffi::Tensor;

constexpr const char* kUsage =
    "usage: tinyasr-run [--beam N] [--mode ctc_greedy|ctc_prefix_beam|attention_rescoring] "
    "DEPLOYABLE WAV...";
// The deployable's files and format (compile/deployable.py).
constexpr const char* kDeployableFormat = "tinyasr-deployable";
constexpr const char* kManifestFile = "/manifest.json";
constexpr const char* kLibraryFile = "/model.so";
constexpr const char* kWeightsFile = "/weights.bin";
constexpr const char* kTokensFile = "/tokens.json";

// ----------------------------------------------------------------------------- options

enum class Mode { kCtcGreedy, kCtcPrefixBeam, kAttentionRescoring };

struct Options {
  int beam = 10;
  Mode mode = Mode::kAttentionRescoring;
  std::string deployable;
  std::vector<std::string> wavs;
};

Options ParseOptions(int argc, char** argv) {
  Options opt;
  std::vector<std::string> positional;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "-h" || arg == "--help") {
      std::cout << kUsage << std::endl;
      std::exit(0);
    }
    if (arg != "--beam" && arg != "--mode") {
      if (arg.size() > 1 && arg[0] == '-') throw InputError("unknown option " + arg);
      positional.push_back(arg);
      continue;
    }
    if (i + 1 >= argc) throw InputError("missing value for " + arg);
    std::string value = argv[++i];
    if (arg == "--beam") {
      size_t used = 0;
      try {
        opt.beam = std::stoi(value, &used);
      } catch (const std::exception&) {
      }
      if (used == 0 || used != value.size() || opt.beam < 1) {
        throw InputError("--beam: expected a positive integer, got " + value);
      }
    } else if (value == "ctc_greedy") {
      opt.mode = Mode::kCtcGreedy;
    } else if (value == "ctc_prefix_beam") {
      opt.mode = Mode::kCtcPrefixBeam;
    } else if (value == "attention_rescoring") {
      opt.mode = Mode::kAttentionRescoring;
    } else {
      throw InputError("--mode: unknown mode " + value);
    }
  }
  if (positional.size() < 2) {
    throw InputError(std::string("expected a deployable and at least one wav; ") + kUsage);
  }
  opt.deployable = positional[0];
  opt.wavs.assign(positional.begin() + 1, positional.end());
  return opt;
}

// ----------------------------------------------------------------------------- files

bool IsFile(const std::string& path) {
  struct stat info;
  return stat(path.c_str(), &info) == 0 && S_ISREG(info.st_mode);
}

int64_t FileBytes(const std::string& path) {
  struct stat info;
  return stat(path.c_str(), &info) == 0 ? static_cast<int64_t>(info.st_size) : 0;
}

/*! \brief The whole file, or std::nullopt when it cannot be read. */
std::optional<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  std::ostringstream bytes;
  bytes << in.rdbuf();
  if (in.bad()) return std::nullopt;
  return bytes.str();
}

/*! \brief The parsed JSON file (tvm-ffi's parser), or std::nullopt when unreadable or invalid. */
std::optional<ffi::json::Value> ReadJSON(const std::string& path) {
  std::optional<std::string> text = ReadFile(path);
  if (!text) return std::nullopt;
  ffi::String error;
  ffi::json::Value value = ffi::json::Parse(*text, &error);
  if (!error.empty()) return std::nullopt;
  return value;
}

// ----------------------------------------------------------------------------- deployable

ffi::json::Object Field(const ffi::json::Object& object, const char* key) {
  return object.at(ffi::String(key)).cast<ffi::json::Object>();
}

int64_t IntField(const ffi::json::Object& object, const char* key) {
  return object.at(ffi::String(key)).cast<int64_t>();
}

/*!
 * \brief The instruction-set extensions in `mattr` (the manifest's LLVM target attributes) that
 *  code for this machine may use and that this CPU lacks, from the kernel's AT_HWCAP: a
 *  deployable for a richer board then stops with one line instead of dying on SIGILL.
 */
std::vector<std::string> MissingFeatures(const std::vector<std::string>& mattr) {
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

Tensor EmptyTensor(std::vector<int64_t> shape, DLDataType dtype) {
  return tvm::runtime::Tensor::Empty(ffi::Shape(shape), dtype, DLDevice{kDLCPU, 0});
}

template <typename T>
T* Data(const Tensor& tensor) {
  return reinterpret_cast<T*>(static_cast<char*>(tensor.data_ptr()) + tensor.byte_offset());
}

/*! \brief A deployable loaded into the Relax VM: encode, decoder scores, detokenize. */
class Deployable {
 public:
  explicit Deployable(const std::string& dir) : dir_(dir) {
    std::string manifest_path = dir + kManifestFile;
    if (!IsFile(manifest_path)) {
      throw InputError(dir + ": not a tinyasr deployable (no readable manifest.json)");
    }
    try {
      ReadManifest(manifest_path);
    } catch (const ffi::Error& error) {  // a missing field or one of the wrong type
      throw InputError(manifest_path + ": not a tinyasr deployable manifest (" + error.message() +
                       ")");
    }
    CheckMachine();
    LoadLibrary(dir + kLibraryFile);
    LoadWeights(dir + kWeightsFile);
    LoadTokens(dir + kTokensFile);
  }

  const Framing& framing() const { return framing_; }
  const std::string& target() const { return target_; }
  int64_t code_bytes() const { return FileBytes(dir_ + kLibraryFile); }
  int64_t weight_bytes() const { return FileBytes(dir_ + kWeightsFile); }

  /*! \brief int16-scale samples -> (1, frames, vocab) CTC log-probs, (1, frames, d) encoding. */
  std::pair<Tensor, Tensor> Encode(const std::vector<float>& samples) const {
    int64_t frames = framing_.Frames(static_cast<int64_t>(samples.size()));
    int64_t length = framing_.SamplesRead(frames);
    Tensor waveform = EmptyTensor({1, length}, DLDataType{kDLFloat, 32, 1});
    float* out = Data<float>(waveform);
    size_t used = std::min<size_t>(samples.size(), length);
    std::copy(samples.begin(), samples.begin() + used, out);
    std::fill(out + used, out + length, 0.0f);
    auto outputs = Call(encode_, {ffi::Shape({frames}), waveform}, encode_weights_)
                       .cast<ffi::Array<ffi::Any>>();
    return {outputs[0].cast<Tensor>(), outputs[1].cast<Tensor>()};
  }

  /*!
   * \brief log P(hypothesis + <eos> | audio) per hypothesis, all in one decoder call over the
   *        hypotheses' prefix tree (decoding.h BuildDecoderTree), sums rounded once.
   */
  std::vector<float> DecoderScores(const Tensor& encoded,
                                   const std::vector<Scored>& hypotheses) const {
    DecoderTree tree = BuildDecoderTree(hypotheses, sos_eos_, history_width_);
    DLDataType int64{kDLInt, 64, 1};
    Tensor tokens = EmptyTensor({tree.count}, int64);
    Tensor depths = EmptyTensor({tree.count}, int64);
    Tensor ancestors = EmptyTensor({tree.count, tree.count}, DLDataType{kDLBool, 8, 1});
    Tensor history = EmptyTensor({tree.count, tree.width}, int64);
    std::copy(tree.tokens.begin(), tree.tokens.end(), Data<int64_t>(tokens));
    std::copy(tree.depths.begin(), tree.depths.end(), Data<int64_t>(depths));
    std::copy(tree.ancestors.begin(), tree.ancestors.end(), Data<bool>(ancestors));
    std::copy(tree.history.begin(), tree.history.end(), Data<int64_t>(history));
    auto outputs = Call(decode_, {tokens, depths, ancestors, history, encoded}, decode_weights_)
                       .cast<ffi::Array<ffi::Any>>();
    Tensor log_probs = outputs[0].cast<Tensor>();  // (count, vocab)
    return tree.Scores(hypotheses, Data<float>(log_probs), log_probs.size(1), sos_eos_);
  }

  /*! \brief Token ids -> text, skipping <blank>, <sos/eos> and anything out of range. */
  std::string Detokenize(const Hypothesis& tokens) const {
    std::string text;
    for (int64_t id : tokens) {
      if (id > 0 && id < sos_eos_) text += tokens_[id];
    }
    return text;
  }

 private:
  void ReadManifest(const std::string& path) {
    std::optional<ffi::json::Value> value = ReadJSON(path);
    auto manifest = value ? value->try_cast<ffi::json::Object>() : std::nullopt;
    if (!manifest || !manifest->count(ffi::String("format")) ||
        manifest->at(ffi::String("format")).try_cast<ffi::String>() != kDeployableFormat) {
      throw InputError(path + ": not a tinyasr deployable manifest");
    }
    target_ = manifest->at(ffi::String("target")).cast<ffi::String>();
    arch_ = manifest->at(ffi::String("arch")).cast<ffi::String>();
    ffi::json::Object llvm_target = Field(*manifest, "llvm_target");
    if (llvm_target.count(ffi::String("mattr"))) {
      auto mattr = llvm_target.at(ffi::String("mattr")).cast<ffi::json::Array>();
      for (const ffi::Any& feature : mattr) {
        mattr_.push_back(feature.cast<ffi::String>());
      }
    }
    sos_eos_ = IntField(*manifest, "sos_eos");
    history_width_ = IntField(*manifest, "decoder_history");
    ffi::json::Object audio = Field(*manifest, "audio");
    framing_ = {IntField(audio, "sample_rate"), IntField(audio, "samples_per_frame"),
                IntField(audio, "samples_for_zero_frames"), IntField(audio, "min_frames")};
    // Bounds before anything is sized from them: the decoder's history window is the FSMN's
    // kernel (11 in the shipped models), and the framing is the fbank's (160-sample hop).
    constexpr int64_t kMaxHistory = 1024, kMaxSamples = 1 << 20;
    if (history_width_ < 1 || history_width_ > kMaxHistory) {
      throw InputError(path + ": decoder_history " + std::to_string(history_width_) +
                       " is not in [1, " + std::to_string(kMaxHistory) + "]");
    }
    if (framing_.sample_rate <= 0 || framing_.samples_per_frame <= 0 ||
        framing_.samples_per_frame > kMaxSamples || framing_.samples_for_zero_frames < 0 ||
        framing_.samples_for_zero_frames > kMaxSamples || framing_.min_frames < 0 ||
        framing_.min_frames > kMaxSamples) {
      throw InputError(path + ": audio framing out of range");
    }
    ffi::json::Object functions = Field(*manifest, "functions");
    encode_keys_ = FunctionWeights(functions, "encode", {"sizes", "waveform"});
    decode_keys_ = FunctionWeights(functions, "decode",
                                   {"tokens", "depths", "ancestors", "history", "memory"});
  }

  /*! \brief The weight keys of `name`, after checking it takes the runtime inputs we pass. */
  std::vector<std::string> FunctionWeights(const ffi::json::Object& functions, const char* name,
                                           const std::vector<std::string>& inputs) const {
    ffi::json::Object function = Field(functions, name);
    auto declared = function.at(ffi::String("inputs")).cast<ffi::json::Array>();
    std::vector<std::string> names;
    for (const ffi::Any& input : declared) names.push_back(input.cast<ffi::String>());
    if (names != inputs) {
      throw InputError(dir_ + kManifestFile + ": function " + name +
                       " takes inputs this tinyasr-run does not know");
    }
    std::vector<std::string> keys;
    for (const ffi::Any& key : function.at(ffi::String("weights")).cast<ffi::json::Array>()) {
      keys.push_back(key.cast<ffi::String>());
    }
    return keys;
  }

  void CheckMachine() const {
    utsname machine;
    if (uname(&machine) == 0 && arch_ != machine.machine) {
      throw InputError(dir_ + ": built for " + target_ + " (" + arch_ + "); this machine is " +
                       machine.machine);
    }
    std::vector<std::string> missing = MissingFeatures(mattr_);
    if (!missing.empty()) {
      std::string names;
      for (const std::string& name : missing) names += (names.empty() ? "" : ", ") + name;
      throw InputError(dir_ + ": built for " + target_ + ", whose code uses " + names +
                       ", which this CPU lacks");
    }
  }

  void LoadLibrary(const std::string& path) {
    if (!IsFile(path)) throw InputError(path + ": missing from the deployable");
    constexpr int kPooledAllocator = 2;  // tvm::runtime::memory::kPooled, as Python's default
    try {
      ffi::Module library = ffi::Module::LoadFromFile(path);
      auto vm = library->GetFunction("vm_load_executable").value()().cast<ffi::Module>();
      vm->GetFunction("vm_initialization").value()(static_cast<int>(kDLCPU), 0, kPooledAllocator);
      encode_ = vm->GetFunction("encode").value();  // each function holds the VM alive
      decode_ = vm->GetFunction("decode").value();
    } catch (const ffi::Error& error) {
      throw InputError(path + ": cannot load the model library (" + error.message() + ")");
    }
  }

  void LoadWeights(const std::string& path) {
    if (!IsFile(path)) throw InputError(path + ": missing from the deployable");
    ffi::Map<ffi::String, Tensor> weights;
    try {
      weights = ffi::Function::GetGlobalRequired("runtime.LoadParamsFromFile")(path)
                    .cast<ffi::Map<ffi::String, Tensor>>();
    } catch (const ffi::Error& error) {
      throw InputError(path + ": not a TVM parameter file (" + error.message() + ")");
    }
    auto pick = [&](const std::vector<std::string>& keys) {
      std::vector<Tensor> picked;
      for (const std::string& key : keys) {
        if (!weights.count(key)) throw InputError(path + ": no weight " + key);
        picked.push_back(weights.at(key));
      }
      return picked;
    };
    encode_weights_ = pick(encode_keys_);
    decode_weights_ = pick(decode_keys_);
  }

  void LoadTokens(const std::string& path) {
    std::optional<ffi::json::Value> value = ReadJSON(path);
    auto tokens = value ? value->try_cast<ffi::json::Array>() : std::nullopt;
    if (!tokens || static_cast<int64_t>(tokens->size()) != sos_eos_ + 1) {
      throw InputError(path + ": not the token list of this deployable");
    }
    for (const ffi::Any& token : *tokens) tokens_.push_back(token.cast<ffi::String>());
  }

  /*! \brief Call a VM function with its runtime inputs followed by its weights. */
  static ffi::Any Call(const ffi::Function& function, std::vector<ffi::Any> inputs,
                       const std::vector<Tensor>& weights) {
    std::vector<ffi::AnyView> args(inputs.begin(), inputs.end());
    args.insert(args.end(), weights.begin(), weights.end());
    ffi::Any result;
    function.CallPacked(args.data(), static_cast<int32_t>(args.size()), &result);
    return result;
  }

  std::string dir_;
  std::string target_;
  std::string arch_;
  std::vector<std::string> mattr_;  // the LLVM target's attributes, e.g. "+v", "+dotprod"
  int64_t sos_eos_ = 0;
  int64_t history_width_ = 0;  // the rows each tree node's FSMN reads (manifest decoder_history)
  Framing framing_{};
  std::vector<std::string> encode_keys_, decode_keys_;
  ffi::Function encode_, decode_;
  std::vector<Tensor> encode_weights_, decode_weights_;
  std::vector<std::string> tokens_;
};

// ----------------------------------------------------------------------------- main

using Clock = std::chrono::steady_clock;

double MillisSince(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

/*! \brief Token ids of one utterance's CTC log-probs, decoded in the chosen mode. */
Hypothesis Decode(const Deployable& model, const Options& opt, const Tensor& log_probs,
                  const Tensor& encoded) {
  LogProbs view{Data<float>(log_probs), log_probs.size(1), log_probs.size(2)};
  if (opt.mode == Mode::kCtcGreedy) return CtcGreedy(view);
  std::vector<Scored> nbest = CtcPrefixBeamSearch(view, opt.beam);
  if (opt.mode == Mode::kCtcPrefixBeam) return nbest[0].first;
  return nbest[AttentionRescoring(nbest, model.DecoderScores(encoded, nbest))].first;
}

std::string Strip(const std::string& text) {
  size_t begin = text.find_first_not_of(' '), end = text.find_last_not_of(' ');
  return begin == std::string::npos ? "" : text.substr(begin, end - begin + 1);
}

/*!
 * \brief Peak resident set (VmHWM) in MiB, 0 when unknown. Not getrusage's maxrss: Linux carries
 *        that over exec from a forking parent (a Python caller would count itself).
 */
double PeakRssMiB() {
  std::ifstream status("/proc/self/status");
  for (std::string line; std::getline(status, line);) {
    if (line.rfind("VmHWM:", 0) == 0) return std::stod(line.substr(6)) / 1024.0;  // kB
  }
  return 0;
}

int Main(int argc, char** argv) {
  Options opt = ParseOptions(argc, argv);
  Clock::time_point start = Clock::now();
  Deployable model(opt.deployable);
  std::fprintf(stderr, "tinyasr-run: %s (%s): code %lld bytes, weights %lld bytes, load %.1f ms\n",
               opt.deployable.c_str(), model.target().c_str(),
               static_cast<long long>(model.code_bytes()),
               static_cast<long long>(model.weight_bytes()), MillisSince(start));
  double total_audio = 0, total_ms = 0;
  for (const std::string& wav : opt.wavs) {
    std::vector<float> samples = ReadWav(wav, model.framing().sample_rate);
    auto bounds = WindowBounds(samples, model.framing().sample_rate);
    double encode_ms = 0, decode_ms = 0;
    std::string text;
    for (auto [begin, end] : bounds) {
      const Framing& framing = model.framing();
      // A window too short for one encoder frame says nothing (CompiledRecognizer's rule).
      if (bounds.size() > 1 && static_cast<int64_t>(end - begin) < framing.SamplesRead(1)) {
        continue;
      }
      std::vector<float> window(samples.begin() + begin, samples.begin() + end);
      Clock::time_point encode_start = Clock::now();
      auto [log_probs, encoded] = model.Encode(window);
      encode_ms += MillisSince(encode_start);
      Clock::time_point decode_start = Clock::now();
      std::string piece = model.Detokenize(Decode(model, opt, log_probs, encoded));
      decode_ms += MillisSince(decode_start);
      if (bounds.size() == 1) {
        text = piece;
      } else if (!Strip(piece).empty()) {
        text += (text.empty() ? "" : " ") + Strip(piece);
      }
    }
    std::cout << text << std::endl;
    double audio_s = static_cast<double>(samples.size()) / model.framing().sample_rate;
    total_audio += audio_s;
    total_ms += encode_ms + decode_ms;
    std::fprintf(stderr,
                 "tinyasr-run: %s: audio %.2f s, encode %.1f ms, decode %.1f ms, RTF %.3f\n",
                 wav.c_str(), audio_s, encode_ms, decode_ms,
                 (encode_ms + decode_ms) / 1000.0 / std::max(audio_s, 1e-9));
  }
  std::fprintf(stderr, "tinyasr-run: total: audio %.2f s, %.1f ms, RTF %.3f, peak RSS %.1f MiB\n",
               total_audio, total_ms, total_ms / 1000.0 / std::max(total_audio, 1e-9),
               PeakRssMiB());
  return 0;
}

}  // namespace tinyasr

int main(int argc, char** argv) {
  try {
    return tinyasr::Main(argc, argv);
  } catch (const tinyasr::InputError& error) {
    std::cerr << "tinyasr-run: error: " << error.what() << std::endl;
    return 2;
  } catch (const tvm::ffi::Error& error) {  // its what() carries a backtrace
    std::cerr << "tinyasr-run: failed: " << error.kind() << ": " << error.message() << std::endl;
    return 1;
  } catch (const std::exception& error) {
    std::cerr << "tinyasr-run: failed: " << error.what() << std::endl;
    return 1;
  }
}
