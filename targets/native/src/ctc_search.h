// CTC search over one utterance's (frames, vocab) log-probabilities: greedy and prefix beam.
//
// One implementation for the host and the boards: Python calls it through a tvm-ffi module built
// on first use (tinyasr.model.decoding.search), the board transcriber (tinyasr-run) compiles it
// in, so a board prints exactly what the host prints.

#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <limits>
#include <numeric>
#include <utility>
#include <vector>

namespace tinyasr {

using Hypothesis = std::vector<int64_t>;
using Scored = std::pair<Hypothesis, double>;

constexpr double kNegInf = -std::numeric_limits<double>::infinity();

/*!
 * \brief log(sum(exp(values))), -inf when every value is. The terms exp(0) = 1 and
 *        exp(-inf) = 0 are added without calling exp, and log(1) = 0 without calling log: the
 *        same bits as the plain formula, at a third of its cost in the search.
 */
inline double LogAdd(std::initializer_list<double> values) {
  double top = std::max(values);
  if (top == kNegInf) return kNegInf;
  double sum = 0;
  for (double value : values) {
    if (value == top) {
      sum += 1.0;
    } else if (value != kNegInf) {
      sum += std::exp(value - top);
    }
  }
  return sum == 1.0 ? top : top + std::log(sum);
}

/*! \brief Row-major (frames, vocab) float32 log-probabilities of one utterance. */
struct LogProbs {
  const float* data;
  int64_t frames;
  int64_t vocab;
  const float* frame(int64_t t) const { return data + t * vocab; }
};

/*! \brief Best token per frame (the first on ties), repeats collapsed, blanks dropped. */
inline Hypothesis CtcGreedy(const LogProbs& log_probs, int64_t blank = 0) {
  Hypothesis tokens;
  int64_t previous = blank;
  for (int64_t t = 0; t < log_probs.frames; ++t) {
    const float* frame = log_probs.frame(t);
    int64_t best = std::max_element(frame, frame + log_probs.vocab) - frame;
    if (best != previous && best != blank) tokens.push_back(best);
    previous = best;
  }
  return tokens;
}

/*! \brief The `beam` likeliest tokens of a frame, likeliest first; ties go to the higher index
 *         (numpy's `argsort(frame, kind="stable")[::-1][:beam]`). */
inline std::vector<int64_t> TopTokens(const float* frame, int64_t vocab, int beam) {
  std::vector<int64_t> order(vocab);
  std::iota(order.begin(), order.end(), 0);
  auto count = std::min<int64_t>(beam, vocab);
  std::partial_sort(order.begin(), order.begin() + count, order.end(),
                    [frame](int64_t a, int64_t b) {
                      return frame[a] > frame[b] || (frame[a] == frame[b] && a > b);
                    });
  order.resize(count);
  return order;
}

/*! \brief Label prefixes as nodes of a tree, one number each, so a prefix is found and
 *         extended in time independent of its length. Node 0 is the empty prefix. A node's
 *         children are a linked list (first child, next sibling): a prefix has a handful, and
 *         no node allocates. */
class PrefixTree {
 public:
  static constexpr int64_t kEmpty = 0;

  int64_t Child(int64_t node, int64_t label) {
    for (int64_t child = first_child_[node]; child != kNone; child = next_sibling_[child]) {
      if (last_[child] == label) return child;
    }
    auto child = static_cast<int64_t>(parent_.size());
    parent_.push_back(node);
    last_.push_back(label);
    first_child_.push_back(kNone);
    next_sibling_.push_back(first_child_[node]);
    first_child_[node] = child;
    return child;
  }
  /*! \brief The prefix's last label, -1 for the empty prefix. */
  int64_t Last(int64_t node) const { return last_[node]; }
  int64_t size() const { return static_cast<int64_t>(parent_.size()); }
  Hypothesis Spell(int64_t node) const {
    Hypothesis labels;
    for (; node != kEmpty; node = parent_[node]) labels.push_back(last_[node]);
    std::reverse(labels.begin(), labels.end());
    return labels;
  }

 private:
  static constexpr int64_t kNone = -1;
  std::vector<int64_t> parent_{kNone};
  std::vector<int64_t> last_{kNone};
  std::vector<int64_t> first_child_{kNone};
  std::vector<int64_t> next_sibling_{kNone};
};

/*! \brief A prefix and its log-probabilities of ending in blank and in its last label. */
struct Beam {
  int64_t node;
  double blank;
  double label;
  double total() const { return LogAdd({blank, label}); }
};

/*! \brief One frame's candidates in the order first touched, found by prefix node through a
 *         slot per tree node: ranking sorts them stably, so equal scores rank in that order.
 *         One table serves every frame; `TakeBest` empties it. */
class BeamTable {
 public:
  /*! \brief The candidate of `node`, added with -inf scores when new. */
  Beam& operator[](int64_t node) {
    if (node >= static_cast<int64_t>(slots_.size())) {
      slots_.resize(std::max<size_t>(2 * slots_.size(), node + 1), kNoSlot);
    }
    int64_t& slot = slots_[node];
    if (slot == kNoSlot) {
      slot = static_cast<int64_t>(beams_.size());
      beams_.push_back({node, kNegInf, kNegInf});
    }
    return beams_[slot];
  }
  /*! \brief The `beam` best, best first; ties keep insertion order. Empties the table. */
  std::vector<Beam> TakeBest(int beam) {
    totals_.resize(beams_.size());
    order_.resize(beams_.size());
    for (size_t i = 0; i < beams_.size(); ++i) totals_[i] = beams_[i].total();
    std::iota(order_.begin(), order_.end(), 0);
    std::stable_sort(order_.begin(), order_.end(),
                     [this](size_t a, size_t b) { return totals_[a] > totals_[b]; });
    std::vector<Beam> best;
    best.reserve(std::min(order_.size(), static_cast<size_t>(beam)));
    for (size_t i = 0; i < order_.size() && best.size() < static_cast<size_t>(beam); ++i) {
      best.push_back(beams_[order_[i]]);
    }
    for (const Beam& b : beams_) slots_[b.node] = kNoSlot;
    beams_.clear();
    return best;
  }

 private:
  static constexpr int64_t kNoSlot = -1;
  std::vector<Beam> beams_;
  std::vector<int64_t> slots_;   // tree node -> index in beams_, kNoSlot when absent
  std::vector<double> totals_;
  std::vector<size_t> order_;
};

/*!
 * \brief The `beam` best label prefixes with their CTC log-probabilities, best first.
 *
 * Each prefix carries two scores, ending in blank and ending in its last label, so a repeated
 * label is merged unless a blank separates the two. Per frame only the `beam` likeliest tokens
 * extend a prefix; candidates are filled prefix by prefix, token by token.
 */
inline std::vector<Scored> CtcPrefixBeamSearch(const LogProbs& log_probs, int beam,
                                               int64_t blank = 0) {
  PrefixTree tree;
  BeamTable next;
  std::vector<Beam> beams{{PrefixTree::kEmpty, 0.0, kNegInf}};
  for (int64_t t = 0; t < log_probs.frames; ++t) {
    const float* frame = log_probs.frame(t);
    std::vector<int64_t> candidates = TopTokens(frame, log_probs.vocab, beam);
    for (const Beam& from : beams) {
      for (int64_t token : candidates) {
        double p = frame[token];
        if (token == blank) {
          Beam& same = next[from.node];
          same.blank = LogAdd({same.blank, from.blank + p, from.label + p});
          continue;
        }
        Beam& grown = next[tree.Child(from.node, token)];
        if (tree.Last(from.node) == token) {
          grown.label = LogAdd({grown.label, from.blank + p});  // blank-separated repeat
          Beam& same = next[from.node];  // may move `grown`: not used below
          same.label = LogAdd({same.label, from.label + p});  // repeat merged
        } else {
          grown.label = LogAdd({grown.label, from.blank + p, from.label + p});
        }
      }
    }
    beams = next.TakeBest(beam);
  }
  std::vector<Scored> nbest;
  for (const Beam& b : beams) nbest.emplace_back(tree.Spell(b.node), b.total());
  return nbest;
}

}  // namespace tinyasr
