// A Whisper deployable in tinyasr-run (compile/whisper_deployable.py: model.so with log_mel,
// encode and step, weights.bin, vocabulary.txt, manifest.json "family": "whisper"): the board's
// twin of targets/host/whisper_runner.py with model/whisper/recognizer.py's greedy path.
//
// An utterance's log-mel is computed once (normalized against its loudest frame, as the host
// does), then cut into 30 s windows (window_frames each, the last zero-padded); a silent window
// is skipped, every other one is encoded and decoded greedily against the step function's KV
// cache (whisper_decode.h), a window where Whisper's no-speech rule fires gives no text, and the
// windows' stripped texts are joined with a space. Every rule and constant comes from the
// manifest, written by the Python that defines them.

#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "bpe.h"
#include "deployable_io.h"
#include "whisper_decode.h"

namespace tinyasr {

constexpr const char* kVocabularyFile = "vocabulary.txt";

/*! \brief One utterance's Whisper transcript and where its time went. */
struct WhisperTranscript {
  std::string text;
  double front_end_ms = 0, encode_ms = 0, decode_ms = 0;
  int64_t tokens = 0;  // decoded tokens, <|endoftext|> included
};

class WhisperDeployable {
 public:
  explicit WhisperDeployable(const ManifestHeader& header)
      : source_(header.source), target_(header.target) {
    try {
      ReadManifest(header);
    } catch (const ffi::Error& error) {  // a missing field or one of the wrong type
      throw InputError(header.path + ": not a Whisper deployable manifest (" + error.message() +
                       ")");
    }
    CheckMachine(header);
    // The vocabulary before the library and weights: a missing one is found in milliseconds.
    vocabulary_ = std::make_unique<ByteLevelVocabulary>(
        source_.Path(kVocabularyFile), source_.Read(kVocabularyFile), n_vocab_, rules_.eot);
    LoadedFunctions loaded = LoadFunctionsAndWeights(header, {"log_mel", "encode", "step"},
                                                     {log_mel_keys_, encode_keys_, step_keys_});
    log_mel_ = loaded.functions[0];
    encode_ = loaded.functions[1];
    step_ = loaded.functions[2];
    weights_ = loaded.weights;
    suppression_.emplace(rules_, n_vocab_);
  }

  const std::string& target() const { return target_; }
  const WhisperAudio& audio() const { return audio_; }
  int64_t code_bytes() const { return source_.CodeBytes(); }
  int64_t weight_bytes() const { return source_.Bytes(kWeightsFile); }

  /*! \brief int16-scale samples at audio().sample_rate -> Whisper's text. */
  WhisperTranscript Transcribe(const std::vector<float>& samples) const {
    using Clock = std::chrono::steady_clock;
    auto since = [](Clock::time_point start) {
      return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
    };
    WhisperTranscript transcript;
    std::vector<std::pair<int64_t, bool>> windows = audio_.Windows(samples);
    if (windows.empty()) return transcript;
    Clock::time_point start = Clock::now();
    Tensor features = LogMel(samples);  // (n_mels, frames)
    transcript.front_end_ms = since(start);
    const int64_t frames = features.size(1);
    for (auto [first, silent] : windows) {
      if (silent) continue;
      start = Clock::now();
      Tensor window = EmptyTensor({1, n_mels_, audio_.window_frames}, kFloat32);
      const int64_t used = std::min(audio_.window_frames, frames - first);
      for (int64_t mel = 0; mel < n_mels_; ++mel) {
        const float* from = Data<float>(features) + mel * frames + first;
        float* to = Data<float>(window) + mel * audio_.window_frames;
        std::copy(from, from + used, to);
        std::fill(to + used, to + audio_.window_frames, 0.0f);  // frontend.pad_window
      }
      auto encoded = CallWithWeights(encode_, {window}, weights_[1]).cast<ffi::Array<ffi::Any>>();
      if (static_cast<int64_t>(encoded.size()) != 1 + 2 * n_layers_) {
        throw InputError(source_.LibraryPath() + ": encode does not return the encoding and " +
                         "every decoder layer's cross-attention keys and values");
      }
      transcript.encode_ms += since(start);
      start = Clock::now();
      WhisperResult result = DecodeWindow(encoded);
      transcript.decode_ms += since(start);
      transcript.tokens += static_cast<int64_t>(result.tokens.size()) + 1;
      if (result.IsSilence(rules_)) continue;
      std::string text = StripSpaces(vocabulary_->Decode(result.tokens));
      if (!text.empty()) transcript.text += (transcript.text.empty() ? "" : " ") + text;
    }
    return transcript;
  }

 private:
  static constexpr DLDataType kFloat32{kDLFloat, 32, 1};
  static constexpr DLDataType kInt64{kDLInt, 64, 1};

  void ReadManifest(const ManifestHeader& header) {
    const std::string& path = header.path;
    ffi::json::Object dims = Field(header.manifest, "dims");
    n_vocab_ = IntField(dims, "n_vocab");
    n_mels_ = IntField(dims, "n_mels");
    n_text_ctx_ = IntField(dims, "n_text_ctx");
    n_heads_ = IntField(dims, "n_heads");
    n_layers_ = IntField(dims, "n_text_layers");
    const int64_t d_model = IntField(dims, "d_model");
    ffi::json::Object decoder = Field(header.manifest, "decoder");
    rules_.sot_sequence = IntListField(decoder, "sot_sequence");
    rules_.eot = IntField(decoder, "eot");
    rules_.no_speech = IntField(decoder, "no_speech");
    rules_.timestamp_begin = IntField(decoder, "timestamp_begin");
    rules_.suppress_ids = IntListField(decoder, "suppress_ids");
    rules_.suppress_ids_begin = IntListField(decoder, "suppress_ids_begin");
    rules_.max_new_tokens = IntField(decoder, "max_new_tokens");
    rules_.no_speech_threshold = NumberField(decoder, "no_speech_threshold");
    rules_.log_prob_threshold = NumberField(decoder, "log_prob_threshold");
    ffi::json::Object audio = Field(header.manifest, "audio");
    audio_ = {IntField(audio, "sample_rate"), IntField(audio, "hop"),
              IntField(audio, "reflect_pad"), IntField(audio, "pad_samples"),
              IntField(audio, "window_frames"), NumberField(audio, "silent_peak")};
    // Bounds before anything is sized or indexed from them.
    constexpr int64_t kMax = 1 << 20;
    auto in_range = [](int64_t value, int64_t low, int64_t high) {
      return value >= low && value <= high;
    };
    auto check = [&](bool ok, const std::string& what) {
      if (!ok) throw InputError(path + ": " + what);
    };
    check(in_range(n_vocab_, 1, kMax) && in_range(n_mels_, 1, 1024) &&
              in_range(n_text_ctx_, 1, 1 << 16) && in_range(n_heads_, 1, 1024) &&
              in_range(n_layers_, 1, 1024) && in_range(d_model, 1, 1 << 16) &&
              d_model % n_heads_ == 0,
          "dims out of range");
    head_dim_ = d_model / n_heads_;
    std::vector<int64_t> ids = {rules_.eot, rules_.no_speech, rules_.timestamp_begin};
    for (auto* list : {&rules_.sot_sequence, &rules_.suppress_ids, &rules_.suppress_ids_begin}) {
      ids.insert(ids.end(), list->begin(), list->end());
    }
    check(std::all_of(ids.begin(), ids.end(),
                      [&](int64_t id) { return in_range(id, 0, n_vocab_ - 1); }),
          "decoder token ids must be below n_vocab " + std::to_string(n_vocab_));
    const int64_t prompt = static_cast<int64_t>(rules_.sot_sequence.size());
    check(prompt >= 1 && in_range(rules_.max_new_tokens, 0, n_text_ctx_ - prompt),
          "decoder.max_new_tokens " + std::to_string(rules_.max_new_tokens) +
              " does not fit the " + std::to_string(n_text_ctx_) + "-slot cache after the prompt");
    check(in_range(audio_.sample_rate, 1, kMax) && in_range(audio_.hop, 1, kMax) &&
              in_range(audio_.reflect_pad, 0, 2 * audio_.hop - 1) &&
              in_range(audio_.pad_samples, 0, audio_.hop + 2 * audio_.reflect_pad) &&
              in_range(audio_.window_frames, 1, kMax),
          "audio layout out of range");
    log_mel_keys_ = FunctionWeights(header, "log_mel", {"sizes", "signal"});
    encode_keys_ = FunctionWeights(header, "encode", {"mel"});
    std::vector<std::string> step_inputs = {"tokens", "positions"};
    for (int64_t i = 0; i < 4 * n_layers_; ++i) {
      step_inputs.push_back("caches_" + std::to_string(i));
    }
    step_keys_ = FunctionWeights(header, "step", step_inputs);
  }

  /*! \brief The utterance's (n_mels, len / hop) log-mel, computed by the library. */
  Tensor LogMel(const std::vector<float>& samples) const {
    std::vector<float> padded = audio_.PaddedSignal(samples);
    Tensor signal = EmptyTensor({static_cast<int64_t>(padded.size())}, kFloat32);
    std::copy(padded.begin(), padded.end(), Data<float>(signal));
    const int64_t frames = static_cast<int64_t>(samples.size()) / audio_.hop;
    auto outputs = CallWithWeights(log_mel_, {ffi::Shape({frames}), signal}, weights_[0]);
    auto tensor = outputs.try_cast<Tensor>();
    Tensor features = tensor ? *tensor : outputs.cast<ffi::Array<ffi::Any>>()[0].cast<Tensor>();
    CheckShape(features, {n_mels_, frames}, "log_mel's output");
    return features;
  }

  /*!
   * \brief Refuses a library output whose shape is not what the manifest says (float32): the
   *        loops that read it are sized from the manifest.
   */
  void CheckShape(const Tensor& tensor, const std::vector<int64_t>& shape,
                  const char* what) const {
    bool same = tensor.ndim() == static_cast<int>(shape.size()) &&
                tensor.dtype() == kFloat32;
    for (size_t i = 0; same && i < shape.size(); ++i) same = tensor.size(i) == shape[i];
    if (!same) {
      throw InputError(source_.LibraryPath() + ": " + what +
                       " does not have the shape the manifest's dims give");
    }
  }

  /*! \brief Greedy decoding of one encoded window ([encoded, cross_k..., cross_v...]). */
  WhisperResult DecodeWindow(const ffi::Array<ffi::Any>& encoded) const {
    std::vector<Tensor> self_caches;  // self_k..., self_v...: zeros, batch 1
    for (int64_t i = 0; i < 2 * n_layers_; ++i) {
      Tensor cache = EmptyTensor({1, n_heads_, n_text_ctx_, head_dim_}, kFloat32);
      std::fill(Data<float>(cache), Data<float>(cache) + n_heads_ * n_text_ctx_ * head_dim_, 0.0f);
      self_caches.push_back(cache);
    }
    std::vector<Tensor> cross;
    for (size_t i = 1; i < encoded.size(); ++i) cross.push_back(encoded[i].cast<Tensor>());
    int64_t position = 0;
    auto step = [&](const std::vector<int64_t>& tokens) {
      const int64_t count = static_cast<int64_t>(tokens.size());
      Tensor token_tensor = EmptyTensor({1, count}, kInt64);
      Tensor positions = EmptyTensor({count}, kInt64);
      for (int64_t i = 0; i < count; ++i) {
        Data<int64_t>(token_tensor)[i] = tokens[i];
        Data<int64_t>(positions)[i] = position + i;
      }
      position += count;
      std::vector<ffi::Any> inputs = {token_tensor, positions};
      inputs.insert(inputs.end(), self_caches.begin(), self_caches.end());
      inputs.insert(inputs.end(), cross.begin(), cross.end());
      auto outputs = CallWithWeights(step_, inputs, weights_[2]).cast<ffi::Array<ffi::Any>>();
      for (size_t i = 0; i < self_caches.size(); ++i) {
        self_caches[i] = outputs[i + 1].cast<Tensor>();
      }
      Tensor logits = outputs[0].cast<Tensor>();  // (1, count, n_vocab)
      CheckShape(logits, {1, count, n_vocab_}, "step's logits");
      return std::vector<float>(Data<float>(logits), Data<float>(logits) + count * n_vocab_);
    };
    return GreedyWindow(rules_, n_vocab_, *suppression_, step);
  }

  DeployableSource source_;
  std::string target_;
  int64_t n_vocab_ = 0, n_mels_ = 0, n_text_ctx_ = 0, n_heads_ = 0, n_layers_ = 0, head_dim_ = 0;
  WhisperRules rules_;
  WhisperAudio audio_;
  std::vector<std::string> log_mel_keys_, encode_keys_, step_keys_;
  std::unique_ptr<ByteLevelVocabulary> vocabulary_;
  ffi::Function log_mel_, encode_, step_;
  std::vector<std::vector<Tensor>> weights_;  // log_mel's, encode's, step's
  std::optional<Suppression> suppression_;
};

}  // namespace tinyasr
