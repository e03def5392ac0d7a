// The board transcriber's decoding steps around the CTC search, in plain C++17 (no TVM).
// The prefix tree is the host's too (Python calls it through decoding_capi.cc); the others are
// C++ twins of the host's Python, each checked against it by tests/test_native_twins.py.
//
//   BuildDecoderTree, PathScores         (model/decoding/prefix_tree.py calls these)
//   AttentionRescoring                   model/decoding/search.py attention_rescoring
//   WindowBounds                         model/network/windows.py window_bounds
//   Framing                              targets/host/runner.py's (model/network/framing.py)

#pragma once

#include <algorithm>
#include <cstdint>
#include <limits>
#include <map>
#include <utility>
#include <vector>

#include "ctc_search.h"

namespace tinyasr {

constexpr double kRescoringCtcWeight = 0.5;  // DecodeOptions.rescoring_ctc_weight
constexpr double kMaxWindowSeconds = 30.0;   // model/network/windows.py MAX_SECONDS
constexpr double kSearchSeconds = 5.0;       // model/network/windows.py SEARCH_SECONDS

/*!
 * \brief The decoder's inputs for the n-best's prefix tree (model/decoding/prefix_tree.py
 *        tells why): nodes in order of first use (every ancestor before its descendants), the
 *        root <sos> alone.
 */
struct DecoderTree {
  int64_t count = 0;               // U, the nodes
  int64_t width = 0;               // K, the rows each node's FSMN reads
  std::vector<int64_t> tokens;     // (U,): each node's last token, <sos> at the root
  std::vector<int64_t> depths;     // (U,): each node's position (its prefix length)
  std::vector<uint8_t> ancestors;  // (U, U): [u, v] = v is u or an ancestor of u
  std::vector<int64_t> history;    // (U, K): [u, i] = u's ancestor K-1-i levels up; U if none
  std::vector<std::vector<int64_t>> paths;  // per hypothesis, its nodes from the root

  /*! \brief PathScores of this tree's paths. */
  std::vector<float> Scores(const std::vector<Scored>& hypotheses, const float* log_probs,
                            int64_t vocab, int64_t sos_eos) const;
};

/*!
 * \brief Per hypothesis, the sum of its path's log-probs of their targets (its tokens, then
 *        <eos>), in double one term after another, rounded to float once.
 *        log_probs: (nodes, vocab) row-major; paths: per hypothesis, its nodes from the root.
 */
inline std::vector<float> PathScores(const std::vector<std::vector<int64_t>>& paths,
                                     const std::vector<Scored>& hypotheses,
                                     const float* log_probs, int64_t vocab, int64_t sos_eos) {
  std::vector<float> scores;
  for (size_t row = 0; row < hypotheses.size(); ++row) {
    const Hypothesis& hypothesis = hypotheses[row].first;
    double sum = 0;
    for (size_t step = 0; step < paths[row].size(); ++step) {
      int64_t target = step < hypothesis.size() ? hypothesis[step] : sos_eos;
      sum += log_probs[paths[row][step] * vocab + target];
    }
    scores.push_back(static_cast<float>(sum));
  }
  return scores;
}

inline std::vector<float> DecoderTree::Scores(const std::vector<Scored>& hypotheses,
                                              const float* log_probs, int64_t vocab,
                                              int64_t sos_eos) const {
  return PathScores(paths, hypotheses, log_probs, vocab, sos_eos);
}

/*! \brief The tree of every prefix of the hypotheses; width = the FSMN's kernel K. */
inline DecoderTree BuildDecoderTree(const std::vector<Scored>& hypotheses, int64_t sos_eos,
                                  int64_t width) {
  DecoderTree tree;
  std::map<std::pair<int64_t, int64_t>, int64_t> children;  // (node, token) -> child
  std::vector<int64_t> parents{-1};
  tree.tokens = {sos_eos};
  tree.depths = {0};
  for (const auto& scored : hypotheses) {
    int64_t node = 0;
    std::vector<int64_t> path{node};
    for (int64_t token : scored.first) {
      auto [child, added] =
          children.try_emplace({node, token}, static_cast<int64_t>(tree.tokens.size()));
      if (added) {
        tree.tokens.push_back(token);
        tree.depths.push_back(tree.depths[node] + 1);
        parents.push_back(node);
      }
      node = child->second;
      path.push_back(node);
    }
    tree.paths.push_back(std::move(path));
  }
  const int64_t count = static_cast<int64_t>(tree.tokens.size());
  tree.count = count;
  tree.width = width;
  tree.ancestors.assign(count * count, 0);
  tree.history.assign(count * width, count);  // count: the decoder's zero row
  uint8_t* ancestor = tree.ancestors.data();
  int64_t* rows = tree.history.data();
  for (int64_t node = 0; node < count; ++node) {
    int64_t parent = parents[node];
    if (parent >= 0) {
      std::copy_n(ancestor + parent * count, count, ancestor + node * count);
      std::copy_n(rows + parent * width + 1, width - 1, rows + node * width);
    }
    ancestor[node * count + node] = 1;
    rows[node * width + width - 1] = node;
  }
  return tree;
}

/*!
 * \brief The index of the n-best entry with the highest decoder score + weight * CTC score (the
 *        first on ties). The total is float32, as numpy adds float32 decoder scores and a Python
 *        float (NEP 50).
 */
inline size_t AttentionRescoring(const std::vector<Scored>& nbest,
                                 const std::vector<float>& attention_scores) {
  size_t best = 0;
  float best_total = -std::numeric_limits<float>::infinity();
  for (size_t i = 0; i < nbest.size(); ++i) {
    float total = attention_scores[i] + static_cast<float>(kRescoringCtcWeight * nbest[i].second);
    if (i == 0 || total > best_total) best = i, best_total = total;
  }
  return best;
}

/*! \brief A deployable's audio framing: how many samples the encoder reads for F frames. */
struct Framing {
  int64_t sample_rate;
  int64_t samples_per_frame;
  int64_t samples_for_zero_frames;
  int64_t min_frames;

  /*! \brief Encoder frames for `samples` (model/network/framing.py encoder_frames, closed
   *         form), at least min_frames: shorter audio is zero-padded. */
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

/*!
 * \brief [begin, end) sample ranges of the windows audio is transcribed in, as
 *        model/network/windows.py window_bounds: at most kMaxWindowSeconds each, each cut in the
 *        middle of the quietest 10 ms frame (least energy, the latest if tied) in the last
 *        kSearchSeconds of its window. Energies of int16-scale samples sum exactly in double,
 *        so the cuts are Python's.
 */
inline std::vector<std::pair<size_t, size_t>> WindowBounds(const std::vector<float>& samples,
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

}  // namespace tinyasr
