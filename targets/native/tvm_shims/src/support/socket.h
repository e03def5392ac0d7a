// tinyasr: thin POSIX TCP socket wrappers used by the RPC client/server code and our server.
// A TCPSocket is a plain handle (copyable, never closes on destruction); Close() ends it.
#ifndef TINYASR_SUPPORT_SOCKET_H_
#define TINYASR_SUPPORT_SOCKET_H_

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <tvm/ffi/error.h>

#include <cerrno>
#include <cstring>
#include <string>

namespace tvm {
namespace support {

/*! \brief A resolved host:port. */
class SockAddr {
 public:
  SockAddr() = default;
  SockAddr(const char* host, int port) {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* found = nullptr;
    int rc = getaddrinfo(host, std::to_string(port).c_str(), &hints, &found);
    if (rc != 0 || found == nullptr) {
      TVM_FFI_THROW(RuntimeError) << "cannot resolve " << host << ":" << port << ": "
                                  << gai_strerror(rc);
    }
    std::memcpy(&addr_, found->ai_addr, found->ai_addrlen);
    length_ = found->ai_addrlen;
    freeaddrinfo(found);
  }
  int ss_family() const { return addr_.ss_family; }
  const sockaddr* data() const { return reinterpret_cast<const sockaddr*>(&addr_); }
  socklen_t length() const { return length_; }
  std::string AsString() const {
    char host[NI_MAXHOST], port[NI_MAXSERV];
    if (getnameinfo(data(), length_, host, sizeof(host), port, sizeof(port),
                    NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
      return "?";
    }
    return std::string(host) + ":" + port;
  }

 private:
  sockaddr_storage addr_{};
  socklen_t length_ = 0;
};

class Socket {
 public:
  using SockType = int;
  static constexpr SockType kInvalid = -1;

  /*! \brief Throw the last system error, prefixed by `context`. */
  [[noreturn]] static void Error(const char* context) {
    TVM_FFI_THROW(RuntimeError) << context << ": " << std::strerror(errno);
  }
};

class TCPSocket : public Socket {
 public:
  TCPSocket() = default;
  explicit TCPSocket(SockType fd) : fd_(fd) {}

  SockType fd() const { return fd_; }
  bool BadSocket() const { return fd_ == kInvalid; }
  void Create(int family = AF_INET) {
    fd_ = socket(family, SOCK_STREAM, 0);
    if (fd_ == kInvalid) Error("socket");
    int one = 1;
    setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  }
  bool Connect(const SockAddr& addr) { return connect(fd_, addr.data(), addr.length()) == 0; }
  void Close() {
    if (fd_ != kInvalid) close(fd_);
    fd_ = kInvalid;
  }
  ssize_t Send(const void* data, size_t size) {
    ssize_t n;
    do {
      n = send(fd_, data, size, MSG_NOSIGNAL);
    } while (n == -1 && errno == EINTR);
    return n;
  }
  ssize_t Recv(void* data, size_t size) {
    ssize_t n;
    do {
      n = recv(fd_, data, size, 0);
    } while (n == -1 && errno == EINTR);
    return n;
  }
  /*! \brief Send all bytes; returns the count sent (less only on error). */
  size_t SendAll(const void* data, size_t size) {
    const char* bytes = static_cast<const char*>(data);
    return Repeat(size, [&](size_t done) { return Send(bytes + done, size - done); });
  }
  /*! \brief Receive exactly `size` bytes; returns the count received (less on close/error). */
  size_t RecvAll(void* data, size_t size) {
    char* bytes = static_cast<char*>(data);
    return Repeat(size, [&](size_t done) { return Recv(bytes + done, size - done); });
  }

 private:
  /*! \brief Call `step(done)` until `size` bytes are done or it moves nothing. */
  template <typename Step>
  static size_t Repeat(size_t size, Step step) {
    size_t done = 0;
    while (done < size) {
      ssize_t n = step(done);
      if (n <= 0) break;
      done += static_cast<size_t>(n);
    }
    return done;
  }

  SockType fd_ = kInvalid;
};

}  // namespace support
}  // namespace tvm

#endif  // TINYASR_SUPPORT_SOCKET_H_
