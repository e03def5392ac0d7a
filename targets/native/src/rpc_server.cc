// tinyasr-rpc-server: a TVM RPC server for boards, with no Python on the board.
//
// It speaks the two wire protocols TVM's Python client and tracker use:
//  - tracker (all integers little-endian int32, messages = length + JSON):
//    handshake [0x2F271] -> [0x2F271]; then
//    UPDATE_INFO {"key": "server:KEY", "addr": [host, port]},
//    PUT [KEY, [port, MATCHKEY], custom_addr], GET_PENDING_MATCHKEYS; each answered by the tracker.
//  - RPC session handshake: client sends [0xFF271, len, "client:MATCHKEY [-timeout=S]"], we answer
//    [0xFF271, len, "server:KEY"] (or 0xFF273 on a key mismatch); then the session itself is the
//    runtime's own RPC endpoint (rpc.ServerLoop from the wheel's rpc_socket_impl.cc).
//
// Each session runs in a forked child, in a fresh work directory, so a crashing or timed-out
// session never takes the server down; afterwards the server registers with the tracker again.
//
// Hardening (rpc_sandbox.h has the file side): it listens on 127.0.0.1 unless --host says
// otherwise; handshakes are read without blocking, at most kMaxPending at a time, each dropped
// after --handshake-timeout seconds, and a key may claim at most kMaxKeyBytes, so a silent or
// lying client neither stalls the board nor makes it allocate; --max-session caps how long one
// client may hold the board once in; --allow limits client addresses
// and --secret-file requires a "-secret=..." word in the client's key. Uploads, downloads,
// removes and load_module stay inside the session directory. None of this stops a client that
// is let in from running code: load_module runs an uploaded library's constructors.

#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <tvm/ffi/extra/json.h>
#include <tvm/ffi/extra/module.h>
#include <tvm/ffi/function.h>
#include <tvm/ffi/reflection/registry.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "rpc_sandbox.h"
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
constexpr int kDefaultPortSpan = 109;     // --port 9090 tries up to 9198, as TVM's server does
constexpr int32_t kMaxKeyBytes = 4096;    // the most a client's handshake key may claim
constexpr int32_t kMaxTrackerMessage = 1 << 20;  // the most a tracker reply may claim
constexpr size_t kMaxPending = 16;        // connections still in their handshake, at most

struct Options {
  std::string host = "127.0.0.1";
  int port = 9090;
  int port_end = 0;  // 0: port + kDefaultPortSpan
  std::string tracker_host;
  int tracker_port = 0;
  std::string key;
  std::string custom_addr;  // address the tracker hands to clients; null means "as seen"
  std::string work_dir = "/tmp";
  double handshake_timeout_s = 10;
  double max_session_s = 0;  // 0: as long as the client asks (its -timeout=S, or forever)
  sandbox::AllowList allow;
  std::string allow_text;
  std::string secret;  // empty: none required
  bool standalone = false;  // serve without a tracker: asked for, never a silent default
};

[[noreturn]] void Fail(const std::string& message) {
  std::cerr << "tinyasr-rpc-server: error: " << message << std::endl;
  std::exit(2);
}

const char kUsage[] =
    "usage: tinyasr-rpc-server --key KEY (--tracker HOST:PORT | --standalone) [options]\n"
    "\n"
    "A TVM RPC server for a board: registers with a tracker under KEY (or, --standalone, serves\n"
    "clients that connect with KEY) and runs each session in a fresh directory. It listens on\n"
    "the first free port of 9090-9198 (--port, --port-end) and prints where.\n"
    "Anyone who can connect can run code here (an uploaded library runs when loaded): keep it\n"
    "on a trusted network (loopback + SSH tunnel, --allow, --secret-file).\n"
    "\n"
    "options:\n"
    "  --key KEY                 the board's key (required)\n"
    "  --host HOST               address to listen on (default 127.0.0.1; 0.0.0.0 for all)\n"
    "  --port PORT               first port to try (default 9090)\n"
    "  --port-end PORT           first port not to try (default PORT+109)\n"
    "  --tracker HOST:PORT       register with this TVM RPC tracker\n"
    "  --standalone              no tracker: clients connect to this server directly\n"
    "  --custom-addr ADDR        address the tracker hands to clients (default: as it sees us)\n"
    "  --work-dir DIR            where session directories are made (default /tmp)\n"
    "  --handshake-timeout S     drop a connection that has not finished its handshake in S\n"
    "                            seconds (default 10)\n"
    "  --max-session S           end any session after S seconds, whatever the client asked\n"
    "                            (default: the client's session_timeout, or none)\n"
    "  --allow CIDR[,CIDR...]    accept only clients from these networks (e.g. 10.0.0.0/8,::1)\n"
    "  --secret-file FILE        require clients to present the secret in FILE: they connect\n"
    "                            with the key \"MATCHKEY -secret=SECRET\" (tinyasr does this when\n"
    "                            TINYASR_RPC_SECRET is set)\n"
    "  -h, --help                print this and exit\n";

/*! \brief The whole of `text` as an integer in [low, high], or a one-line error naming `arg`. */
int ParseInt(const std::string& arg, const std::string& text, int low, int high) {
  char* end = nullptr;
  errno = 0;
  long value = std::strtol(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0' || errno != 0 || value < low || value > high) {
    Fail(arg + ": expected an integer in [" + std::to_string(low) + ", " + std::to_string(high) +
         "], got '" + text + "'");
  }
  return static_cast<int>(value);
}

/*! \brief The whole of `text` as seconds in (0, high], or a one-line error naming `arg`. */
double ParseSeconds(const std::string& arg, const std::string& text, double high) {
  char* end = nullptr;
  double seconds = std::strtod(text.c_str(), &end);
  if (text.empty() || *end != '\0' || !(seconds > 0 && seconds <= high)) {
    Fail(arg + ": expected seconds in (0, " + std::to_string(static_cast<int64_t>(high)) +
         "], got '" + text + "'");
  }
  return seconds;
}

std::string ReadSecret(const std::string& path) {
  FILE* file = std::fopen(path.c_str(), "rb");
  if (file == nullptr) Fail("--secret-file: cannot read " + path + ": " + std::strerror(errno));
  std::string text;
  char buffer[512];
  size_t n;
  while ((n = std::fread(buffer, 1, sizeof(buffer), file)) > 0 && text.size() <= 1024) {
    text.append(buffer, n);
  }
  std::fclose(file);
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) text.pop_back();
  if (text.empty()) Fail("--secret-file: " + path + " is empty");
  if (text.size() > 1024) Fail("--secret-file: the secret in " + path + " is over 1024 bytes");
  for (char c : text) {
    if (!std::isgraph(static_cast<unsigned char>(c))) {
      Fail("--secret-file: the secret in " + path + " must be one word of printable characters");
    }
  }
  return text;
}

Options ParseOptions(int argc, char** argv) {
  Options opt;
  bool port_end_given = false;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "-h" || arg == "--help") {
      std::cout << kUsage;
      std::exit(0);
    }
  }
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--standalone") {
      opt.standalone = true;
      continue;
    }
    static const char* const kOptions[] = {
        "--host", "--port", "--port-end", "--tracker", "--key", "--custom-addr", "--work-dir",
        "--handshake-timeout", "--max-session", "--allow", "--secret-file"};
    bool known = false;
    for (const char* name : kOptions) known = known || arg == name;
    if (!known) Fail("unknown option '" + arg + "' (see --help)");
    if (i + 1 >= argc) Fail("missing value for " + arg);
    std::string value = argv[++i];
    if (arg == "--host") {
      if (value.empty()) Fail("--host: empty address");
      opt.host = value;
    } else if (arg == "--port") {
      opt.port = ParseInt(arg, value, 1, 65535);
    } else if (arg == "--port-end") {
      opt.port_end = ParseInt(arg, value, 2, 65536);
      port_end_given = true;
    } else if (arg == "--tracker") {
      size_t colon = value.rfind(':');
      if (colon == std::string::npos || colon == 0) {
        Fail("--tracker: expected HOST:PORT, got '" + value + "'");
      }
      opt.tracker_host = value.substr(0, colon);
      opt.tracker_port = ParseInt(arg, value.substr(colon + 1), 1, 65535);
    } else if (arg == "--key") {
      opt.key = value;
    } else if (arg == "--custom-addr") {
      opt.custom_addr = value;
    } else if (arg == "--work-dir") {
      opt.work_dir = value;
    } else if (arg == "--handshake-timeout") {
      opt.handshake_timeout_s = ParseSeconds(arg, value, 3600);
    } else if (arg == "--max-session") {
      opt.max_session_s = ParseSeconds(arg, value, 1e7);
    } else if (arg == "--allow") {
      std::string bad;
      if (!opt.allow.Parse(value, &bad)) {
        Fail("--allow: '" + bad + "' is not an IPv4/IPv6 address or network (CIDR)");
      }
      opt.allow_text = value;
    } else if (arg == "--secret-file") {
      opt.secret = ReadSecret(value);
    }
  }
  if (opt.key.empty()) Fail("--key KEY is required (see --help)");
  if (opt.key.size() > 256) Fail("--key: over 256 characters");
  for (char c : opt.key) {
    if (!std::isgraph(static_cast<unsigned char>(c))) {
      Fail("--key: must be one word of printable characters, got '" + opt.key + "'");
    }
  }
  if (!port_end_given) opt.port_end = std::min(opt.port + kDefaultPortSpan, 65536);
  if (opt.port_end <= opt.port) Fail("--port-end: must be greater than --port");
  struct stat info;
  if (stat(opt.work_dir.c_str(), &info) != 0 || !S_ISDIR(info.st_mode) ||
      access(opt.work_dir.c_str(), W_OK | X_OK) != 0) {
    Fail("--work-dir: " + opt.work_dir + " is not a writable directory");
  }
  if (!opt.tracker_host.empty()) {
    try {
      tvm::support::SockAddr(opt.tracker_host.c_str(), opt.tracker_port);
    } catch (const std::exception&) {
      Fail("--tracker: cannot resolve '" + opt.tracker_host + "'");
    }
  }
  // Without a tracker nobody can find the server through one, and a server started with no
  // arguments by mistake would otherwise sit on its port unannounced.
  if (opt.tracker_host.empty() && !opt.standalone) {
    Fail("give --tracker HOST:PORT to register with a tracker, or --standalone to serve "
         "clients that connect directly (see --help)");
  }
  if (!opt.tracker_host.empty() && opt.standalone) Fail("--standalone: not with --tracker");
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
  int32_t size = RecvInt(sock);
  if (size < 0 || size > kMaxTrackerMessage) {
    throw std::runtime_error("tracker message of " + std::to_string(size) + " bytes refused");
  }
  std::string text(size, '\0');
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

  /*! \brief While idle: if a client took our key from the tracker but never came, offer a new
   *         one. */
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
    SockAddr addr;
    try {
      addr = SockAddr(opt.host.c_str(), port);
    } catch (const std::exception&) {
      Fail("--host: cannot resolve '" + opt.host + "'");
    }
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
  Fail("--port: no free port in [" + std::to_string(opt.port) + ", " +
       std::to_string(opt.port_end) + ") on " + opt.host);
}

/*! \brief A numeric "host:port" for a peer address (for logs). */
std::string PeerName(const sockaddr_storage& peer, socklen_t length) {
  char host[NI_MAXHOST], port[NI_MAXSERV];
  if (getnameinfo(reinterpret_cast<const sockaddr*>(&peer), length, host, sizeof(host), port,
                  sizeof(port), NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
    return "?";
  }
  return std::string(host) + ":" + port;
}

void Log(const std::string& message) {
  std::cerr << "tinyasr-rpc-server: " << message << std::endl;
}

void SetBlocking(int fd, bool blocking) {
  int flags = fcntl(fd, F_GETFL, 0);
  fcntl(fd, F_SETFL, blocking ? flags & ~O_NONBLOCK : flags | O_NONBLOCK);
}

/*!
 * \brief A connection still in its handshake: [magic, length, key] read without blocking, so a
 *        silent or slow client holds up no one, and dropped at its deadline.
 */
struct Pending {
  TCPSocket conn;
  std::string peer;
  int64_t deadline = 0;
  std::string received;  // bytes so far
  size_t needed = 8;     // magic + length, then + the key's length
  bool header = false;   // magic and length read and accepted

  /*! \brief Read what has arrived; false when the connection must be dropped (`why` says). */
  bool Read(std::string* why) {
    while (received.size() < needed) {
      char buffer[512];
      ssize_t n = recv(conn.fd(), buffer, std::min(sizeof(buffer), needed - received.size()), 0);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return true;
      if (n <= 0) {
        *why = "closed during the handshake";
        return false;
      }
      received.append(buffer, static_cast<size_t>(n));
      if (received.size() == 8) {
        int32_t magic, length;
        std::memcpy(&magic, received.data(), 4);
        std::memcpy(&length, received.data() + 4, 4);
        if (magic != kRPCMagic) {
          *why = "not a TVM RPC handshake";
          return false;
        }
        if (length < 0 || length > kMaxKeyBytes) {
          *why = "handshake claims a " + std::to_string(length) + "-byte key (at most " +
                 std::to_string(kMaxKeyBytes) + ")";
          return false;
        }
        needed = 8 + static_cast<size_t>(length);
        header = true;
      }
    }
    return true;
  }
  bool complete() const { return header && received.size() == needed; }
  std::string key() const { return received.substr(8); }
};

/*!
 * \brief Judge a client's key "client:MATCHKEY [-timeout=S] [-secret=X]" and answer it.
 *        Returns the session timeout in seconds (0: none), or -1 when the client is not the one
 *        the tracker sent us or lacks the secret (it is told "mismatch").
 */
double Answer(TCPSocket conn, const std::string& client_key, const Options& opt,
              const std::string& match_key, std::string* why) {
  std::vector<std::string> words;
  for (size_t start = 0; start <= client_key.size();) {
    size_t end = client_key.find(' ', start);
    if (end == std::string::npos) end = client_key.size();
    if (end > start) words.push_back(client_key.substr(start, end - start));
    start = end + 1;
  }
  double timeout_s = 0;
  std::string secret;
  bool has_secret = false;
  for (size_t i = 1; i < words.size(); ++i) {
    if (words[i].rfind("-timeout=", 0) == 0) {
      timeout_s = std::atof(words[i].c_str() + 9);
      if (!(timeout_s > 0)) timeout_s = 0;        // also NaN
      timeout_s = std::min(timeout_s, 1e7);
    } else if (words[i].rfind("-secret=", 0) == 0) {
      secret = words[i].substr(8);
      has_secret = true;
    }
  }
  bool ok = !words.empty() && words[0] == "client:" + match_key;
  if (!ok) {
    *why = "key mismatch";
  } else if (!opt.secret.empty() && !(has_secret && sandbox::SecretEquals(secret, opt.secret))) {
    ok = false;
    *why = has_secret ? "wrong secret" : "no secret";
  }
  SetBlocking(conn.fd(), true);
  if (!ok) {
    SendInt(conn, kRPCMismatch);
    return -1;
  }
  if (opt.max_session_s > 0) {
    timeout_s = timeout_s > 0 ? std::min(timeout_s, opt.max_session_s) : opt.max_session_s;
  }
  std::string server_key = "server:" + opt.key;
  SendInt(conn, kRPCMagic);
  SendInt(conn, static_cast<int32_t>(server_key.size()));
  conn.SendAll(server_key.data(), server_key.size());
  return timeout_s;
}

int RemoveEntry(const char* path, const struct stat*, int, FTW*) { return std::remove(path); }

/*!
 * \brief Run one session in a child process; kill it if it outlives `timeout_s` (0: never).
 *        The child closes `other_fds` (listener, tracker, other clients) so the tracker sees
 *        this server vanish when it dies, and no other client's connection outlives ours.
 */
void Serve(TCPSocket conn, const Options& opt, double timeout_s,
           const std::vector<int>& other_fds) {
  char dir_template[] = "/tinyasr-session-XXXXXX";
  std::string dir = opt.work_dir + dir_template;
  if (mkdtemp(dir.data()) == nullptr) {
    Log("cannot make a session directory in " + opt.work_dir + ": " + std::strerror(errno));
    conn.Close();
    return;
  }
  pid_t child = fork();
  if (child == 0) {
    for (int fd : other_fds) close(fd);
    try {
      sandbox::RegisterFileFunctions(dir);
      if (chdir(dir.c_str()) != 0) _exit(3);
      ffi::Function::GetGlobalRequired("rpc.ServerLoop")(static_cast<int64_t>(conn.fd()));
    } catch (const std::exception& error) {
      std::cerr << "session ended: " << error.what() << std::endl;
    }
    _exit(0);
  }
  int64_t deadline = timeout_s > 0 ? NowMillis() + static_cast<int64_t>(timeout_s * 1000) : 0;
  int status = 0;
  while (child > 0 && waitpid(child, &status, WNOHANG) == 0) {
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
  if (child < 0) Log(std::string("fork failed: ") + std::strerror(errno));
  conn.Close();
  if (nftw(dir.c_str(), RemoveEntry, 16, FTW_DEPTH | FTW_PHYS) != 0) Log("cannot remove " + dir);
}

int Main(int argc, char** argv) {
  Options opt = ParseOptions(argc, argv);
  signal(SIGPIPE, SIG_IGN);
  int port = 0;
  TCPSocket listener = Listen(opt, &port);
  SetBlocking(listener.fd(), false);
  std::cout << "tinyasr-rpc-server: listening on " << opt.host << ":" << port << " (ports tried "
            << opt.port << "-" << opt.port_end - 1 << ") key=" << opt.key << " tracker="
            << (opt.tracker_host.empty()
                    ? std::string("none")
                    : opt.tracker_host + ":" + std::to_string(opt.tracker_port))
            << " allow=" << (opt.allow.empty() ? std::string("any") : opt.allow_text)
            << " secret=" << (opt.secret.empty() ? "no" : "yes") << " handshake-timeout="
            << opt.handshake_timeout_s << "s max-session=";
  if (opt.max_session_s > 0) {
    std::cout << opt.max_session_s << "s" << std::endl;
  } else {
    std::cout << "none" << std::endl;
  }
  if (geteuid() == 0) {
    Log("warning: running as root; any client can run code here as root (see --help)");
  }
  TrackerLink tracker(opt, port);
  std::vector<Pending> pending;
  bool offer_key = true;  // after start, a served session or a lost tracker
  int64_t next_check_in = 0;
  auto drop = [&](size_t i, const std::string& why) {
    Log("dropped " + pending[i].peer + ": " + why);
    pending[i].conn.Close();
    pending.erase(pending.begin() + static_cast<std::ptrdiff_t>(i));
  };
  while (true) {
    try {
      if (offer_key) tracker.Register();
      offer_key = false;
      if (NowMillis() >= next_check_in) {
        tracker.CheckIn();
        next_check_in = NowMillis() + kPollMillis;
      }
    } catch (const std::exception& error) {  // the tracker went away: reconnect
      std::cerr << "tracker connection lost (" << error.what() << "), reconnecting" << std::endl;
      tracker.Drop();
      offer_key = true;
      continue;
    }
    int64_t wake = next_check_in;
    std::vector<pollfd> polled{{listener.fd(), POLLIN, 0}};
    for (const Pending& client : pending) {
      polled.push_back({client.conn.fd(), POLLIN, 0});
      wake = std::min(wake, client.deadline);
    }
    int wait = static_cast<int>(std::max<int64_t>(0, std::min<int64_t>(wake - NowMillis(),
                                                                       kPollMillis)));
    if (poll(polled.data(), polled.size(), wait) < 0 && errno != EINTR) TCPSocket::Error("poll");

    // Handshakes that progressed; the first complete one that is ours gets served.
    int served = -1;
    double timeout_s = 0;
    for (size_t i = polled.size() - 1; i >= 1 && served < 0; --i) {
      size_t index = i - 1;
      if (polled[i].revents == 0) continue;
      std::string why;
      if (!pending[index].Read(&why)) {
        drop(index, why);
        continue;
      }
      if (!pending[index].complete()) continue;
      try {
        timeout_s = Answer(pending[index].conn, pending[index].key(), opt, tracker.match_key(),
                           &why);
      } catch (const std::exception& error) {
        timeout_s = -1;
        why = error.what();
      }
      if (timeout_s < 0) {  // not our client: keep offering the same key
        drop(index, why);
        continue;
      }
      served = static_cast<int>(index);
    }
    if (served >= 0) {
      Pending client = pending[served];
      pending.erase(pending.begin() + served);
      std::vector<int> others{listener.fd(), tracker.fd()};
      for (const Pending& other : pending) others.push_back(other.conn.fd());
      Log("session for " + client.peer);
      offer_key = true;
      Serve(client.conn, opt, timeout_s, others);
      continue;
    }
    int64_t now = NowMillis();
    for (size_t i = pending.size(); i-- > 0;) {
      if (now >= pending[i].deadline) drop(i, "handshake timed out");
    }
    if (polled[0].revents != 0) {
      sockaddr_storage peer{};
      socklen_t length = sizeof(peer);
      TCPSocket conn(accept4(listener.fd(), reinterpret_cast<sockaddr*>(&peer), &length,
                             SOCK_NONBLOCK | SOCK_CLOEXEC));
      if (conn.BadSocket()) continue;
      std::string name = PeerName(peer, length);
      if (!opt.allow.Allows(peer)) {
        Log("refused " + name + ": not in --allow");
        conn.Close();
      } else if (pending.size() >= kMaxPending) {
        Log("refused " + name + ": " + std::to_string(kMaxPending) + " handshakes already waiting");
        conn.Close();
      } else {
        Pending client;
        client.conn = conn;
        client.peer = name;
        client.deadline = now + static_cast<int64_t>(opt.handshake_timeout_s * 1000);
        pending.push_back(client);
      }
    }
  }
}

}  // namespace tinyasr

int main(int argc, char** argv) {
  try {
    return tinyasr::Main(argc, argv);
  } catch (const std::exception& error) {
    std::cerr << "tinyasr-rpc-server: error: " << error.what() << std::endl;
    return 1;
  }
}
