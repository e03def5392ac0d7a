// tinyasr-run: transcribe wav files on a board with a deployable, no Python on the board.
//
//   tinyasr-run [--beam N] [--mode MODE] DEPLOYABLE WAV...
//   tinyasr-transcribe [--beam N] [--mode MODE] WAV...   (`tinyasr compile --static`)
//
// Loads a deployable (`tinyasr compile --target BOARD`) into the runtime's Relax VM and prints
// one transcript per wav on stdout; timings and sizes go to stderr. Linked with a deployable's
// files and its model's code (`tinyasr compile --static`, embedded_files.h), the program is that
// deployable's transcriber and takes only wavs. The manifest's model family picks the code path:
//
// SAN-M (model.so, weights.bin, tokens.json, manifest.json): the front end (fbank + CMVN) is
// compiled into model.so, so the program only reads PCM samples (wav.h). Decoding is the host's:
// the CTC search is the same C++ (ctc_search.h), the prefix tree and attention rescoring
// (decoding.h) are twins of the host's Python, so a board prints exactly what the host prints:
// CTC greedy, CTC prefix beam search, or attention rescoring of the CTC n-best (the default).
// Audio longer than 30 s is transcribed in windows, exactly as model/network/windows.py cuts it
// for the host's recognizers (decoding.h WindowBounds), the windows' texts joined with a space,
// so memory stays bounded and a board prints the host's transcript of long audio too.
//
// Whisper (model.so with log_mel, encode and step, weights.bin, vocabulary.txt, manifest.json):
// greedy decoding with the host's prompt, suppression, token cap and silence gates, byte-level
// BPE detokenizing and 30 s windows (whisper_deployable.h); --beam and --mode are SAN-M's.
//
// Bad input (no deployable, a foreign or broken one, a wav in the wrong format) gets one line on
// stderr naming the file and exit code 2.

#include "ctc_search.h"
#include "decoding.h"
#include "deployable_io.h"
#include "wav.h"  // ReadWav, InputError
#include "whisper_deployable.h"

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

constexpr const char* kOptionsUsage =
    "[--beam N] [--mode ctc_greedy|ctc_prefix_beam|attention_rescoring]";
constexpr const char* kTokensFile = "tokens.json";  // a SAN-M deployable's token list

// ----------------------------------------------------------------------------- options

enum class Mode { kCtcGreedy, kCtcPrefixBeam, kAttentionRescoring };

struct Options {
  int beam = 10;
  Mode mode = Mode::kAttentionRescoring;
  bool decoding_given = false;  // --beam or --mode on the command line (SAN-M's options)
  std::string deployable;  // the directory, or this program when the deployable is linked in
  std::vector<std::string> wavs;
};

/*! \brief The options; `embedded`: the deployable is linked into this program (no argument). */
Options ParseOptions(int argc, char** argv, bool embedded) {
  Options opt;
  const std::string usage = embedded
      ? std::string("usage: ") + argv[0] + " " + kOptionsUsage + " WAV..."
      : std::string("usage: tinyasr-run ") + kOptionsUsage + " DEPLOYABLE WAV...";
  std::vector<std::string> positional;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "-h" || arg == "--help") {
      std::cout << usage << std::endl;
      std::exit(0);
    }
    if (arg != "--beam" && arg != "--mode") {
      if (arg.size() > 1 && arg[0] == '-') throw InputError("unknown option " + arg);
      positional.push_back(arg);
      continue;
    }
    if (i + 1 >= argc) throw InputError("missing value for " + arg);
    std::string value = argv[++i];
    opt.decoding_given = true;
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
  if (embedded) {
    if (positional.empty()) throw InputError("expected at least one wav; " + usage);
    opt.deployable = argv[0];
    opt.wavs = positional;
    return opt;
  }
  if (positional.size() < 2) {
    throw InputError("expected a deployable and at least one wav; " + usage);
  }
  opt.deployable = positional[0];
  opt.wavs.assign(positional.begin() + 1, positional.end());
  return opt;
}

// ----------------------------------------------------------------------------- SAN-M

/*! \brief A SAN-M deployable loaded into the Relax VM: encode, decoder scores, detokenize. */
class Deployable {
 public:
  explicit Deployable(const ManifestHeader& header)
      : source_(header.source), target_(header.target) {
    try {
      ReadManifest(header);
    } catch (const ffi::Error& error) {  // a missing field or one of the wrong type
      throw InputError(header.path + ": not a SAN-M deployable manifest (" + error.message() +
                       ")");
    }
    CheckMachine(header);
    LoadedFunctions loaded =
        LoadFunctionsAndWeights(header, {"encode", "decode"}, {encode_keys_, decode_keys_});
    encode_ = loaded.functions[0];
    decode_ = loaded.functions[1];
    encode_weights_ = loaded.weights[0];
    decode_weights_ = loaded.weights[1];
    LoadTokens();
  }

  const Framing& framing() const { return framing_; }
  const std::string& target() const { return target_; }
  int64_t code_bytes() const { return source_.CodeBytes(); }
  int64_t weight_bytes() const { return source_.Bytes(kWeightsFile); }

  /*!
   * \brief `count` int16-scale samples -> (1, frames, vocab) CTC log-probs, (1, frames, d)
   *        encoding; the samples are copied once, into the VM's input.
   */
  std::pair<Tensor, Tensor> Encode(const float* samples, size_t count) const {
    // at most max_frames: every window fits (checked on load), and model.so checks it too
    int64_t frames = framing_.Frames(static_cast<int64_t>(count));
    int64_t length = framing_.SamplesRead(frames);
    Tensor waveform = EmptyTensor({1, length}, DLDataType{kDLFloat, 32, 1});
    float* out = Data<float>(waveform);
    size_t used = std::min<size_t>(count, length);
    std::copy(samples, samples + used, out);
    std::fill(out + used, out + length, 0.0f);
    auto outputs = CallWithWeights(encode_, {ffi::Shape({frames}), waveform}, encode_weights_)
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
    auto outputs = CallWithWeights(decode_, {tokens, depths, ancestors, history, encoded},
                                   decode_weights_)
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
  void ReadManifest(const ManifestHeader& header) {
    const std::string& path = header.path;
    const ffi::json::Object* manifest = &header.manifest;
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
    // encode's memory is planned for at most max_frames frames: every window must fit.
    int64_t max_frames = IntField(audio, "max_frames");
    int64_t window_frames =
        framing_.Frames(static_cast<int64_t>(kMaxWindowSeconds * framing_.sample_rate));
    if (max_frames < window_frames) {
      throw InputError(path + ": max_frames " + std::to_string(max_frames) + " is under the " +
                       std::to_string(window_frames) + " frames of a " +
                       std::to_string(static_cast<int>(kMaxWindowSeconds)) + " s window");
    }
    encode_keys_ = FunctionWeights(header, "encode", {"sizes", "waveform"});
    decode_keys_ = FunctionWeights(header, "decode",
                                   {"tokens", "depths", "ancestors", "history", "memory"});
  }

  void LoadTokens() {
    const std::string path = source_.Path(kTokensFile);
    std::optional<ffi::json::Value> value = ParseJSON(source_.Read(kTokensFile));
    auto tokens = value ? value->try_cast<ffi::json::Array>() : std::nullopt;
    if (!tokens || static_cast<int64_t>(tokens->size()) != sos_eos_ + 1) {
      throw InputError(path + ": not the token list of this deployable");
    }
    for (const ffi::Any& token : *tokens) tokens_.push_back(token.cast<ffi::String>());
  }

  DeployableSource source_;
  std::string target_;
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

/*! \brief Totals over the wavs, for the last stderr line. */
struct Totals {
  double audio_s = 0, ms = 0;

  void Add(const std::string& wav, double audio, double encode_ms, double decode_ms,
           const std::string& extra = "") {
    audio_s += audio;
    ms += encode_ms + decode_ms;
    std::fprintf(stderr,
                 "tinyasr-run: %s: audio %.2f s, encode %.1f ms, decode %.1f ms, RTF %.3f%s\n",
                 wav.c_str(), audio, encode_ms, decode_ms,
                 (encode_ms + decode_ms) / 1000.0 / std::max(audio, 1e-9), extra.c_str());
  }

  void Print() const {
    std::fprintf(stderr,
                 "tinyasr-run: total: audio %.2f s, %.1f ms, RTF %.3f, peak RSS %.1f MiB\n",
                 audio_s, ms, ms / 1000.0 / std::max(audio_s, 1e-9), PeakRssMiB());
  }
};

template <typename Model>
void PrintLoaded(const Options& opt, const Model& model, Clock::time_point start) {
  std::fprintf(stderr, "tinyasr-run: %s (%s): code %lld bytes, weights %lld bytes, load %.1f ms\n",
               opt.deployable.c_str(), model.target().c_str(),
               static_cast<long long>(model.code_bytes()),
               static_cast<long long>(model.weight_bytes()), MillisSince(start));
}

/*! \brief Every wav through a SAN-M deployable, in the chosen decoding mode. */
void RunSanM(const Options& opt, const ManifestHeader& header) {
  Clock::time_point start = Clock::now();
  Deployable model(header);
  PrintLoaded(opt, model, start);
  Totals totals;
  for (const std::string& wav : opt.wavs) {
    std::vector<float> samples = ReadWav(wav, model.framing().sample_rate);
    auto bounds = WindowBounds(samples, model.framing().sample_rate);
    double encode_ms = 0, decode_ms = 0;
    std::string text;
    for (auto [begin, end] : bounds) {
      const Framing& framing = model.framing();
      // A window too short for one encoder frame says nothing (CompiledRecognizer's rule).
      if (static_cast<int64_t>(end - begin) < framing.SamplesRead(1)) {
        continue;
      }
      Clock::time_point encode_start = Clock::now();
      auto [log_probs, encoded] = model.Encode(samples.data() + begin, end - begin);
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
    totals.Add(wav, static_cast<double>(samples.size()) / model.framing().sample_rate, encode_ms,
               decode_ms);
  }
  totals.Print();
}

/*! \brief Every wav through a Whisper deployable (greedy; whisper_deployable.h). */
void RunWhisper(const Options& opt, const ManifestHeader& header) {
  if (opt.decoding_given) {
    throw InputError(opt.deployable + ": a Whisper deployable decodes greedily; --beam and "
                     "--mode are for SAN-M deployables");
  }
  Clock::time_point start = Clock::now();
  WhisperDeployable model(header);
  PrintLoaded(opt, model, start);
  Totals totals;
  for (const std::string& wav : opt.wavs) {
    std::vector<float> samples = ReadWav(wav, model.audio().sample_rate);
    WhisperTranscript transcript = model.Transcribe(samples);
    std::cout << transcript.text << std::endl;
    char extra[96];
    std::snprintf(extra, sizeof extra, ", log-mel %.1f ms (in encode), %lld tokens, %.1f ms/token",
                  transcript.front_end_ms, static_cast<long long>(transcript.tokens),
                  transcript.decode_ms / std::max<double>(1, transcript.tokens));
    totals.Add(wav, static_cast<double>(samples.size()) / model.audio().sample_rate,
               transcript.front_end_ms + transcript.encode_ms, transcript.decode_ms, extra);
  }
  totals.Print();
}

int Main(int argc, char** argv) {
  if (argc < 1) throw InputError("no program name");
  std::optional<DeployableSource> embedded = DeployableSource::Embedded(argv[0]);
  Options opt = ParseOptions(argc, argv, embedded.has_value());
  ManifestHeader header =
      ReadManifestHeader(embedded ? *embedded : DeployableSource::Directory(opt.deployable));
  if (header.family == kFamilyWhisper) {
    RunWhisper(opt, header);
  } else {
    RunSanM(opt, header);
  }
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
