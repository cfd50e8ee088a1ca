// The conntrack mirror of the kernel datapath: the kernel's connections that
// Weir decided (conntrack mark tagged 0b10, nfqueue_verdict.h), as events
// and dumps, and their re-evaluation when policy changes.
//
// JavaScript surface (exports.Conntrack; absent without the netfilter libs):
//
//   new Conntrack({ onEvents(records: Uint8Array) })
//   start(): subscribes to new/update/destroy events of this network
//     namespace, filtered in the kernel to Weir's mark, read by a thread and
//     delivered in batches (throws an Error naming the errno).
//   dump(): Promise<Uint8Array>, every Weir connection now (type 4 records),
//     with counters.
//   reconcile(evaluator: RuleEvaluator): Promise<{ checked, deleted,
//     remarked, unchanged, failed, records: Uint8Array }>: decides every Weir
//     connection's original direction with the evaluator's image; deletes
//     those it denies (records: their type 3 records, final counters
//     included), rewrites the mark of those a different rule allows now.
//   stats(): { events, overruns, decodeErrors, recordsLost, running }
//   close(); Conntrack.recordBytes: 128.
//
// Record (128 bytes, little-endian):
//   0 type u8 (1 new, 2 update, 3 destroy, 4 dump), 1 family (4, 6),
//   2 protocol, 3 TCP state (conntrack's: 0 none, 1 syn-sent, 2 syn-recv,
//   3 established, 4 fin-wait, 5 close-wait, 6 last-ack, 7 time-wait,
//   8 close, 9 syn-sent2; 255 not TCP), 4 mark u32, 8 id u32, 12 status u32,
//   16 orig src[16], 32 orig dst[16] (network order, IPv4 in 4 bytes),
//   48 orig sport u16, 50 orig dport u16 (ICMP: id, type), 52 reply sport,
//   54 reply dport, 56 reply src[16], 72 reply dst[16],
//   88 orig packets u64, 96 orig bytes u64, 104 reply packets u64,
//   112 reply bytes u64 (0 unless nf_conntrack_acct is on), 120 timeout s
//   u32, 124 reserved.
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <string>
#include <thread>

extern "C" {
#include <libnetfilter_conntrack/libnetfilter_conntrack.h>
#include <libnfnetlink/libnfnetlink.h>
}

#include "nfqueue_verdict.h"

namespace weir {
namespace {

constexpr size_t kRecordBytes = 128;
constexpr size_t kPostLimit = 1 << 16;
// Events reach JavaScript at most 2 ms late, or once 256 wait: one wake-up per batch under load.
constexpr uint64_t kPostDelayNs = 2000000;
constexpr size_t kPostBatch = 256;
// A dump or reconcile handles at most this many connections (the conntrack
// table's own limit is nf_conntrack_max; this bounds the agent's memory).
constexpr size_t kMaxDump = 1 << 20;

inline void PutLe16(uint8_t* p, uint16_t v) { p[0] = uint8_t(v); p[1] = uint8_t(v >> 8); }
inline void PutLe32(uint8_t* p, uint32_t v) {
  for (int i = 0; i < 4; i++) p[i] = uint8_t(v >> (8 * i));
}
inline void PutLe64(uint8_t* p, uint64_t v) {
  for (int i = 0; i < 8; i++) p[i] = uint8_t(v >> (8 * i));
}

std::string Errno(const char* what, int e) { return std::string(what) + ": " + strerror(e) + " (errno " + std::to_string(e) + ")"; }

bool Tagged(const nf_conntrack* ct) {
  return nfct_attr_is_set(ct, ATTR_MARK) && (nfct_get_attr_u32(ct, ATTR_MARK) & nf::kMarkTagMask) == nf::kMarkDecided;
}

uint16_t U16(const nf_conntrack* ct, enum nf_conntrack_attr a) { return nfct_attr_is_set(ct, a) ? ntohs(nfct_get_attr_u16(ct, a)) : 0; }

// The ports of one direction: transport ports, or ICMP id and type.
void Ports(const nf_conntrack* ct, bool orig, uint8_t protocol, uint16_t* sport, uint16_t* dport) {
  if (protocol == 1 || protocol == 58) {
    *sport = U16(ct, ATTR_ICMP_ID);
    *dport = orig && nfct_attr_is_set(ct, ATTR_ICMP_TYPE) ? nfct_get_attr_u8(ct, ATTR_ICMP_TYPE) : 0;
    return;
  }
  *sport = U16(ct, orig ? ATTR_ORIG_PORT_SRC : ATTR_REPL_PORT_SRC);
  *dport = U16(ct, orig ? ATTR_ORIG_PORT_DST : ATTR_REPL_PORT_DST);
}

void Addresses(const nf_conntrack* ct, uint8_t family, bool orig, uint8_t* src, uint8_t* dst) {
  if (family == 4) {
    uint32_t s = nfct_get_attr_u32(ct, orig ? ATTR_ORIG_IPV4_SRC : ATTR_REPL_IPV4_SRC);
    uint32_t d = nfct_get_attr_u32(ct, orig ? ATTR_ORIG_IPV4_DST : ATTR_REPL_IPV4_DST);
    std::memcpy(src, &s, 4);
    std::memcpy(dst, &d, 4);
  } else {
    const void* s = nfct_get_attr(ct, orig ? ATTR_ORIG_IPV6_SRC : ATTR_REPL_IPV6_SRC);
    const void* d = nfct_get_attr(ct, orig ? ATTR_ORIG_IPV6_DST : ATTR_REPL_IPV6_DST);
    if (s != nullptr) std::memcpy(src, s, 16);
    if (d != nullptr) std::memcpy(dst, d, 16);
  }
}

// The record of ct; false for a family other than IPv4 and IPv6.
bool RecordOf(const nf_conntrack* ct, uint8_t type, uint8_t* r) {
  std::memset(r, 0, kRecordBytes);
  const uint8_t l3 = nfct_get_attr_u8(ct, ATTR_ORIG_L3PROTO);
  const uint8_t family = l3 == AF_INET ? 4 : l3 == AF_INET6 ? 6 : 0;
  if (family == 0) return false;
  const uint8_t protocol = nfct_get_attr_u8(ct, ATTR_ORIG_L4PROTO);
  r[0] = type;
  r[1] = family;
  r[2] = protocol;
  r[3] = protocol == 6 && nfct_attr_is_set(ct, ATTR_TCP_STATE) ? nfct_get_attr_u8(ct, ATTR_TCP_STATE) : 255;
  PutLe32(r + 4, nfct_attr_is_set(ct, ATTR_MARK) ? nfct_get_attr_u32(ct, ATTR_MARK) : 0);
  PutLe32(r + 8, nfct_attr_is_set(ct, ATTR_ID) ? nfct_get_attr_u32(ct, ATTR_ID) : 0);
  PutLe32(r + 12, nfct_attr_is_set(ct, ATTR_STATUS) ? nfct_get_attr_u32(ct, ATTR_STATUS) : 0);
  Addresses(ct, family, true, r + 16, r + 32);
  uint16_t a, b;
  Ports(ct, true, protocol, &a, &b);
  PutLe16(r + 48, a);
  PutLe16(r + 50, b);
  Ports(ct, false, protocol, &a, &b);
  PutLe16(r + 52, a);
  PutLe16(r + 54, b);
  Addresses(ct, family, false, r + 56, r + 72);
  auto u64 = [ct](enum nf_conntrack_attr x) { return nfct_attr_is_set(ct, x) ? nfct_get_attr_u64(ct, x) : 0; };
  PutLe64(r + 88, u64(ATTR_ORIG_COUNTER_PACKETS));
  PutLe64(r + 96, u64(ATTR_ORIG_COUNTER_BYTES));
  PutLe64(r + 104, u64(ATTR_REPL_COUNTER_PACKETS));
  PutLe64(r + 112, u64(ATTR_REPL_COUNTER_BYTES));
  PutLe32(r + 120, nfct_attr_is_set(ct, ATTR_TIMEOUT) ? nfct_get_attr_u32(ct, ATTR_TIMEOUT) : 0);
  return true;
}

// The policy record of ct's original direction (what the first packet was).
void PolicyRecordOf(const uint8_t* r, uint8_t* rec) {
  nf::Tuple t;
  std::memset(&t, 0, sizeof t);
  t.family = r[1];
  t.protocol = r[2];
  std::memcpy(t.src, r + 16, 16);
  std::memcpy(t.dst, r + 32, 16);
  t.sport = uint16_t(r[48] | (r[49] << 8));
  t.dport = uint16_t(r[50] | (r[51] << 8));
  nf::WritePolicyRecord(t, rec);
}

// Every Weir connection of this namespace, cloned (the caller destroys them).
int DumpTagged(std::vector<nf_conntrack*>* out) {
  nfct_handle* h = nfct_open(CONNTRACK, 0);
  if (h == nullptr) return errno ? errno : EIO;
  struct Ctx {
    std::vector<nf_conntrack*>* out;
  } ctx{out};
  nfct_callback_register(
      h, NFCT_T_ALL,
      [](enum nf_conntrack_msg_type, struct nf_conntrack* ct, void* data) -> int {
        Ctx* c = static_cast<Ctx*>(data);
        if (Tagged(ct) && c->out->size() < kMaxDump) c->out->push_back(nfct_clone(ct));
        return NFCT_CB_CONTINUE;
      },
      &ctx);
  nfct_filter_dump* f = nfct_filter_dump_create();
  nfct_filter_dump_mark m{nf::kMarkDecided, nf::kMarkTagMask};
  nfct_filter_dump_set_attr(f, NFCT_FILTER_DUMP_MARK, &m);
  int r = nfct_query(h, NFCT_Q_DUMP_FILTER, f);
  int e = r < 0 ? (errno ? errno : EIO) : 0;
  nfct_filter_dump_destroy(f);
  nfct_close(h);
  return e;
}

class DumpWorker : public Napi::AsyncWorker {
 public:
  DumpWorker(Napi::Env env, Napi::Promise::Deferred deferred) : Napi::AsyncWorker(env), deferred_(deferred) {}
  void Execute() override {
    std::vector<nf_conntrack*> cts;
    int e = DumpTagged(&cts);
    uint8_t r[kRecordBytes];
    for (nf_conntrack* ct : cts) {
      if (e == 0 && RecordOf(ct, 4, r)) bytes_.insert(bytes_.end(), r, r + kRecordBytes);
      nfct_destroy(ct);
    }
    if (e != 0) SetError(Errno("conntrack dump", e));
  }
  void OnOK() override {
    Napi::Uint8Array a = Napi::Uint8Array::New(Env(), bytes_.size());
    if (!bytes_.empty()) std::memcpy(a.Data(), bytes_.data(), bytes_.size());
    deferred_.Resolve(a);
  }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  std::vector<uint8_t> bytes_;
};

class ReconcileWorker : public Napi::AsyncWorker {
 public:
  ReconcileWorker(Napi::Env env, Napi::Promise::Deferred deferred, std::shared_ptr<const void> image)
      : Napi::AsyncWorker(env), deferred_(deferred), image_(std::move(image)) {}

  void Execute() override {
    std::vector<nf_conntrack*> cts;
    int e = DumpTagged(&cts);
    if (e != 0) {
      for (nf_conntrack* ct : cts) nfct_destroy(ct);
      SetError(Errno("conntrack dump", e));
      return;
    }
    std::vector<uint8_t> records(cts.size() * kRecordBytes);
    std::vector<uint8_t> policy(cts.size() * nf::kRecordBytes);
    std::vector<int32_t> out(cts.size() * 3);
    std::vector<bool> ok(cts.size());
    for (size_t i = 0; i < cts.size(); i++) {
      ok[i] = RecordOf(cts[i], 3, records.data() + i * kRecordBytes);
      PolicyRecordOf(records.data() + i * kRecordBytes, policy.data() + i * nf::kRecordBytes);
    }
    EvaluateRecords(image_.get(), policy.data(), uint32_t(cts.size()), out.data());
    nfct_handle* h = nfct_open(CONNTRACK, 0);
    if (h == nullptr) {
      for (nf_conntrack* ct : cts) nfct_destroy(ct);
      SetError(Errno("conntrack open", errno));
      return;
    }
    for (size_t i = 0; i < cts.size(); i++) {
      if (!ok[i]) {
        nfct_destroy(cts[i]);
        continue;
      }
      checked_++;
      const int32_t eg = out[i * 3], in = out[i * 3 + 1], flags = out[i * 3 + 2];
      const uint32_t old = nfct_get_attr_u32(cts[i], ATTR_MARK);
      nf_conntrack* key = nfct_new();
      nfct_copy(key, cts[i], NFCT_CP_ORIG);
      if ((flags & nf::kFlagAllowed) == 0) {
        if (nfct_query(h, NFCT_Q_DESTROY, key) == 0) {
          deleted_++;
          const uint8_t* r = records.data() + i * kRecordBytes;
          deletedRecords_.insert(deletedRecords_.end(), r, r + kRecordBytes);
        } else if (errno != ENOENT) {
          failed_++;
        }
      } else if (nf::MarkOf(eg, in) != old) {
        nfct_set_attr_u32(key, ATTR_MARK, nf::MarkOf(eg, in));
        if (nfct_query(h, NFCT_Q_UPDATE, key) == 0) remarked_++;
        else if (errno != ENOENT) failed_++;
      } else {
        unchanged_++;
      }
      nfct_destroy(key);
      nfct_destroy(cts[i]);
    }
    nfct_close(h);
  }

  void OnOK() override {
    Napi::Env env = Env();
    Napi::Object o = Napi::Object::New(env);
    o.Set("checked", double(checked_));
    o.Set("deleted", double(deleted_));
    o.Set("remarked", double(remarked_));
    o.Set("unchanged", double(unchanged_));
    o.Set("failed", double(failed_));
    Napi::Uint8Array a = Napi::Uint8Array::New(env, deletedRecords_.size());
    if (!deletedRecords_.empty()) std::memcpy(a.Data(), deletedRecords_.data(), deletedRecords_.size());
    o.Set("records", a);
    deferred_.Resolve(o);
  }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  std::shared_ptr<const void> image_;
  uint64_t checked_ = 0, deleted_ = 0, remarked_ = 0, unchanged_ = 0, failed_ = 0;
  std::vector<uint8_t> deletedRecords_;
};

class Conntrack : public Napi::ObjectWrap<Conntrack> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "Conntrack",
                       {InstanceMethod<&Conntrack::Start>("start"), InstanceMethod<&Conntrack::Dump>("dump"),
                        InstanceMethod<&Conntrack::Reconcile>("reconcile"), InstanceMethod<&Conntrack::Stats>("stats"),
                        InstanceMethod<&Conntrack::Close>("close"),
                        StaticValue("recordBytes", Napi::Number::New(env, double(kRecordBytes)))});
  }

  explicit Conntrack(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Conntrack>(info) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsObject() || !info[0].As<Napi::Object>().Get("onEvents").IsFunction()) {
      Napi::TypeError::New(env, "Conntrack: options.onEvents must be a function").ThrowAsJavaScriptException();
      return;
    }
    post_ = new nf::RecordPost(env, info[0].As<Napi::Object>().Get("onEvents").As<Napi::Function>(), "weir-conntrack",
                               kRecordBytes, kPostLimit);
    post_->Unref(env);
  }

  ~Conntrack() override { Stop(); }

 private:
  Napi::Value Start(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (post_ == nullptr) {
      Napi::Error::New(env, "Conntrack: closed").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    if (thread_.joinable()) return env.Undefined();
    h_ = nfct_open(CONNTRACK, NF_NETLINK_CONNTRACK_NEW | NF_NETLINK_CONNTRACK_UPDATE | NF_NETLINK_CONNTRACK_DESTROY);
    if (h_ == nullptr) {
      Napi::Error::New(env, Errno("Conntrack: subscribe to conntrack events", errno)).ThrowAsJavaScriptException();
      return env.Undefined();
    }
    nfnl_rcvbufsiz(nfct_nfnlh(h_), 8 << 20);
    // Only Weir's connections, filtered in the kernel (a socket BPF filter).
    nfct_filter* f = nfct_filter_create();
    nfct_filter_dump_mark m{nf::kMarkDecided, nf::kMarkTagMask};
    nfct_filter_add_attr(f, NFCT_FILTER_MARK, &m);
    if (nfct_filter_attach(nfct_fd(h_), f) < 0) filterless_ = true;
    nfct_filter_destroy(f);
    nfct_callback_register(
        h_, NFCT_T_ALL,
        [](enum nf_conntrack_msg_type type, struct nf_conntrack* ct, void* data) -> int {
          Conntrack* self = static_cast<Conntrack*>(data);
          if (!Tagged(ct)) return NFCT_CB_CONTINUE;
          uint8_t r[kRecordBytes];
          uint8_t t = type == NFCT_T_NEW ? 1 : type == NFCT_T_UPDATE ? 2 : type == NFCT_T_DESTROY ? 3 : 0;
          if (t == 0 || !RecordOf(ct, t, r)) {
            self->decodeErrors_++;
            return NFCT_CB_CONTINUE;
          }
          self->events_++;
          self->post_->Append(r);
          return NFCT_CB_CONTINUE;
        },
        this);
    int fd = nfct_fd(h_);
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    stopFd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    thread_ = std::thread([this] { Loop(); });
    return env.Undefined();
  }

  void Loop() {
    const int fd = nfct_fd(h_);
    while (!stop_.load(std::memory_order_acquire)) {
      pollfd fds[2] = {{fd, POLLIN, 0}, {stopFd_, POLLIN, 0}};
      post_->FlushIfDue(nf::MonotonicNs(), kPostDelayNs, kPostBatch);
      int r = poll(fds, 2, post_->TimeoutMs(nf::MonotonicNs(), kPostDelayNs, 1000));
      if (r < 0) continue;
      if (fds[1].revents != 0) break;
      if ((fds[0].revents & POLLIN) == 0) continue;
      // Reads until the socket is drained (EAGAIN); ENOBUFS: the kernel dropped events.
      if (nfct_catch(h_) < 0 && errno == ENOBUFS) overruns_++;
      post_->FlushIfDue(nf::MonotonicNs(), kPostDelayNs, kPostBatch);
    }
  }

  Napi::Value Dump(const Napi::CallbackInfo& info) {
    Napi::Promise::Deferred d = Napi::Promise::Deferred::New(info.Env());
    (new DumpWorker(info.Env(), d))->Queue();
    return d.Promise();
  }

  Napi::Value Reconcile(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Promise::Deferred d = Napi::Promise::Deferred::New(env);
    std::shared_ptr<const void> image = info.Length() >= 1 ? RuleEvaluatorImage(env, info[0]) : nullptr;
    if (!image) {
      d.Reject(Napi::TypeError::New(env, "Conntrack.reconcile: not a live RuleEvaluator").Value());
      return d.Promise();
    }
    (new ReconcileWorker(env, d, std::move(image)))->Queue();
    return d.Promise();
  }

  Napi::Value Stats(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Object o = Napi::Object::New(env);
    o.Set("running", thread_.joinable() && !stop_.load());
    o.Set("events", double(events_.load()));
    o.Set("overruns", double(overruns_.load()));
    o.Set("decodeErrors", double(decodeErrors_.load()));
    o.Set("recordsLost", post_ == nullptr ? 0.0 : double(post_->Lost()));
    o.Set("kernelFilter", !filterless_);
    return o;
  }

  void Stop() {
    stop_.store(true, std::memory_order_release);
    if (stopFd_ >= 0) {
      uint64_t one = 1;
      ssize_t ignored = write(stopFd_, &one, sizeof one);
      (void)ignored;
    }
    if (thread_.joinable()) thread_.join();
    if (h_ != nullptr) nfct_close(h_);
    h_ = nullptr;
    if (stopFd_ >= 0) close(stopFd_);
    stopFd_ = -1;
    if (post_ != nullptr) post_->Close();
    post_ = nullptr;
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    Stop();
    return info.Env().Undefined();
  }

  nfct_handle* h_ = nullptr;
  int stopFd_ = -1;
  bool filterless_ = false;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  nf::RecordPost* post_ = nullptr;
  std::atomic<uint64_t> events_{0}, overruns_{0}, decodeErrors_{0};
};

}  // namespace

Napi::Object InitConntrack(Napi::Env env, Napi::Object exports) {
  exports.Set("Conntrack", Conntrack::Define(env));
  return exports;
}

}  // namespace weir
