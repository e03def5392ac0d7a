// The decoding steps the host shares with the boards, behind plain C functions for Python's
// ctypes (tinyasr.model.decoding.native builds this file with the system C++ compiler on first
// use): the CTC prefix beam search, and the prefix tree the attention decoder rescores. No
// runtime library to import, so decoding with the PyTorch model starts in milliseconds.

#include <algorithm>
#include <cstdint>
#include <vector>

#include "ctc_search.h"
#include "decoding.h"

namespace {

/*! \brief `count` hypotheses laid end to end in `tokens`, hypothesis i lengths[i] long. */
std::vector<tinyasr::Scored> Unflatten(const int64_t* tokens, const int64_t* lengths,
                                       int64_t count) {
  std::vector<tinyasr::Scored> hypotheses(static_cast<size_t>(count));
  for (auto& [hypothesis, score] : hypotheses) {
    hypothesis.assign(tokens, tokens + *lengths);
    tokens += *lengths++;
    score = 0;
  }
  return hypotheses;
}

}  // namespace

/*!
 * \brief The n-best of CtcPrefixBeamSearch into caller-owned outputs: tokens (beam rows of
 *        token_stride >= frames int64), row i's first lengths[i] entries hypothesis i;
 *        lengths (beam,) int64; scores (beam,) float64. log_probs is (frames, vocab) float32,
 *        row-major. Returns how many hypotheses were written (beam at most), or -1 when the
 *        sizes do not fit (beam < 1, blank outside the vocabulary, token_stride < frames).
 */
extern "C" int64_t tinyasr_ctc_prefix_beam_search(const float* log_probs, int64_t frames,
                                                  int64_t vocab, int64_t beam, int64_t blank,
                                                  int64_t* tokens, int64_t token_stride,
                                                  int64_t* lengths, double* scores) {
  if (frames < 0 || vocab < 1 || beam < 1 || blank < 0 || blank >= vocab ||
      token_stride < frames) {
    return -1;
  }
  auto nbest = tinyasr::CtcPrefixBeamSearch({log_probs, frames, vocab}, static_cast<int>(beam),
                                            blank);
  for (size_t i = 0; i < nbest.size(); ++i) {
    const auto& [hypothesis, score] = nbest[i];
    std::copy(hypothesis.begin(), hypothesis.end(),
              tokens + static_cast<int64_t>(i) * token_stride);
    lengths[i] = static_cast<int64_t>(hypothesis.size());
    scores[i] = score;
  }
  return static_cast<int64_t>(nbest.size());
}

/*!
 * \brief BuildDecoderTree of `count` hypotheses (laid end to end in `tokens`, hypothesis i
 *        lengths[i] >= 0 long; N tokens in all) into caller-owned outputs sized for the most
 *        nodes the tree can have, N + 1 = capacity: node_tokens and depths (capacity,);
 *        ancestors (capacity * capacity bytes) and history (capacity * width) hold the tree's
 *        (U, U) and (U, width) rows at their start; paths (N + count,) each hypothesis's nodes
 *        from the root, in order. Returns U, or -1 when the sizes do not fit.
 */
extern "C" int64_t tinyasr_prefix_tree(const int64_t* tokens, const int64_t* lengths,
                                       int64_t count, int64_t sos_eos, int64_t width,
                                       int64_t capacity, int64_t* node_tokens, int64_t* depths,
                                       uint8_t* ancestors, int64_t* history, int64_t* paths) {
  int64_t total = 0;
  for (int64_t i = 0; i < count; ++i) {
    if (lengths[i] < 0) return -1;
    total += lengths[i];
  }
  if (count < 0 || width < 1 || capacity != total + 1) return -1;
  auto tree = tinyasr::BuildDecoderTree(Unflatten(tokens, lengths, count), sos_eos, width);
  std::copy(tree.tokens.begin(), tree.tokens.end(), node_tokens);
  std::copy(tree.depths.begin(), tree.depths.end(), depths);
  std::copy(tree.ancestors.begin(), tree.ancestors.end(), ancestors);
  std::copy(tree.history.begin(), tree.history.end(), history);
  for (const auto& path : tree.paths) paths = std::copy(path.begin(), path.end(), paths);
  return tree.count;
}

/*!
 * \brief PathScores into scores (count,) float32: the hypotheses as for tinyasr_prefix_tree,
 *        their paths as it wrote them, log_probs (nodes, vocab) float32 row-major.
 */
extern "C" void tinyasr_path_scores(const int64_t* tokens, const int64_t* lengths, int64_t count,
                                    const int64_t* paths, const float* log_probs, int64_t vocab,
                                    int64_t sos_eos, float* scores) {
  std::vector<std::vector<int64_t>> rows(static_cast<size_t>(count));
  for (int64_t i = 0; i < count; ++i) {
    rows[i].assign(paths, paths + lengths[i] + 1);
    paths += lengths[i] + 1;
  }
  auto sums = tinyasr::PathScores(rows, Unflatten(tokens, lengths, count), log_probs, vocab,
                                  sos_eos);
  std::copy(sums.begin(), sums.end(), scores);
}
