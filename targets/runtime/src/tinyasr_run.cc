// tinyasr-run: transcribe wav files on a board with a deployable, no Python on the board.
//
//   tinyasr-run [--beam N] [--mode MODE] DEPLOYABLE WAV...
//
// Loads a deployable (`tinyasr compile --target BOARD`: model.so, weights.bin, tokens.json,
// manifest.json) into the runtime's Relax VM and prints one transcript per wav on stdout; timings
// and sizes go to stderr. The front end (fbank + CMVN) is compiled into model.so, so the program
// only reads PCM samples. Decoding is the host's: the CTC search is the same C++
// (model/native/ctc_search.h), attention rescoring ranks as tinyasr.model.search does, so a board
// prints exactly what the host prints: CTC greedy, CTC prefix beam search, or attention
// rescoring of the CTC n-best (the default).
//
// Audio longer than 30 s is transcribed in windows, exactly as model/windows.py cuts it for the
// host's recognizers (WindowBounds), the windows' texts joined with a space, so memory stays
// bounded and a board prints the host's transcript of long audio too.
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
constexpr double kRescoringCtcWeight = 0.5;  // DecodeOptions.rescoring_ctc_weight
constexpr double kMaxWindowSeconds = 30.0;   // model/windows.py MAX_SECONDS
constexpr double kSearchSeconds = 5.0;       // model/windows.py SEARCH_SECONDS

/*! \brief Bad user input: reported as one line and exit code 2. */
struct InputError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

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

// ----------------------------------------------------------------------------- wav

uint32_t ReadLE(const std::string& bytes, size_t at, int width) {
  uint32_t value = 0;
  for (int i = width - 1; i >= 0; --i) {
    value = (value << 8) | static_cast<uint8_t>(bytes[at + i]);
  }
  return value;
}

/*!
 * \brief Samples of a 16 kHz mono 16-bit PCM wav as float at int16 scale (as Kaldi reads them),
 *        accepting what tinyasr.model.datadir.load_wav accepts, with the same messages.
 */
std::vector<float> ReadWav(const std::string& path, int64_t sample_rate) {
  if (!IsFile(path)) throw InputError(path + ": wav file not found");
  std::optional<std::string> bytes = ReadFile(path);
  auto unreadable = [&path](const std::string& why) {
    return InputError(path + ": unreadable wav (" + why + ")");
  };
  if (!bytes) throw unreadable("cannot read the file");
  const std::string& wav = *bytes;
  if (wav.size() < 12 || wav.compare(0, 4, "RIFF") != 0 || wav.compare(8, 4, "WAVE") != 0) {
    throw unreadable("not a RIFF WAVE file");
  }
  std::optional<size_t> fmt_at, data_at;
  uint32_t fmt_size = 0, data_size = 0;
  for (size_t at = 12; at + 8 <= wav.size();) {
    uint32_t size = ReadLE(wav, at + 4, 4);
    if (wav.compare(at, 4, "fmt ") == 0) {
      fmt_at = at + 8;
      fmt_size = size;
    } else if (wav.compare(at, 4, "data") == 0) {
      data_at = at + 8;
      data_size = size;
      break;
    }
    at += 8 + static_cast<size_t>(size) + (size & 1);  // chunks are padded to even sizes
  }
  if (!fmt_at || fmt_size < 16 || *fmt_at + 16 > wav.size()) throw unreadable("no fmt chunk");
  if (!data_at) throw unreadable("no data chunk");
  uint32_t format = ReadLE(wav, *fmt_at, 2);
  if (format != 1) throw unreadable("unknown format: " + std::to_string(format));  // not PCM
  uint32_t channels = ReadLE(wav, *fmt_at + 2, 2);
  uint32_t rate = ReadLE(wav, *fmt_at + 4, 4);
  uint32_t bits = ReadLE(wav, *fmt_at + 14, 2);
  if (rate != sample_rate) {
    throw InputError(path + ": sample rate " + std::to_string(rate) + " Hz, expected " +
                     std::to_string(sample_rate) + " Hz (resample with `sox IN -r " +
                     std::to_string(sample_rate) + " OUT`)");
  }
  if (channels != 1) {
    throw InputError(path + ": " + std::to_string(channels) +
                     " channels, expected mono (convert with `sox IN -c 1 OUT`)");
  }
  if (bits != 16) {
    throw InputError(path + ": " + std::to_string(bits) +
                     "-bit samples, expected 16-bit (convert with `sox IN -b 16 OUT`)");
  }
  size_t declared = data_size / 2;
  size_t held = (wav.size() - *data_at) / 2;
  if (held < declared) {
    throw InputError(path + ": truncated wav (header says " + std::to_string(declared) +
                     " samples, file holds " + std::to_string(held) + ")");
  }
  std::vector<float> samples(declared);
  for (size_t i = 0; i < declared; ++i) {
    samples[i] = static_cast<int16_t>(ReadLE(wav, *data_at + 2 * i, 2));
  }
  return samples;
}

// ----------------------------------------------------------------------------- decoding

/*!
 * \brief The n-best entry with the highest decoder score + weight * CTC score. The total is
 *        float32, as numpy computes float32 decoder scores plus a Python float (NEP 50).
 */
const Hypothesis& AttentionRescoring(const std::vector<Scored>& nbest,
                                     const std::vector<float>& attention_scores) {
  size_t best = 0;
  float best_total = -std::numeric_limits<float>::infinity();
  for (size_t i = 0; i < nbest.size(); ++i) {
    float total = attention_scores[i] + static_cast<float>(kRescoringCtcWeight * nbest[i].second);
    if (i == 0 || total > best_total) best = i, best_total = total;
  }
  return nbest[best].first;
}

// ----------------------------------------------------------------------------- deployable

/*! \brief The manifest's audio framing: how many samples the encoder reads for F frames. */
struct Framing {
  int64_t sample_rate;
  int64_t samples_per_frame;
  int64_t samples_for_zero_frames;
  int64_t min_frames;

  /*! \brief Encoder frames for `samples` (compile/graphs.py encoder_frames, closed form),
   *         at least min_frames: shorter audio is zero-padded. */
  int64_t Frames(int64_t samples) const {
    int64_t whole = samples < samples_for_zero_frames
                        ? 0
                        : (samples - samples_for_zero_frames) / samples_per_frame;
    return std::max(min_frames, whole);
  }
  int64_t SamplesRead(int64_t frames) const {
    return samples_for_zero_frames + samples_per_frame * frames;
  }
};

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
  for (const std::string& feature : mattr) {
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
   *        hypotheses' prefix tree, built and read as tinyasr.model.prefix_tree does (nodes in
   *        order of first use, every ancestor before its descendants), sums rounded once.
   */
  std::vector<float> DecoderScores(const Tensor& encoded,
                                   const std::vector<Scored>& hypotheses) const {
    std::map<std::pair<int64_t, int64_t>, int64_t> children;  // (node, token) -> child
    std::vector<int64_t> tokens{sos_eos_}, depths{0}, parents{-1};
    std::vector<std::vector<int64_t>> paths;
    for (const auto& [hypothesis, _] : hypotheses) {
      int64_t node = 0;
      std::vector<int64_t> path{node};
      for (int64_t token : hypothesis) {
        auto [child, added] =
            children.try_emplace({node, token}, static_cast<int64_t>(tokens.size()));
        if (added) {
          tokens.push_back(token);
          depths.push_back(depths[node] + 1);
          parents.push_back(node);
        }
        node = child->second;
        path.push_back(node);
      }
      paths.push_back(std::move(path));
    }
    int64_t count = static_cast<int64_t>(tokens.size());
    int64_t width = history_width_;
    DLDataType int64{kDLInt, 64, 1};
    Tensor token_tensor = EmptyTensor({count}, int64);
    Tensor depth_tensor = EmptyTensor({count}, int64);
    Tensor ancestors = EmptyTensor({count, count}, DLDataType{kDLBool, 8, 1});
    Tensor history = EmptyTensor({count, width}, int64);
    std::copy(tokens.begin(), tokens.end(), Data<int64_t>(token_tensor));
    std::copy(depths.begin(), depths.end(), Data<int64_t>(depth_tensor));
    bool* ancestor = Data<bool>(ancestors);
    int64_t* rows = Data<int64_t>(history);  // [node][i]: the ancestor width-1-i levels up
    for (int64_t node = 0; node < count; ++node) {
      int64_t parent = parents[node];
      if (parent >= 0) {
        std::copy_n(ancestor + parent * count, count, ancestor + node * count);
        std::copy_n(rows + parent * width + 1, width - 1, rows + node * width);
      } else {
        std::fill_n(ancestor + node * count, count, false);
        std::fill_n(rows + node * width, width - 1, count);  // the decoder's zero row
      }
      ancestor[node * count + node] = true;
      rows[node * width + width - 1] = node;
    }
    auto outputs = Call(decode_, {token_tensor, depth_tensor, ancestors, history, encoded},
                        decode_weights_)
                       .cast<ffi::Array<ffi::Any>>();
    Tensor log_probs = outputs[0].cast<Tensor>();  // (count, vocab)
    int64_t vocab = log_probs.size(1);
    std::vector<float> scores;
    for (size_t row = 0; row < hypotheses.size(); ++row) {
      const Hypothesis& hypothesis = hypotheses[row].first;
      double sum = 0;
      for (size_t step = 0; step < paths[row].size(); ++step) {
        int64_t target = step < hypothesis.size() ? hypothesis[step] : sos_eos_;
        sum += Data<float>(log_probs)[paths[row][step] * vocab + target];
      }
      scores.push_back(static_cast<float>(sum));
    }
    return scores;
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
      for (const ffi::Any& feature : llvm_target.at(ffi::String("mattr")).cast<ffi::json::Array>()) {
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
  return AttentionRescoring(nbest, model.DecoderScores(encoded, nbest));
}

/*!
 * \brief [begin, end) sample ranges of the windows audio is transcribed in, as
 *        model/windows.py window_bounds: at most kMaxWindowSeconds each, each cut in the middle
 *        of the quietest 10 ms frame (least energy, the latest if tied) in the last
 *        kSearchSeconds of its window. Energies of int16-scale samples sum exactly in double, so
 *        the cuts are Python's.
 */
std::vector<std::pair<size_t, size_t>> WindowBounds(const std::vector<float>& samples,
                                                    int64_t sample_rate) {
  const size_t total = samples.size();
  const size_t longest = static_cast<size_t>(kMaxWindowSeconds * sample_rate);
  const size_t search = std::min(static_cast<size_t>(kSearchSeconds * sample_rate), longest / 2);
  const size_t shift = static_cast<size_t>(sample_rate / 100);  // 10 ms: the fbank's shift
  std::vector<std::pair<size_t, size_t>> bounds;
  size_t start = 0;
  while (total - start > longest) {
    size_t low = start + longest - search, frames = search / shift, quietest = 0;
    double least = std::numeric_limits<double>::infinity();
    for (size_t frame = 0; frame < frames; ++frame) {
      double energy = 0;
      for (size_t i = low + frame * shift; i < low + (frame + 1) * shift; ++i) {
        energy += static_cast<double>(samples[i]) * samples[i];
      }
      if (energy <= least) least = energy, quietest = frame;
    }
    size_t cut = low + quietest * shift + shift / 2;
    bounds.emplace_back(start, cut);
    start = cut;
  }
  bounds.emplace_back(start, total);
  return bounds;
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
