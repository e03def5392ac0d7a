// The CTC prefix beam search as a tvm-ffi function, for Python (tinyasr.model.decoding.search
// builds and loads this file on first use).

#include <tvm/ffi/container/tensor.h>
#include <tvm/ffi/error.h>
#include <tvm/ffi/function.h>

#include <algorithm>
#include <cstdint>
#include <string>

#include "ctc_search.h"

namespace {

using tvm::ffi::TensorView;

void Expect(const TensorView& tensor, const char* name, DLDataType dtype, int ndim) {
  DLDataType got = tensor.dtype();
  if (got.code != dtype.code || got.bits != dtype.bits || got.lanes != 1 ||
      tensor.ndim() != ndim || !tensor.IsContiguous() || tensor.device().device_type != kDLCPU) {
    TVM_FFI_THROW(ValueError) << name << ": expected a contiguous " << ndim << "-d CPU tensor of "
                              << static_cast<int>(dtype.bits) << "-bit elements (code "
                              << static_cast<int>(dtype.code) << ")";
  }
}

/*!
 * \brief The n-best of CtcPrefixBeamSearch into caller-owned outputs: tokens (beam, frames)
 *        int64, row i's first lengths[i] entries hypothesis i; lengths (beam,) int64; scores
 *        (beam,) float64. Returns how many hypotheses were written (beam at most).
 */
int64_t PrefixBeamSearch(TensorView log_probs, int64_t beam, int64_t blank, TensorView tokens,
                         TensorView lengths, TensorView scores) {
  Expect(log_probs, "log_probs", {kDLFloat, 32, 1}, 2);
  Expect(tokens, "tokens", {kDLInt, 64, 1}, 2);
  Expect(lengths, "lengths", {kDLInt, 64, 1}, 1);
  Expect(scores, "scores", {kDLFloat, 64, 1}, 1);
  int64_t frames = log_probs.size(0), vocab = log_probs.size(1);
  if (beam < 1 || blank < 0 || blank >= vocab || tokens.size(0) < beam ||
      tokens.size(1) < frames || lengths.size(0) < beam || scores.size(0) < beam) {
    TVM_FFI_THROW(ValueError) << "ctc_prefix_beam_search: beam " << beam << ", blank " << blank
                              << " and output shapes do not fit " << frames << " x " << vocab
                              << " log-probabilities";
  }
  auto nbest = tinyasr::CtcPrefixBeamSearch(
      {static_cast<const float*>(log_probs.data_ptr()), frames, vocab},
      static_cast<int>(beam), blank);
  auto* token_rows = static_cast<int64_t*>(tokens.data_ptr());
  for (size_t i = 0; i < nbest.size(); ++i) {
    const auto& [hypothesis, score] = nbest[i];
    std::copy(hypothesis.begin(), hypothesis.end(), token_rows + i * tokens.size(1));
    static_cast<int64_t*>(lengths.data_ptr())[i] = static_cast<int64_t>(hypothesis.size());
    static_cast<double*>(scores.data_ptr())[i] = score;
  }
  return static_cast<int64_t>(nbest.size());
}

}  // namespace

TVM_FFI_DLL_EXPORT_TYPED_FUNC(ctc_prefix_beam_search, PrefixBeamSearch);
