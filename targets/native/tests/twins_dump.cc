// twins_dump: decoding.h's functions on inputs read from stdin, one JSON line out per command,
// for tests/test_native_twins.py to compare with the host's Python. Commands (whitespace-separated
// numbers; floats as decimal text that reads back to the same float32 or double):
//
//   tree SOS WIDTH N  (LEN TOKEN...) x N  VOCAB  LOGPROB x (nodes * VOCAB)
//   rescore N  (CTC ATTENTION LEN TOKEN...) x N
//   windows RATE N  SAMPLE x N
//   frames SAMPLES_PER_FRAME SAMPLES_FOR_ZERO_FRAMES MIN_FRAMES N  SAMPLES x N

#include <iomanip>
#include <iostream>
#include <string>
#include <vector>

#include "decoding.h"

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

std::vector<Scored> ReadHypotheses(size_t count, bool scored,
                                   std::vector<float>* attention = nullptr) {
  std::vector<Scored> hypotheses(count);
  for (Scored& hypothesis : hypotheses) {
    if (scored) {
      float score = 0;
      std::cin >> hypothesis.second >> score;
      attention->push_back(score);
    }
    size_t length = 0;
    std::cin >> length;
    hypothesis.first.resize(length);
    for (int64_t& token : hypothesis.first) std::cin >> token;
  }
  return hypotheses;
}

}  // namespace

int main() {
  std::cout << std::setprecision(9);
  std::string command;
  while (std::cin >> command) {
    std::cout << '{';
    if (command == "tree") {
      int64_t sos_eos = 0, width = 0, vocab = 0;
      size_t count = 0;
      std::cin >> sos_eos >> width >> count;
      std::vector<Scored> hypotheses = ReadHypotheses(count, false);
      tinyasr::DecoderTree tree = tinyasr::BuildDecoderTree(hypotheses, sos_eos, width);
      std::cin >> vocab;
      std::vector<float> log_probs(tree.count * vocab);
      for (float& value : log_probs) std::cin >> value;
      PrintList("tokens", tree.tokens);
      PrintList("depths", tree.depths);
      PrintList("ancestors", tree.ancestors);
      PrintList("history", tree.history);
      std::cout << "\"paths\": [";
      for (size_t row = 0; row < tree.paths.size(); ++row) {
        std::cout << (row ? ", [" : "[");
        for (size_t i = 0; i < tree.paths[row].size(); ++i) {
          std::cout << (i ? ", " : "") << tree.paths[row][i];
        }
        std::cout << ']';
      }
      std::cout << "], ";
      PrintList("scores", tree.Scores(hypotheses, log_probs.data(), vocab, sos_eos), true);
    } else if (command == "rescore") {
      size_t count = 0;
      std::cin >> count;
      std::vector<float> attention;
      std::vector<Scored> nbest = ReadHypotheses(count, true, &attention);
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
    } else {
      std::cerr << "twins_dump: unknown command " << command << std::endl;
      return 1;
    }
    std::cout << '}' << std::endl;
  }
  return 0;
}
