// tinyasr-rpc-server's confinement: the session's file functions and the client allow-list.
//
// TVM's RPC client reaches a board's files only through global functions the server provides:
// `tvm.rpc.server.upload / download / remove` (the wheel's rpc_server_env.cc registers them,
// each joining the client's name onto whatever `tvm.rpc.server.workpath` returns) and
// `tvm.rpc.server.load_module`. We register all five again, over the runtime's, so that every
// name a client sends must stay inside the session directory: no absolute paths, no `..`
// components, and the resolved path (symlinks followed) must lie inside the directory.
//
// This limits the file API only. A client can still upload a shared library and load it, and a
// loaded library runs its own code as the server's user: whoever can connect can run code.
#ifndef TINYASR_RPC_SANDBOX_H_
#define TINYASR_RPC_SANDBOX_H_

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <tvm/ffi/error.h>
#include <tvm/ffi/extra/module.h>
#include <tvm/ffi/function.h>
#include <tvm/ffi/string.h>

#include <cerrno>
#include <climits>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace tinyasr {
namespace sandbox {

namespace ffi = tvm::ffi;

[[noreturn]] inline void Refuse(const std::string& name, const std::string& why) {
  TVM_FFI_THROW(ValueError) << "tinyasr-rpc-server: path '" << name << "' refused: " << why;
}

/*! \brief The canonical absolute path of an existing `path` (symlinks followed), or "" if none. */
inline std::string RealPath(const std::string& path) {
  char* resolved = realpath(path.c_str(), nullptr);
  if (resolved == nullptr) return "";
  std::string result(resolved);
  std::free(resolved);
  return result;
}

/*! \brief Reject names that are not plain relative paths: empty, NUL, absolute, any `..`. */
inline void CheckName(const std::string& name) {
  if (name.empty()) Refuse(name, "empty path");
  if (name.find('\0') != std::string::npos) Refuse(name, "NUL byte in path");
  if (name[0] == '/') Refuse(name, "absolute paths are not allowed");
  if (name.size() > PATH_MAX) Refuse(name.substr(0, 64) + "...", "path too long");
  size_t start = 0;
  while (start <= name.size()) {
    size_t end = name.find('/', start);
    if (end == std::string::npos) end = name.size();
    if (name.compare(start, end - start, "..") == 0 && end - start == 2) {
      Refuse(name, "'..' components are not allowed");
    }
    start = end + 1;
  }
}

inline bool Inside(const std::string& root, const std::string& path) {
  return path.size() > root.size() + 1 && path.compare(0, root.size(), root) == 0 &&
         path[root.size()] == '/';
}

/*!
 * \brief The resolved path of `name` inside the session directory `root` (a canonical path),
 *        or a ValueError. With `must_exist` false the last component may be missing (an upload's
 *        new file): then its directory is resolved instead. Symlinks are followed, and wherever
 *        they lead must be inside `root`; a dangling symlink is refused (writing through it
 *        would create its target, wherever that is).
 */
inline std::string ResolveInside(const std::string& root, const std::string& name,
                                 bool must_exist) {
  CheckName(name);
  std::string joined = root + "/" + name;
  std::string resolved;
  struct stat info;
  if (lstat(joined.c_str(), &info) == 0) {
    resolved = RealPath(joined);
    if (resolved.empty()) Refuse(name, "a symlink that leads nowhere");
  } else {
    if (errno != ENOENT) Refuse(name, std::strerror(errno));
    if (must_exist) Refuse(name, "no such file in the session directory");
    size_t slash = joined.rfind('/');
    std::string leaf = joined.substr(slash + 1);
    if (leaf.empty() || leaf == ".") Refuse(name, "not a file name");
    std::string parent = RealPath(joined.substr(0, slash));
    if (parent.empty()) Refuse(name, "no such directory in the session directory");
    resolved = parent + "/" + leaf;
  }
  if (!Inside(root, resolved)) Refuse(name, "it leads outside the session directory");
  return resolved;
}

inline void WriteFile(const std::string& name, const std::string& path, const std::string& data) {
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644);
  if (fd < 0) Refuse(name, std::strerror(errno));
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = write(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      int error = errno;
      close(fd);
      Refuse(name, std::string("write failed: ") + std::strerror(error));
    }
    done += static_cast<size_t>(n);
  }
  if (close(fd) != 0) Refuse(name, std::string("write failed: ") + std::strerror(errno));
}

inline std::string ReadFile(const std::string& name, const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) Refuse(name, std::strerror(errno));
  struct stat info;
  if (fstat(fd, &info) != 0 || !S_ISREG(info.st_mode)) {
    close(fd);
    Refuse(name, "not a regular file");
  }
  std::string data;
  char buffer[65536];
  while (true) {
    ssize_t n = read(fd, buffer, sizeof(buffer));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int error = errno;
      close(fd);
      Refuse(name, std::string("read failed: ") + std::strerror(error));
    }
    if (n == 0) break;
    data.append(buffer, static_cast<size_t>(n));
  }
  close(fd);
  return data;
}

/*! \brief Register the client-facing file functions, confined to `dir` (an existing directory). */
inline void RegisterFileFunctions(const std::string& dir) {
  std::string root = RealPath(dir);
  if (root.empty()) TVM_FFI_THROW(RuntimeError) << "session directory " << dir << " is gone";
  auto set = [](const char* name, ffi::Function function) {
    ffi::Function::SetGlobal(name, function, /*can_override=*/true);
  };
  set("tvm.rpc.server.workpath", ffi::Function::FromTyped([root](ffi::String name) {
        return ffi::String(ResolveInside(root, std::string(name), false));
      }));
  set("tvm.rpc.server.upload",
      ffi::Function::FromPacked([root](ffi::PackedArgs args, ffi::Any* /*rv*/) {
        std::string name = args[0].cast<std::string>();
        std::string path = ResolveInside(root, name, false);
        WriteFile(name, path, args[1].cast<std::string>());
      }));
  set("tvm.rpc.server.download",
      ffi::Function::FromPacked([root](ffi::PackedArgs args, ffi::Any* rv) {
        std::string name = args[0].cast<std::string>();
        *rv = ffi::Bytes(ReadFile(name, ResolveInside(root, name, true)));
      }));
  // Remove the entry itself (a symlink, not what it points to); only its directory is resolved.
  // As lenient as the runtime's own (MetaSchedule's cleanup removes "" and files that may not
  // exist): nothing there is no error; a name that escapes still is.
  set("tvm.rpc.server.remove",
      ffi::Function::FromPacked([root](ffi::PackedArgs args, ffi::Any* /*rv*/) {
        std::string name = args[0].cast<std::string>();
        if (name.empty()) return;
        CheckName(name);
        std::string joined = root + "/" + name;
        size_t slash = joined.rfind('/');
        std::string leaf = joined.substr(slash + 1);
        if (leaf.empty() || leaf == ".") return;
        std::string parent = RealPath(joined.substr(0, slash));
        if (parent.empty()) return;
        if (parent != root && !Inside(root, parent)) {
          Refuse(name, "it leads outside the session directory");
        }
        if (std::remove((parent + "/" + leaf).c_str()) != 0 && errno != ENOENT) {
          Refuse(name, std::strerror(errno));
        }
      }));
  set("tvm.rpc.server.load_module", ffi::Function::FromTyped([root](ffi::String name) {
        return ffi::Module::LoadFromFile(ResolveInside(root, std::string(name), true));
      }));
}

/*! \brief Client addresses allowed to connect: IPv4/IPv6 networks in CIDR form (empty: all). */
class AllowList {
 public:
  /*! \brief Parse "10.0.0.0/8,192.168.1.7,::1"; returns false (with `bad` set) on a bad entry. */
  bool Parse(const std::string& text, std::string* bad) {
    size_t start = 0;
    while (start <= text.size()) {
      size_t end = text.find(',', start);
      if (end == std::string::npos) end = text.size();
      std::string entry = text.substr(start, end - start);
      if (!Add(entry)) {
        *bad = entry;
        return false;
      }
      start = end + 1;
    }
    return true;
  }

  bool empty() const { return networks_.empty(); }

  bool Allows(const sockaddr_storage& peer) const {
    if (networks_.empty()) return true;
    Network address{};
    if (peer.ss_family == AF_INET) {
      address.family = AF_INET;
      std::memcpy(address.bytes, &reinterpret_cast<const sockaddr_in&>(peer).sin_addr, 4);
    } else if (peer.ss_family == AF_INET6) {
      const in6_addr& v6 = reinterpret_cast<const sockaddr_in6&>(peer).sin6_addr;
      if (IN6_IS_ADDR_V4MAPPED(&v6)) {  // an IPv4 client of a dual-stack socket
        address.family = AF_INET;
        std::memcpy(address.bytes, v6.s6_addr + 12, 4);
      } else {
        address.family = AF_INET6;
        std::memcpy(address.bytes, v6.s6_addr, 16);
      }
    } else {
      return false;
    }
    for (const Network& network : networks_) {
      if (network.family == address.family && Matches(network, address.bytes)) return true;
    }
    return false;
  }

 private:
  struct Network {
    int family = 0;
    unsigned char bytes[16] = {};
    int prefix = 0;
  };

  bool Add(const std::string& entry) {
    Network network;
    size_t slash = entry.find('/');
    std::string host = entry.substr(0, slash);
    if (inet_pton(AF_INET, host.c_str(), network.bytes) == 1) {
      network.family = AF_INET;
      network.prefix = 32;
    } else if (inet_pton(AF_INET6, host.c_str(), network.bytes) == 1) {
      network.family = AF_INET6;
      network.prefix = 128;
    } else {
      return false;
    }
    if (slash != std::string::npos) {
      std::string bits = entry.substr(slash + 1);
      if (bits.empty() || bits.size() > 3 ||
          bits.find_first_not_of("0123456789") != std::string::npos) {
        return false;
      }
      int prefix = std::atoi(bits.c_str());
      if (prefix > network.prefix) return false;
      network.prefix = prefix;
    }
    networks_.push_back(network);
    return true;
  }

  static bool Matches(const Network& network, const unsigned char* address) {
    int full = network.prefix / 8, rest = network.prefix % 8;
    if (std::memcmp(network.bytes, address, full) != 0) return false;
    if (rest == 0) return true;
    unsigned char mask = static_cast<unsigned char>(0xFF << (8 - rest));
    return (network.bytes[full] & mask) == (address[full] & mask);
  }

  std::vector<Network> networks_;
};

/*! \brief Equal strings, compared in time that does not depend on where they differ. */
inline bool SecretEquals(const std::string& given, const std::string& expected) {
  if (expected.empty()) return given.empty();
  unsigned char difference = given.size() == expected.size() ? 0 : 1;
  for (size_t i = 0; i < given.size(); ++i) {
    difference |= static_cast<unsigned char>(given[i] ^ expected[i % expected.size()]);
  }
  return difference == 0;
}

}  // namespace sandbox
}  // namespace tinyasr

#endif  // TINYASR_RPC_SANDBOX_H_
