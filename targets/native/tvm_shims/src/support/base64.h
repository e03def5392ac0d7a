// tinyasr: base64 streams for tensors embedded in JSON. Both sides buffer the whole payload
// and use tvm-ffi's codec: tensors in JSON are small, and this keeps the code trivial.
#ifndef TINYASR_SUPPORT_BASE64_H_
#define TINYASR_SUPPORT_BASE64_H_

#include <tvm/ffi/extra/base64.h>
#include <tvm/support/io.h>

#include <string>

#include "bytes_io.h"

namespace tvm {
namespace support {

/*! \brief Collects bytes and writes them base64-encoded to `sink` on Finish(). */
class Base64OutStream : public Stream {
 public:
  explicit Base64OutStream(Stream* sink) : sink_(sink), plain_(&buffer_) {}
  using Stream::Read;
  using Stream::Write;

  size_t Read(void*, size_t) final { return 0; }
  size_t Write(const void* ptr, size_t size) final { return plain_.Write(ptr, size); }
  void Finish() {
    ffi::String encoded = ffi::Base64Encode(TVMFFIByteArray{buffer_.data(), buffer_.size()});
    sink_->Write(encoded.data(), encoded.size());
    buffer_.clear();
  }

 private:
  Stream* sink_;
  std::string buffer_;
  BytesOutStream plain_;
};

/*! \brief Decodes everything `source` holds on InitPosition(), then serves the bytes. */
class Base64InStream : public Stream {
 public:
  explicit Base64InStream(Stream* source) : source_(source), plain_(decoded_) {}
  using Stream::Read;
  using Stream::Write;

  void InitPosition() {
    std::string encoded;
    char chunk[4096];
    for (size_t n; (n = source_->Read(chunk, sizeof(chunk))) != 0;) encoded.append(chunk, n);
    ffi::Bytes bytes = ffi::Base64Decode(TVMFFIByteArray{encoded.data(), encoded.size()});
    decoded_.assign(bytes.data(), bytes.size());
    plain_ = BytesInStream(decoded_);
  }
  size_t Read(void* ptr, size_t size) final { return plain_.Read(ptr, size); }
  size_t Write(const void*, size_t) final { return 0; }

 private:
  Stream* source_;
  std::string decoded_;
  BytesInStream plain_;
};

}  // namespace support
}  // namespace tvm

#endif  // TINYASR_SUPPORT_BASE64_H_
