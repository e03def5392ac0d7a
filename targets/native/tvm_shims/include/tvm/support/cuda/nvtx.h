// tinyasr: NVTX profiling ranges are a CUDA tool; board runtimes have none, so a range is a no-op.
#ifndef TINYASR_TVM_SUPPORT_CUDA_NVTX_H_
#define TINYASR_TVM_SUPPORT_CUDA_NVTX_H_

#include <string>

namespace tvm {
namespace support {

class NVTXScopedRange {
 public:
  explicit NVTXScopedRange(const std::string& /*name*/) {}
};

}  // namespace support
}  // namespace tvm

#endif  // TINYASR_TVM_SUPPORT_CUDA_NVTX_H_
