// tinyasr-rpc-server: a TVM RPC server for boards, with no Python on the board.
//
// It speaks the two wire protocols TVM's Python client and tracker use:
//  - tracker (all integers little-endian int32, messages = length + JSON):
//    handshake [0x2F271] -> [0x2F271]; then UPDATE_INFO {"key": "server:KEY", "addr": [host, port]},
//    PUT [KEY, [port, MATCHKEY], custom_addr], GET_PENDING_MATCHKEYS; each answered by the tracker.
//  - RPC session handshake: client sends [0xFF271, len, "client:MATCHKEY [-timeout=S]"], we answer
//    [0xFF271, len, "server:KEY"] (or 0xFF273 on a key mismatch); then the session itself is the
//    runtime's own RPC endpoint (rpc.ServerLoop from the wheel's rpc_socket_impl.cc).
//
// Each session runs in a forked child, in a fresh work directory, so a crashing or timed-out
// session never takes the server down; afterwards the server registers with the tracker again.

#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <tvm/ffi/extra/json.h>
#include <tvm/ffi/extra/module.h>
#include <tvm/ffi/function.h>
#include <tvm/ffi/reflection/registry.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <initializer_list>
#include <iostream>
#include <random>
#include <string>
#include <thread>

#include "support/socket.h"

namespace tinyasr {

using tvm::support::SockAddr;
using tvm::support::TCPSocket;
namespace ffi = tvm::ffi;

constexpr int32_t kRPCMagic = 0xFF271;
constexpr int32_t kRPCMismatch = kRPCMagic + 2;
constexpr int32_t kTrackerMagic = 0x2F271;
enum TrackerCode : int { kSuccess = 0, kPut = 3, kUpdateInfo = 5, kGetPendingMatchKeys = 7 };
constexpr int kPollMillis = 2000;         // how often an idle server checks in with the tracker
constexpr int kUnmatchedMillis = 6000;    // a handed-out key unused this long is replaced
constexpr int kTrackerRetrySeconds = 60;  // how long to keep trying a lost tracker

struct Options {
  std::string host = "127.0.0.1";
  int port = 9090;
  int port_end = 9199;
  std::string tracker_host;
  int tracker_port = 0;
  std::string key;
  std::string custom_addr;  // address the tracker hands to clients; null means "as seen"
  std::string work_dir = "/tmp";
};

[[noreturn]] void Fail(const std::string& message) {
  std::cerr << "tinyasr-rpc-server: error: " << message << std::endl;
  std::exit(2);
}

Options ParseOptions(int argc, char** argv) {
  Options opt;
  auto split_host_port = [](const std::string& text, std::string* host, int* port) {
    size_t colon = text.rfind(':');
    if (colon == std::string::npos) Fail("expected HOST:PORT, got " + text);
    *host = text.substr(0, colon);
    *port = std::atoi(text.c_str() + colon + 1);
  };
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (i + 1 >= argc) Fail("missing value for " + arg);
    std::string value = argv[++i];
    if (arg == "--host") {
      opt.host = value;
    } else if (arg == "--port") {
      opt.port = std::atoi(value.c_str());
    } else if (arg == "--port-end") {
      opt.port_end = std::atoi(value.c_str());
    } else if (arg == "--tracker") {
      split_host_port(value, &opt.tracker_host, &opt.tracker_port);
    } else if (arg == "--key") {
      opt.key = value;
    } else if (arg == "--custom-addr") {
      opt.custom_addr = value;
    } else if (arg == "--work-dir") {
      opt.work_dir = value;
    } else {
      Fail("unknown option " + arg +
           " (options: --host --port --port-end --tracker HOST:PORT --key --custom-addr "
           "--work-dir)");
    }
  }
  return opt;
}

void SendInt(TCPSocket sock, int32_t value) {
  if (sock.SendAll(&value, sizeof(value)) != sizeof(value)) TCPSocket::Error("send");
}

int32_t RecvInt(TCPSocket sock) {
  int32_t value;
  if (sock.RecvAll(&value, sizeof(value)) != sizeof(value)) {
    throw std::runtime_error("connection closed");
  }
  return value;
}

void SendJSON(TCPSocket sock, const ffi::json::Value& value) {
  std::string text = ffi::json::Stringify(value);
  SendInt(sock, static_cast<int32_t>(text.size()));
  if (sock.SendAll(text.data(), text.size()) != text.size()) TCPSocket::Error("send");
}

ffi::json::Value RecvJSON(TCPSocket sock) {
  std::string text(RecvInt(sock), '\0');
  if (sock.RecvAll(text.data(), text.size()) != text.size()) {
    throw std::runtime_error("connection closed");
  }
  return ffi::json::Parse(text);
}

int64_t NowMillis() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

/*! \brief Our registration with a tracker: the persistent connection and the key on offer. */
class TrackerLink {
 public:
  TrackerLink(const Options& opt, int port) : opt_(opt), port_(port) {}
  bool enabled() const { return !opt_.tracker_host.empty(); }
  const std::string& match_key() const { return match_key_; }

  /*! \brief Connect (retrying for a while), introduce ourselves and put a fresh key on offer. */
  void Register() {
    if (!enabled()) {
      match_key_ = opt_.key;
      return;
    }
    if (sock_.BadSocket()) Connect();
    std::uniform_real_distribution<double> uniform(0, 1);
    match_key_ = opt_.key + ":" + std::to_string(uniform(rng_));
    ffi::json::Value addr = opt_.custom_addr.empty() ? ffi::Any(nullptr)
                                                     : ffi::Any(ffi::String(opt_.custom_addr));
    SendJSON(sock_, ffi::json::Array{kPut, ffi::String(opt_.key),
                                     ffi::json::Array{port_, ffi::String(match_key_)}, addr});
    Expect(RecvJSON(sock_), "PUT");
    offered_at_ = NowMillis();
  }

  /*! \brief While idle: if a client took our key from the tracker but never came, offer a new one. */
  void CheckIn() {
    if (!enabled()) return;
    SendJSON(sock_, ffi::json::Array{kGetPendingMatchKeys});
    ffi::json::Array pending = RecvJSON(sock_).cast<ffi::json::Array>();
    for (const ffi::Any& key : pending) {
      if (key.cast<ffi::String>() == match_key_) {
        offered_at_ = NowMillis();
        return;
      }
    }
    if (NowMillis() - offered_at_ > kUnmatchedMillis) Register();
  }

  void Drop() { sock_.Close(); }
  int fd() const { return sock_.fd(); }

 private:
  void Connect() {
    SockAddr addr(opt_.tracker_host.c_str(), opt_.tracker_port);
    for (int64_t deadline = NowMillis() + kTrackerRetrySeconds * 1000;;) {
      sock_.Create(addr.ss_family());
      if (sock_.Connect(addr)) break;
      sock_.Close();
      if (NowMillis() > deadline) Fail("cannot reach the tracker at " + addr.AsString());
      std::this_thread::sleep_for(std::chrono::seconds(1));
    }
    SendInt(sock_, kTrackerMagic);
    if (RecvInt(sock_) != kTrackerMagic) Fail(opt_.tracker_host + " is not a TVM RPC tracker");
    ffi::json::Object info{{ffi::String("key"), ffi::String("server:" + opt_.key)},
                           {ffi::String("addr"),
                            ffi::json::Array{opt_.custom_addr.empty()
                                                 ? ffi::Any(nullptr)
                                                 : ffi::Any(ffi::String(opt_.custom_addr)),
                                             port_}}};
    SendJSON(sock_, ffi::json::Array{kUpdateInfo, info});
    Expect(RecvJSON(sock_), "UPDATE_INFO");
  }

  static void Expect(const ffi::json::Value& reply, const char* what) {
    if (reply.cast<int64_t>() != kSuccess) Fail(std::string("tracker refused ") + what);
  }

  const Options& opt_;
  int port_;
  TCPSocket sock_;
  std::string match_key_;
  int64_t offered_at_ = 0;
  std::mt19937_64 rng_{std::random_device{}()};
};

/*! \brief Bind the first free port in [port, port_end) on host; returns the listening socket. */
TCPSocket Listen(const Options& opt, int* bound_port) {
  for (int port = opt.port; port < opt.port_end; ++port) {
    SockAddr addr(opt.host.c_str(), port);
    TCPSocket sock;
    sock.Create(addr.ss_family());
    int one = 1;
    setsockopt(sock.fd(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(sock.fd(), addr.data(), addr.length()) == 0 && listen(sock.fd(), 8) == 0) {
      *bound_port = port;
      return sock;
    }
    sock.Close();
  }
  Fail("no free port in [" + std::to_string(opt.port) + ", " + std::to_string(opt.port_end) + ")");
}

bool Readable(TCPSocket sock, int millis) {
  pollfd entry{sock.fd(), POLLIN, 0};
  return poll(&entry, 1, millis) > 0;
}

/*!
 * \brief Answer a client's handshake; returns the session timeout in seconds (0: none),
 *        or -1 when the client is not the one the tracker sent us (then the socket is closed).
 */
double Handshake(TCPSocket conn, const Options& opt, const std::string& match_key) {
  if (RecvInt(conn) != kRPCMagic) return -1;
  std::string client_key(RecvInt(conn), '\0');
  if (conn.RecvAll(client_key.data(), client_key.size()) != client_key.size()) return -1;
  std::string header = client_key.substr(0, client_key.find(' '));
  if (header != "client:" + match_key) {
    SendInt(conn, kRPCMismatch);
    return -1;
  }
  std::string server_key = "server:" + opt.key;
  SendInt(conn, kRPCMagic);
  SendInt(conn, static_cast<int32_t>(server_key.size()));
  conn.SendAll(server_key.data(), server_key.size());
  size_t timeout_at = client_key.find("-timeout=");
  return timeout_at == std::string::npos ? 0 : std::atof(client_key.c_str() + timeout_at + 9);
}

/*! \brief The global functions the RPC client expects a server to provide, rooted at `dir`. */
void RegisterServerFunctions(const std::string& dir) {
  ffi::Function::SetGlobal(
      "tvm.rpc.server.workpath",
      ffi::Function::FromTyped([dir](ffi::String name) { return dir + "/" + std::string(name); }),
      true);
  ffi::Function::SetGlobal("tvm.rpc.server.load_module",
                           ffi::Function::FromTyped([dir](ffi::String name) {
                             return ffi::Module::LoadFromFile(dir + "/" + std::string(name));
                           }),
                           true);
}

/*!
 * \brief Run one session in a child process; kill it if it outlives `timeout_s` (0: never).
 *        The child closes `server_fds` so the tracker sees this server vanish when it dies.
 */
void Serve(TCPSocket conn, const Options& opt, double timeout_s,
           std::initializer_list<int> server_fds) {
  char dir_template[] = "/tinyasr-session-XXXXXX";
  std::string dir = opt.work_dir + dir_template;
  if (mkdtemp(dir.data()) == nullptr) TCPSocket::Error("mkdtemp");
  pid_t child = fork();
  if (child == 0) {
    for (int fd : server_fds) close(fd);
    RegisterServerFunctions(dir);
    if (chdir(dir.c_str()) != 0) _exit(3);
    try {
      ffi::Function::GetGlobalRequired("rpc.ServerLoop")(static_cast<int64_t>(conn.fd()));
    } catch (const std::exception& error) {
      std::cerr << "session ended: " << error.what() << std::endl;
    }
    _exit(0);
  }
  int64_t deadline = timeout_s > 0 ? NowMillis() + static_cast<int64_t>(timeout_s * 1000) : 0;
  int status = 0;
  while (waitpid(child, &status, WNOHANG) == 0) {
    if (deadline && NowMillis() > deadline) {
      ffi::Function::GetGlobalRequired("rpc.ReturnException")(
          static_cast<int64_t>(conn.fd()),
          ffi::String("RPCSessionTimeoutError: Your " + std::to_string(timeout_s) +
                      "s session has expired, try to increase the \"session_timeout\" value."));
      kill(child, SIGKILL);
      waitpid(child, &status, 0);
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  conn.Close();
  std::string remove = "rm -rf '" + dir + "'";
  if (std::system(remove.c_str()) != 0) std::cerr << "cannot remove " << dir << std::endl;
}

int Main(int argc, char** argv) {
  Options opt = ParseOptions(argc, argv);
  signal(SIGPIPE, SIG_IGN);
  int port = 0;
  TCPSocket listener = Listen(opt, &port);
  std::cout << "tinyasr-rpc-server: listening on " << opt.host << ":" << port << " key="
            << opt.key << std::endl;
  TrackerLink tracker(opt, port);
  bool offer_key = true;  // after start, a served session or a lost tracker
  while (true) {
    try {
      if (offer_key) tracker.Register();
      offer_key = false;
      while (!Readable(listener, kPollMillis)) tracker.CheckIn();
    } catch (const std::exception& error) {  // the tracker went away: reconnect
      std::cerr << "tracker connection lost (" << error.what() << "), reconnecting" << std::endl;
      tracker.Drop();
      offer_key = true;
      continue;
    }
    TCPSocket conn(accept(listener.fd(), nullptr, nullptr));
    if (conn.BadSocket()) continue;
    double timeout_s = -1;
    try {
      timeout_s = Handshake(conn, opt, tracker.match_key());
    } catch (const std::exception&) {
    }
    if (timeout_s < 0) {  // not our client: keep offering the same key
      conn.Close();
      continue;
    }
    offer_key = true;
    Serve(conn, opt, timeout_s, {listener.fd(), tracker.fd()});
  }
}

}  // namespace tinyasr

int main(int argc, char** argv) { return tinyasr::Main(argc, argv); }
