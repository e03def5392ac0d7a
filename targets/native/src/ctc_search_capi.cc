// The CTC prefix beam search behind a plain C function, for Python's ctypes
// (tinyasr.model.decoding.search builds this file with the system C++ compiler on first use):
// no runtime library to import, so decoding with the PyTorch model starts in milliseconds.

#include <algorithm>
#include <cstdint>

#include "ctc_search.h"

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
