// twins_dump: decoding.h's functions on inputs read from stdin, one JSON line out per command,
// for tests/test_native_twins.py to compare with the host's Python. Commands (whitespace-separated
// numbers; floats as decimal text that reads back to the same float32 or double):
//
//   rescore N  (CTC ATTENTION LEN TOKEN...) x N
//   windows RATE N  SAMPLE x N
//   frames SAMPLES_PER_FRAME SAMPLES_FOR_ZERO_FRAMES MIN_FRAMES N  SAMPLES x N
//
// and Whisper's (bpe.h, whisper_decode.h):
//
//   vocabulary PATH N_VOCAB FIRST_SPECIAL N  (LEN ID...) x N    texts, stripped, or the error
//   utf8 N  (LEN BYTE...) x N                                   each as replaced UTF-8, in hex
//   spaces                                                      the code points StripSpaces drops
//   greedy VOCAB PROMPT_LEN EOT NO_SPEECH TIMESTAMP_BEGIN N_SUPPRESS ID... N_BEGIN ID...
//          MAX_NEW NO_SPEECH_THRESHOLD LOG_PROB_THRESHOLD ROWS  LOGIT x (ROWS * VOCAB)
//          (the scripted decoder: the prompt's rows, then one row per later step)
//   whisper_windows HOP WINDOW_FRAMES SILENT_PEAK N  SAMPLE x N
//   padded HOP REFLECT_PAD PAD_SAMPLES N  SAMPLE x N

#include <fstream>
#include <iomanip>
#include <iostream>
#include <iterator>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "bpe.h"
#include "decoding.h"
#include "whisper_decode.h"

namespace {

using tinyasr::Hypothesis;
using tinyasr::Scored;

/*! \brief "name": [values], floats with 9 significant digits (float32 round-trips). */
template <typename T>
void PrintList(const char* name, const std::vector<T>& values, bool last = false) {
  std::cout << '"' << name << "\": [";
  for (size_t i = 0; i < values.size(); ++i) std::cout << (i ? ", " : "") << +values[i];
  std::cout << ']' << (last ? "" : ", ");
}

/*! \brief `count` n-best entries: CTC score, attention score (into `attention`), tokens. */
std::vector<Scored> ReadNbest(size_t count, std::vector<float>& attention) {
  std::vector<Scored> hypotheses(count);
  for (Scored& hypothesis : hypotheses) {
    float score = 0;
    std::cin >> hypothesis.second >> score;
    attention.push_back(score);
    size_t length = 0;
    std::cin >> length;
    hypothesis.first.resize(length);
    for (int64_t& token : hypothesis.first) std::cin >> token;
  }
  return hypotheses;
}

std::vector<int64_t> ReadIds() {
  size_t count = 0;
  std::cin >> count;
  std::vector<int64_t> ids(count);
  for (int64_t& id : ids) std::cin >> id;
  return ids;
}

/*! \brief A JSON string of UTF-8 text. */
std::string Quoted(const std::string& text) {
  std::string out = "\"";
  for (char c : text) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char escaped[8];
      std::snprintf(escaped, sizeof escaped, "\\u%04x", c);
      out += escaped;
    } else {
      out += c;
    }
  }
  return out + '"';
}

std::string Hex(const std::string& bytes) {
  std::string out;
  for (char c : bytes) {
    char pair[3];
    std::snprintf(pair, sizeof pair, "%02x", static_cast<unsigned char>(c));
    out += pair;
  }
  return out;
}

void Vocabulary() {
  std::string path;
  int64_t size = 0, first_special = 0;
  size_t count = 0;
  std::cin >> path >> size >> first_special >> count;
  std::vector<std::vector<int64_t>> lists;
  for (size_t i = 0; i < count; ++i) lists.push_back(ReadIds());
  try {
    std::ifstream in(path, std::ios::binary);
    std::optional<std::string> contents;
    if (in) contents = std::string(std::istreambuf_iterator<char>(in), {});
    tinyasr::ByteLevelVocabulary vocabulary(path, std::move(contents), size, first_special);
    std::string texts, stripped;
    for (size_t i = 0; i < lists.size(); ++i) {
      std::string text = vocabulary.Decode(lists[i]);
      texts += (i ? ", " : "") + Quoted(text);
      stripped += (i ? ", " : "") + Quoted(tinyasr::StripSpaces(text));
    }
    std::cout << "\"texts\": [" << texts << "], \"stripped\": [" << stripped << ']';
  } catch (const tinyasr::InputError& error) {
    std::cout << "\"error\": " << Quoted(error.what());
  }
}

void Greedy() {
  tinyasr::WhisperRules rules;
  int64_t vocab = 0, prompt = 0;
  size_t rows = 0;
  std::cin >> vocab >> prompt >> rules.eot >> rules.no_speech >> rules.timestamp_begin;
  rules.sot_sequence.assign(prompt, 0);  // the scripted decoder ignores its tokens
  rules.suppress_ids = ReadIds();
  rules.suppress_ids_begin = ReadIds();
  std::cin >> rules.max_new_tokens >> rules.no_speech_threshold >> rules.log_prob_threshold >>
      rows;
  std::vector<float> script(rows * vocab);
  for (float& value : script) std::cin >> value;
  size_t used = 0;  // rows handed out so far
  auto step = [&](const std::vector<int64_t>& tokens) {
    if (used + tokens.size() > rows) throw std::runtime_error("the script ran out of rows");
    std::vector<float> logits(script.begin() + used * vocab,
                              script.begin() + (used + tokens.size()) * vocab);
    used += tokens.size();
    return logits;
  };
  tinyasr::Suppression suppression(rules, vocab);
  tinyasr::WhisperResult result = tinyasr::GreedyWindow(rules, vocab, suppression, step);
  PrintList("tokens", result.tokens);
  std::cout << std::setprecision(17) << "\"sum_logprob\": " << result.sum_logprob
            << ", \"no_speech_prob\": " << result.no_speech_prob
            << ", \"silence\": " << (result.IsSilence(rules) ? "true" : "false")
            << std::setprecision(9);
}

}  // namespace

int main() {
  std::cout << std::setprecision(9);
  std::string command;
  while (std::cin >> command) {
    std::cout << '{';
    if (command == "rescore") {
      size_t count = 0;
      std::cin >> count;
      std::vector<float> attention;
      std::vector<Scored> nbest = ReadNbest(count, attention);
      std::cout << "\"best\": " << tinyasr::AttentionRescoring(nbest, attention);
    } else if (command == "windows") {
      int64_t rate = 0;
      size_t count = 0;
      std::cin >> rate >> count;
      std::vector<float> samples(count);
      for (float& sample : samples) std::cin >> sample;
      std::cout << "\"bounds\": [";
      auto bounds = tinyasr::WindowBounds(samples, rate);
      for (size_t i = 0; i < bounds.size(); ++i) {
        std::cout << (i ? ", " : "") << '[' << bounds[i].first << ", " << bounds[i].second << ']';
      }
      std::cout << ']';
    } else if (command == "frames") {
      tinyasr::Framing framing{0, 0, 0, 0};
      size_t count = 0;
      std::cin >> framing.samples_per_frame >> framing.samples_for_zero_frames >>
          framing.min_frames >> count;
      std::vector<int64_t> frames, read;
      for (size_t i = 0; i < count; ++i) {
        int64_t samples = 0;
        std::cin >> samples;
        frames.push_back(framing.Frames(samples));
        read.push_back(framing.SamplesRead(static_cast<int64_t>(i)));
      }
      PrintList("frames", frames);
      PrintList("read", read, true);
    } else if (command == "vocabulary") {
      Vocabulary();
    } else if (command == "utf8") {
      size_t count = 0;
      std::cin >> count;
      std::cout << "\"hex\": [";
      for (size_t i = 0; i < count; ++i) {
        std::string bytes;
        for (int64_t byte : ReadIds()) bytes += static_cast<char>(byte);
        std::cout << (i ? ", " : "") << Quoted(Hex(tinyasr::ReplaceInvalidUtf8(bytes)));
      }
      std::cout << ']';
    } else if (command == "spaces") {
      std::vector<uint32_t> spaces;
      for (uint32_t point = 0; point < 0x110000; ++point) {
        if (tinyasr::IsPythonSpace(point)) spaces.push_back(point);
      }
      PrintList("spaces", spaces, true);
    } else if (command == "greedy") {
      Greedy();
    } else if (command == "whisper_windows") {
      tinyasr::WhisperAudio audio;
      size_t count = 0;
      std::cin >> audio.hop >> audio.window_frames >> audio.silent_peak >> count;
      std::vector<float> samples(count);
      for (float& sample : samples) std::cin >> sample;
      std::vector<int64_t> starts, silent;
      for (auto [start, is_silent] : audio.Windows(samples)) {
        starts.push_back(start);
        silent.push_back(is_silent);
      }
      PrintList("starts", starts);
      PrintList("silent", silent, true);
    } else if (command == "padded") {
      tinyasr::WhisperAudio audio;
      size_t count = 0;
      std::cin >> audio.hop >> audio.reflect_pad >> audio.pad_samples >> count;
      std::vector<float> samples(count);
      for (float& sample : samples) std::cin >> sample;
      PrintList("padded", audio.PaddedSignal(samples), true);
    } else {
      std::cerr << "twins_dump: unknown command " << command << std::endl;
      return 1;
    }
    std::cout << '}' << std::endl;
  }
  return 0;
}
