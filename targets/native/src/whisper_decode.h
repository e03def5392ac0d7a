// Whisper's greedy decoding of one 30 s window and its audio framing, in plain C++17 (no TVM):
// the twins of model/whisper/decoding.py (greedy_search, Suppression, SearchResult.is_silence),
// model/whisper/recognizer.py (window_starts: the windows and their silence gate) and
// model/whisper/audio.py (padded_signal), checked against them by tests/test_native_twins.py.
// Every constant comes from the deployable's manifest ("decoder", "audio"), which
// compile/whisper_manifest.py writes from the Python definitions.

#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <utility>
#include <vector>

namespace tinyasr {

/*! \brief What the decoder needs to know (manifest "decoder"). */
struct WhisperRules {
  std::vector<int64_t> sot_sequence;  // the prompt: <|startoftranscript|> <|notimestamps|>
  int64_t eot = 0;                    // <|endoftext|>
  int64_t no_speech = 0;              // <|nocaptions|>: its probability at the prompt's first
  int64_t timestamp_begin = 0;        // <|0.00|>: it and every id above are suppressed
  std::vector<int64_t> suppress_ids;        // suppressed at every step
  std::vector<int64_t> suppress_ids_begin;  // also at the first step (a blank, <|endoftext|>)
  int64_t max_new_tokens = 0;         // the cap on generated tokens
  double no_speech_threshold = 0;     // silence: no-speech probability above this
  double log_prob_threshold = 0;      // and the mean log-probability below this
};

/*! \brief One window's decoding (decoding.py SearchResult). */
struct WhisperResult {
  std::vector<int64_t> tokens;  // text tokens, without the prompt and <|endoftext|>
  double sum_logprob = 0;       // including <|endoftext|>'s, when it was chosen
  double no_speech_prob = 0;

  double AvgLogprob() const { return sum_logprob / static_cast<double>(tokens.size() + 1); }

  /*! \brief Whisper's no-speech rule: the window yields no text. */
  bool IsSilence(const WhisperRules& rules) const {
    return no_speech_prob > rules.no_speech_threshold && AvgLogprob() < rules.log_prob_threshold;
  }
};

/*! \brief The tokens never allowed, and those not allowed first (decoding.py Suppression). */
struct Suppression {
  std::vector<uint8_t> always, begin;

  Suppression(const WhisperRules& rules, int64_t vocab) : always(vocab, 0) {
    for (int64_t id : rules.suppress_ids) always[id] = 1;
    for (int64_t id = rules.timestamp_begin; id < vocab; ++id) always[id] = 1;
    begin = always;
    for (int64_t id : rules.suppress_ids_begin) begin[id] = 1;
  }
};

/*!
 * \brief The most likely allowed token of one row of logits and its log-probability under
 *        log_softmax of the masked row: log p = x - max - log(sum exp(x - max)), float32 terms
 *        as torch.log_softmax, the first of equal maxima as torch.argmax.
 */
inline std::pair<int64_t, float> BestAllowed(const float* logits, int64_t vocab,
                                             const std::vector<uint8_t>& masked) {
  int64_t best = -1;
  float max = -std::numeric_limits<float>::infinity();
  for (int64_t id = 0; id < vocab; ++id) {
    if (!masked[id] && (best < 0 || logits[id] > max)) {
      best = id;
      max = logits[id];
    }
  }
  double sum = 0;
  for (int64_t id = 0; id < vocab; ++id) {
    if (!masked[id]) sum += std::exp(static_cast<double>(logits[id] - max));
  }
  return {best, (logits[best] - max) - static_cast<float>(std::log(sum))};
}

/*! \brief softmax(logits)[token] of an unmasked row (the no-speech probability). */
inline double SoftmaxAt(const float* logits, int64_t vocab, int64_t token) {
  float max = *std::max_element(logits, logits + vocab);
  double sum = 0;
  for (int64_t id = 0; id < vocab; ++id) sum += std::exp(static_cast<double>(logits[id] - max));
  return std::exp(static_cast<double>(logits[token] - max)) / sum;
}

/*!
 * \brief Greedy search of one window (decoding.py greedy_search): the prompt in one step (the
 *        logits at its first token give the no-speech probability, those at its last the first
 *        text token), then one token a step until <|endoftext|> or the cap.
 *
 *  step(tokens) runs the decoder on `tokens` at the next positions and returns their logits,
 *  (tokens.size(), vocab) row-major.
 */
inline WhisperResult GreedyWindow(const WhisperRules& rules, int64_t vocab,
                                  const Suppression& suppression,
                                  const std::function<std::vector<float>(
                                      const std::vector<int64_t>&)>& step) {
  WhisperResult result;
  std::vector<float> logits = step(rules.sot_sequence);
  result.no_speech_prob = SoftmaxAt(logits.data(), vocab, rules.no_speech);
  const float* row = logits.data() + (rules.sot_sequence.size() - 1) * vocab;
  for (int64_t i = 0; i < rules.max_new_tokens; ++i) {
    auto [token, log_prob] = BestAllowed(row, vocab, i == 0 ? suppression.begin
                                                            : suppression.always);
    result.sum_logprob += log_prob;
    if (token == rules.eot) break;
    result.tokens.push_back(token);
    logits = step({token});
    row = logits.data();
  }
  return result;
}

/*! \brief How audio reaches log_mel and encode (manifest "audio"). */
struct WhisperAudio {
  int64_t sample_rate = 0;
  int64_t hop = 0;            // samples per log-mel frame
  int64_t reflect_pad = 0;    // N_FFT / 2
  int64_t pad_samples = 0;    // log_mel reads hop * frames + this many samples
  int64_t window_frames = 0;  // frames per encoder window (30 s)
  double silent_peak = 0;     // a window whose |sample| never exceeds this is silent

  /*!
   * \brief log_mel's input (model/whisper/audio.py padded_signal): the samples with `hop` zeros
   *        appended, reflect-padded by `reflect_pad` each side (the edge not repeated), cut to
   *        hop * frames + pad_samples. Needs at least one hop of samples.
   */
  std::vector<float> PaddedSignal(const std::vector<float>& samples) const {
    const int64_t n = static_cast<int64_t>(samples.size()) + hop;  // with the zeros
    auto signal = [&](int64_t i) {
      return i < static_cast<int64_t>(samples.size()) ? samples[i] : 0.0f;
    };
    const int64_t frames = static_cast<int64_t>(samples.size()) / hop;
    std::vector<float> padded(hop * frames + pad_samples);
    for (int64_t j = 0; j < static_cast<int64_t>(padded.size()); ++j) {
      int64_t i = j - reflect_pad;  // index into the signal, reflected at both ends
      if (i < 0) i = -i;
      if (i >= n) i = 2 * (n - 1) - i;
      padded[j] = signal(i);
    }
    return padded;
  }

  /*!
   * \brief The windows of an utterance (recognizer.py window_starts): each window's first
   *        log-mel frame, every window_frames frames, with whether its samples are silent. No
   *        windows for audio shorter than one hop.
   */
  std::vector<std::pair<int64_t, bool>> Windows(const std::vector<float>& samples) const {
    std::vector<std::pair<int64_t, bool>> windows;
    if (static_cast<int64_t>(samples.size()) < hop) return windows;
    const int64_t frames = static_cast<int64_t>(samples.size()) / hop;
    for (int64_t start = 0; start < frames; start += window_frames) {
      size_t begin = std::min(samples.size(), static_cast<size_t>(start * hop));
      size_t end = std::min(samples.size(), static_cast<size_t>((start + window_frames) * hop));
      bool silent = true;
      for (size_t i = begin; i < end && silent; ++i) {
        silent = std::fabs(samples[i]) <= silent_peak;
      }
      windows.emplace_back(start, silent);
    }
    return windows;
  }
};

}  // namespace tinyasr
