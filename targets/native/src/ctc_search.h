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

/*! \brief The `beam` likeliest tokens of a frame into `top`, likeliest first; ties go to the
 *         higher index (numpy's `argsort(frame, kind="stable")[::-1][:beam]`). Each token is
 *         inserted into the kept ones in order; a later token has the higher index, so it goes
 *         before the first kept one it ties with. */
inline void TopTokens(const float* frame, int64_t vocab, int beam, std::vector<int64_t>& top) {
  const auto count = static_cast<size_t>(std::min<int64_t>(beam, vocab));
  top.clear();
  for (int64_t token = 0; token < vocab; ++token) {
    const float p = frame[token];
    if (top.size() == count) {
      if (p < frame[top.back()]) continue;
      top.pop_back();
    }
    auto at = std::find_if(top.begin(), top.end(), [&](int64_t kept) { return p >= frame[kept]; });
    top.insert(at, token);
  }
}

/*! \brief Label prefixes as nodes of a tree, one number each, so a prefix is found and
 *         extended in time independent of its length. Node 0 is the empty prefix. A node's
 *         children are a linked list (first child, next sibling): a prefix has a handful, and
 *         no node allocates. */
class PrefixTree {
 public:
  static constexpr int64_t kEmpty = 0;

  static constexpr int64_t kNone = -1;

  /*! \brief The child of `node` ending in `label`, kNone when it was never made. */
  int64_t Find(int64_t node, int64_t label) const {
    for (int64_t child = first_child_[node]; child != kNone; child = next_sibling_[child]) {
      if (last_[child] == label) return child;
    }
    return kNone;
  }
  /*! \brief The child of `node` ending in `label`, made when new. */
  int64_t Child(int64_t node, int64_t label) {
    if (int64_t found = Find(node, label); found != kNone) return found;
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
 *         slot per tree node: ranking keeps equal scores in that order.
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
  /*! \brief The `beam` best into `best`, best first; ties keep insertion order (what a stable
   *         sort by score would keep). Empties the table. */
  void TakeBest(int beam, std::vector<Beam>& best) {
    const auto count = std::min(beams_.size(), static_cast<size_t>(beam));
    totals_.resize(beams_.size());
    order_.clear();
    for (size_t i = 0; i < beams_.size(); ++i) {
      const double total = totals_[i] = beams_[i].total();
      if (order_.size() == count) {
        if (!(total > totals_[order_.back()])) continue;
        order_.pop_back();
      }
      auto at = std::find_if(order_.begin(), order_.end(),
                             [&](size_t kept) { return total > totals_[kept]; });
      order_.insert(at, i);
    }
    best.clear();
    for (size_t i : order_) best.push_back(beams_[i]);
    for (const Beam& b : beams_) slots_[b.node] = kNoSlot;
    beams_.clear();
  }

 private:
  static constexpr int64_t kNoSlot = -1;
  std::vector<Beam> beams_;
  std::vector<int64_t> slots_;   // tree node -> index in beams_, kNoSlot when absent
  std::vector<double> totals_;
  std::vector<size_t> order_;
};

/*!
 * \brief A score no candidate below which can be among the `beam` best of this frame, or -inf.
 *
 * When `beam` prefixes extend into this frame and blank is a candidate token, each of them
 * stays a candidate (its blank-ending score gains total + p(blank)), so the frame keeps at
 * least `beam` candidates at or above min(total) + p(blank). kBoundMargin covers the rounding
 * of the log-adds.
 */
constexpr double kBoundMargin = 1e-4;
constexpr double kLog2 = 0.69314718055994530942;

inline double BeamFloor(const std::vector<Beam>& beams, const float* frame,
                        const std::vector<int64_t>& candidates, int beam, int64_t blank) {
  if (static_cast<int>(beams.size()) < beam ||
      std::find(candidates.begin(), candidates.end(), blank) == candidates.end()) {
    return kNegInf;
  }
  double lowest = std::numeric_limits<double>::infinity();
  for (const Beam& b : beams) lowest = std::min(lowest, b.total());
  return lowest + frame[blank] - kBoundMargin;
}

/*!
 * \brief The `beam` best label prefixes with their CTC log-probabilities, best first.
 *
 * Each prefix carries two scores, ending in blank and ending in its last label, so a repeated
 * label is merged unless a blank separates the two. Per frame only the `beam` likeliest tokens
 * extend a prefix; candidates are filled prefix by prefix, token by token.
 *
 * A prefix that no beam holds is reached in a frame only from its parent, by one token, so its
 * score is known from that one step. When even its bound (the larger of the parent's two
 * scores, plus the token's, plus log 2) is below BeamFloor, it cannot be kept, and it is not
 * made at all: no log-add, no tree node, no candidate. The kept candidates, their scores and
 * their order are the same as without the test (tests/test_metrics_search.py checks both
 * against a textbook loop); on a 5 s utterance most extensions are such prefixes.
 */
inline std::vector<Scored> CtcPrefixBeamSearch(const LogProbs& log_probs, int beam,
                                               int64_t blank = 0) {
  PrefixTree tree;
  BeamTable next;
  std::vector<Beam> beams{{PrefixTree::kEmpty, 0.0, kNegInf}};
  std::vector<char> is_beam;   // per tree node: one of `beams`
  std::vector<int64_t> candidates;
  for (int64_t t = 0; t < log_probs.frames; ++t) {
    const float* frame = log_probs.frame(t);
    TopTokens(frame, log_probs.vocab, beam, candidates);
    const double floor = BeamFloor(beams, frame, candidates, beam, blank);
    is_beam.resize(tree.size(), 0);
    for (const Beam& b : beams) is_beam[b.node] = 1;
    for (const Beam& from : beams) {
      for (int64_t token : candidates) {
        double p = frame[token];
        if (token == blank) {
          Beam& same = next[from.node];
          same.blank = LogAdd({same.blank, from.blank + p, from.label + p});
          continue;
        }
        const bool repeat = tree.Last(from.node) == token;
        const double bound = repeat ? from.blank + p
                                    : std::max(from.blank, from.label) + p + kLog2;
        bool hopeless = false;  // a prefix no beam holds, whose bound is below the floor
        if (bound < floor) {
          int64_t child = tree.Find(from.node, token);
          hopeless = child == PrefixTree::kNone || !is_beam[child];
        }
        if (!hopeless) {
          Beam& grown = next[tree.Child(from.node, token)];
          grown.label = repeat ? LogAdd({grown.label, from.blank + p})  // blank-separated repeat
                               : LogAdd({grown.label, from.blank + p, from.label + p});
        }
        if (repeat) {
          Beam& same = next[from.node];  // after `grown`: its first touch comes second
          same.label = LogAdd({same.label, from.label + p});  // repeat merged
        }
      }
    }
    for (const Beam& b : beams) is_beam[b.node] = 0;
    next.TakeBest(beam, beams);
  }
  std::vector<Scored> nbest;
  for (const Beam& b : beams) nbest.emplace_back(tree.Spell(b.node), b.total());
  return nbest;
}

}  // namespace tinyasr
