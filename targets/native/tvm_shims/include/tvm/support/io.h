// tinyasr: the byte stream the TVM runtime serializes through (executables, tensors, RPC).
// The apache-tvm wheel ships code that includes this header but not the header itself.
// Layout of serialized values (must match what the host's libtvm writes): trivially
// copyable values as their raw little-endian bytes; strings and sequences (std::string,
// std::vector, ffi::String, ffi::Array) as a uint64 element count followed by the elements;
// classes with Save/Load call those.
#ifndef TINYASR_TVM_SUPPORT_IO_H_
#define TINYASR_TVM_SUPPORT_IO_H_

#include <tvm/ffi/container/array.h>
#include <tvm/ffi/string.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

namespace tvm {
namespace support {

class Stream;

namespace detail {

template <typename T, typename = void>
struct HasSaveLoad : std::false_type {};

template <typename T>
struct HasSaveLoad<T, std::void_t<decltype(std::declval<const T&>().Save(
                          static_cast<Stream*>(nullptr)))>> : std::true_type {};

}  // namespace detail

/*! \brief Serializer<T>::Write(strm, value) / Read(strm, &value) define how a T is stored. */
template <typename T, typename = void>
struct Serializer;

/*! \brief A source/sink of bytes; Read returns fewer bytes than asked only at the end. */
class Stream {
 public:
  virtual ~Stream() = default;
  virtual size_t Read(void* ptr, size_t size) = 0;
  virtual size_t Write(const void* ptr, size_t size) = 0;

  template <typename T>
  void Write(const T& value) {
    Serializer<T>::Write(this, value);
  }
  template <typename T>
  bool Read(T* out) {
    return Serializer<T>::Read(this, out);
  }
  template <typename T>
  void WriteArray(const T* data, size_t count) {
    if constexpr (IsRaw<T>()) {
      Write(static_cast<const void*>(data), count * sizeof(T));
    } else {
      for (size_t i = 0; i < count; ++i) Write(data[i]);
    }
  }
  template <typename T>
  bool ReadArray(T* data, size_t count) {
    if constexpr (IsRaw<T>()) {
      return ReadExact(data, count * sizeof(T));
    } else {
      for (size_t i = 0; i < count; ++i) {
        if (!Read(data + i)) return false;
      }
      return true;
    }
  }
  /*! \brief Whether T is serialized as its raw bytes. */
  template <typename T>
  static constexpr bool IsRaw() {
    return std::is_trivially_copyable_v<T> && !detail::HasSaveLoad<T>::value;
  }

  /*! \brief Read exactly `size` bytes, looping over short reads; false at a premature end. */
  bool ReadExact(void* ptr, size_t size) {
    char* out = static_cast<char*>(ptr);
    while (size != 0) {
      size_t n = Read(out, size);
      if (n == 0) return false;
      out += n;
      size -= n;
    }
    return true;
  }
};

/*! \brief Plain values (numbers, enums, DLDataType, DLDevice, pointers): raw bytes. */
template <typename T>
struct Serializer<T, std::enable_if_t<Stream::IsRaw<T>()>> {
  static void Write(Stream* strm, const T& value) { strm->Write(&value, sizeof(T)); }
  static bool Read(Stream* strm, T* out) { return strm->ReadExact(out, sizeof(T)); }
};

/*! \brief Classes that serialize themselves. */
template <typename T>
struct Serializer<T, std::enable_if_t<detail::HasSaveLoad<T>::value>> {
  static void Write(Stream* strm, const T& value) { value.Save(strm); }
  static bool Read(Stream* strm, T* out) { return out->Load(strm); }
};

/*! \brief Sequences with contiguous storage: a uint64 count, then the elements. */
template <typename Seq>
struct SequenceSerializer {
  static void Write(Stream* strm, const Seq& value) {
    strm->Write(static_cast<uint64_t>(value.size()));
    strm->WriteArray(value.data(), value.size());
  }
  static bool Read(Stream* strm, Seq* out) {
    uint64_t size = 0;
    if (!strm->Read(&size)) return false;
    out->resize(size);
    return strm->ReadArray(out->data(), size);
  }
};

template <>
struct Serializer<std::string> : SequenceSerializer<std::string> {};

template <typename T>
struct Serializer<std::vector<T>> : SequenceSerializer<std::vector<T>> {};

template <>
struct Serializer<ffi::String> {
  static void Write(Stream* strm, const ffi::String& value) {
    SequenceSerializer<ffi::String>::Write(strm, value);
  }
  static bool Read(Stream* strm, ffi::String* out) {
    std::string text;
    if (!strm->Read(&text)) return false;
    *out = ffi::String(std::move(text));
    return true;
  }
};

template <typename T>
struct Serializer<ffi::Array<T>> {
  static void Write(Stream* strm, const ffi::Array<T>& value) {
    strm->Write(static_cast<uint64_t>(value.size()));
    for (const T& item : value) strm->Write(item);
  }
  static bool Read(Stream* strm, ffi::Array<T>* out) {
    uint64_t size = 0;
    if (!strm->Read(&size)) return false;
    ffi::Array<T> items;
    for (uint64_t i = 0; i < size; ++i) {
      T item;
      if (!strm->Read(&item)) return false;
      items.push_back(std::move(item));
    }
    *out = std::move(items);
    return true;
  }
};

}  // namespace support
}  // namespace tvm

#endif  // TINYASR_TVM_SUPPORT_IO_H_
