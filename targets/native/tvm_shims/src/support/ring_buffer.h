// tinyasr: the RPC endpoint's byte queues. A FIFO over one growable buffer: data sits in
// [head, head + size); space is made contiguous by moving the data to the front when needed.
#ifndef TINYASR_SUPPORT_RING_BUFFER_H_
#define TINYASR_SUPPORT_RING_BUFFER_H_

#include <algorithm>
#include <cstring>
#include <vector>

namespace tvm {
namespace support {

class RingBuffer {
 public:
  size_t bytes_available() const { return size_; }

  /*! \brief Make room for at least `nbytes` queued bytes. */
  void Reserve(size_t nbytes) {
    if (nbytes > buffer_.size()) buffer_.resize(std::max(nbytes, buffer_.size() * 2));
  }
  void Write(const void* data, size_t nbytes) {
    std::memcpy(TailSpace(nbytes), data, nbytes);
    size_ += nbytes;
  }
  void Read(void* data, size_t nbytes) {
    std::memcpy(data, buffer_.data() + head_, nbytes);
    Consume(nbytes);
  }
  /*! \brief Let `fsend(data, n)` take up to `max_nbytes` queued bytes; returns how many it took. */
  template <typename FSend>
  size_t ReadWithCallback(FSend fsend, size_t max_nbytes) {
    size_t n = fsend(buffer_.data() + head_, std::min(max_nbytes, size_));
    Consume(n);
    return n;
  }
  /*! \brief Let `frecv(data, n)` fill up to `max_nbytes`; returns how many it added. */
  template <typename FRecv>
  size_t WriteWithCallback(FRecv frecv, size_t max_nbytes) {
    size_t n = frecv(TailSpace(max_nbytes), max_nbytes);
    size_ += n;
    return n;
  }

 private:
  char* TailSpace(size_t nbytes) {
    Reserve(size_ + nbytes);
    if (head_ + size_ + nbytes > buffer_.size()) {
      std::memmove(buffer_.data(), buffer_.data() + head_, size_);
      head_ = 0;
    }
    return buffer_.data() + head_ + size_;
  }
  void Consume(size_t nbytes) {
    head_ += nbytes;
    size_ -= nbytes;
    if (size_ == 0) head_ = 0;
  }

  std::vector<char> buffer_;
  size_t head_ = 0;
  size_t size_ = 0;
};

}  // namespace support
}  // namespace tvm

#endif  // TINYASR_SUPPORT_RING_BUFFER_H_
