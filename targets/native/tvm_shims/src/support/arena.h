// tinyasr: a bump allocator for the RPC endpoint's per-message scratch memory; RecycleAll()
// frees everything at once when a message has been handled.
#ifndef TINYASR_SUPPORT_ARENA_H_
#define TINYASR_SUPPORT_ARENA_H_

#include <cstddef>
#include <memory>
#include <vector>

namespace tvm {
namespace support {

class Arena {
 public:
  /*! \brief Uninitialized space for `count` values of trivial type T, valid until RecycleAll(). */
  template <typename T>
  T* allocate_(size_t count) {
    size_t bytes = count * sizeof(T) + alignof(std::max_align_t);
    blocks_.push_back(std::make_unique<char[]>(bytes));
    void* ptr = blocks_.back().get();
    return static_cast<T*>(std::align(alignof(std::max_align_t), count * sizeof(T), ptr, bytes));
  }
  void RecycleAll() { blocks_.clear(); }

 private:
  std::vector<std::unique_ptr<char[]>> blocks_;
};

}  // namespace support
}  // namespace tvm

#endif  // TINYASR_SUPPORT_ARENA_H_
