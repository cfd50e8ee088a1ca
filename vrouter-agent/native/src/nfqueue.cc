// The slow path of the kernel datapath: a thread that reads the first packet
// of every new flow from an NFQUEUE, decides it with the native rule
// evaluator and returns the verdicts in batches, with no JavaScript on the
// way; JavaScript hears what was decided afterwards, in batches.
//
// JavaScript surface (exports.NfQueue; absent when built without the
// netfilter libraries):
//
//   new NfQueue({ queue: u16, failOpen: boolean, maxBatch?: 1..1024 (64),
//                 onDecisions(records: Uint8Array) })
//   setEvaluator(evaluator: RuleEvaluator, generation: u32): the image that
//     decides from the next batch on (an atomic swap: a batch is decided by
//     one image); generation rides in each decision record.
//   start(): binds the queue in this network namespace (throws an Error
//     naming the errno: EPERM without CAP_NET_ADMIN, EBUSY when another
//     process holds the queue) and starts the thread. setEvaluator first.
//   stats(): counters and first-packet latency percentiles: `latency` from the
//     read to the verdict sent, `decideLatency` from the read to the verdict
//     built (the send runs the kernel's reinjection of accepted packets).
//   resetLatency(); close() (idempotent: stops the thread, unbinds).
//   NfQueue.decisionBytes: 64.
//
// Per batch: recvmmsg (up to maxBatch packet messages) → parse each packet's
// IP and transport header → one EvaluateRecords call → one sendmsg carrying
// every verdict message: NF_ACCEPT with the packet mark of nfqueue_verdict.h
// (the weir table's stamp chain copies it to the conntrack mark), or NF_DROP
// for a denied or unparsable packet. Latency is measured per packet from the
// return of the recvmmsg that read it to the return of the sendmsg that
// carried its verdict.
//
// Decision record (64 bytes, little-endian), one per packet:
//   0 src[16], 16 dst[16] (network order; IPv4 in the first 4 bytes)
//   32 family u8 (4, 6; 0 unparsable), 33 protocol u8,
//   34 verdict u8: 0 allowed, 1 denied by egress, 2 denied by ingress,
//      3 unparsable (dropped),
//   35 flags u8: 1 self (endpoint to itself)
//   36 sport u16, 38 dport u16 (ICMP: echo id, type)
//   40 egress i32, 44 ingress i32 (the evaluator's codes: rule index or
//      VerdictCode), 48 mark u32 (0 when dropped), 52 generation u32,
//   56 latency ns u32 (saturating), 60 reserved 0
#include <arpa/inet.h>
#include <errno.h>
#include <libmnl/libmnl.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_queue.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmath>
#include <string>
#include <thread>

extern "C" {
#include <libnetfilter_queue/libnetfilter_queue.h>
}

#include "nfqueue_verdict.h"

namespace weir {
namespace {

using nf::Tuple;

constexpr size_t kDecisionBytes = 64;
constexpr size_t kRecvBufferBytes = 8192;
constexpr uint32_t kCopyRange = 256;
constexpr uint32_t kQueueMaxLen = 8192;
constexpr size_t kPostLimit = 1 << 16;
// Decisions reach JavaScript at most 2 ms late, or once 256 wait: one wake-up per batch under load.
constexpr uint64_t kPostDelayNs = 2000000;
constexpr size_t kPostBatch = 256;
// Latency histogram: 64 ns buckets below 65.536 µs, then 1 µs buckets to ~4.2 ms, then one overflow bucket.
constexpr size_t kFineBuckets = 1024;
constexpr size_t kCoarseBuckets = 4096;
constexpr size_t kBuckets = kFineBuckets + kCoarseBuckets + 1;

inline uint64_t NowNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return uint64_t(ts.tv_sec) * 1000000000ull + uint64_t(ts.tv_nsec);
}

inline size_t BucketOf(uint64_t ns) {
  if (ns < kFineBuckets * 64) return size_t(ns / 64);
  uint64_t c = (ns - kFineBuckets * 64) / 1024;
  return c < kCoarseBuckets ? kFineBuckets + size_t(c) : kBuckets - 1;
}

inline uint64_t BucketUpperNs(size_t b) {
  if (b < kFineBuckets) return (b + 1) * 64;
  if (b < kBuckets - 1) return kFineBuckets * 64 + (b - kFineBuckets + 1) * 1024;
  return ~0ull;
}

inline void PutLe16(uint8_t* p, uint16_t v) { p[0] = uint8_t(v); p[1] = uint8_t(v >> 8); }
inline void PutLe32(uint8_t* p, uint32_t v) {
  p[0] = uint8_t(v); p[1] = uint8_t(v >> 8); p[2] = uint8_t(v >> 16); p[3] = uint8_t(v >> 24);
}

std::string Errno(const char* what, int e) { return std::string(what) + ": " + strerror(e) + " (errno " + std::to_string(e) + ")"; }

// A latency histogram (histMu_ held for every use).
struct Histogram {
  std::vector<uint64_t> buckets = std::vector<uint64_t>(kBuckets);
  uint64_t count = 0, sumNs = 0, maxNs = 0;
  void Add(uint64_t ns, uint64_t n) {
    buckets[BucketOf(ns)] += n;
    count += n;
    sumNs += ns * n;
    if (ns > maxNs) maxNs = ns;
  }
  void Reset() {
    std::fill(buckets.begin(), buckets.end(), 0);
    count = sumNs = maxNs = 0;
  }
  // Upper bound of the bucket holding the q-quantile; 0 when empty.
  double Percentile(double q) const {
    if (count == 0) return 0;
    uint64_t want = uint64_t(std::ceil(q * double(count)));
    if (want == 0) want = 1;
    uint64_t seen = 0;
    for (size_t b = 0; b < kBuckets; b++) {
      seen += buckets[b];
      if (seen >= want) return b == kBuckets - 1 ? double(maxNs) : double(BucketUpperNs(b));
    }
    return double(maxNs);
  }
  Napi::Object ToObject(Napi::Env env) const {
    Napi::Object l = Napi::Object::New(env);
    l.Set("count", double(count));
    l.Set("meanNs", count == 0 ? 0.0 : double(sumNs) / double(count));
    l.Set("maxNs", double(maxNs));
    l.Set("p50Ns", Percentile(0.50));
    l.Set("p90Ns", Percentile(0.90));
    l.Set("p99Ns", Percentile(0.99));
    return l;
  }
};

class NfQueue : public Napi::ObjectWrap<NfQueue> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "NfQueue",
                       {InstanceMethod<&NfQueue::SetEvaluator>("setEvaluator"), InstanceMethod<&NfQueue::Start>("start"),
                        InstanceMethod<&NfQueue::Stats>("stats"), InstanceMethod<&NfQueue::ResetLatency>("resetLatency"),
                        InstanceMethod<&NfQueue::Close>("close"),
                        StaticValue("decisionBytes", Napi::Number::New(env, double(kDecisionBytes)))});
  }

  explicit NfQueue(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NfQueue>(info) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsObject()) {
      Napi::TypeError::New(env, "NfQueue: options must be an object").ThrowAsJavaScriptException();
      return;
    }
    Napi::Object o = info[0].As<Napi::Object>();
    Napi::Value q = o.Get("queue");
    if (!q.IsNumber() || q.As<Napi::Number>().DoubleValue() < 0 || q.As<Napi::Number>().DoubleValue() > 65535 ||
        std::floor(q.As<Napi::Number>().DoubleValue()) != q.As<Napi::Number>().DoubleValue()) {
      Napi::TypeError::New(env, "NfQueue: queue must be an integer in [0, 65535]").ThrowAsJavaScriptException();
      return;
    }
    queue_ = uint16_t(q.As<Napi::Number>().Uint32Value());
    failOpen_ = o.Get("failOpen").ToBoolean().Value();
    Napi::Value mb = o.Get("maxBatch");
    if (!mb.IsUndefined()) {
      double d = mb.IsNumber() ? mb.As<Napi::Number>().DoubleValue() : -1;
      if (!(d >= 1 && d <= 1024) || std::floor(d) != d) {
        Napi::TypeError::New(env, "NfQueue: maxBatch must be an integer in [1, 1024]").ThrowAsJavaScriptException();
        return;
      }
      maxBatch_ = uint32_t(d);
    }
    Napi::Value cb = o.Get("onDecisions");
    if (!cb.IsFunction()) {
      Napi::TypeError::New(env, "NfQueue: onDecisions must be a function").ThrowAsJavaScriptException();
      return;
    }
    post_ = new nf::RecordPost(env, cb.As<Napi::Function>(), "weir-nfqueue", kDecisionBytes, kPostLimit);
    post_->Unref(env);
  }

  ~NfQueue() override { Stop(); }

 private:
  Napi::Value SetEvaluator(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    std::shared_ptr<const void> image = info.Length() >= 1 ? RuleEvaluatorImage(env, info[0]) : nullptr;
    if (!image) {
      Napi::TypeError::New(env, "NfQueue.setEvaluator: not a live RuleEvaluator").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    uint32_t generation = info.Length() >= 2 && info[1].IsNumber() ? info[1].As<Napi::Number>().Uint32Value() : 0;
    std::lock_guard<std::mutex> lock(imageMu_);
    image_ = std::move(image);
    generation_ = generation;
    return env.Undefined();
  }

  // Sends one config message and waits for its acknowledgement; errno on failure.
  int Configure(nlmsghdr* nlh) {
    nlh->nlmsg_flags |= NLM_F_ACK;
    nlh->nlmsg_seq = ++seq_;
    if (mnl_socket_sendto(nl_, nlh, nlh->nlmsg_len) < 0) return errno;
    char buf[MNL_SOCKET_BUFFER_SIZE];
    for (int tries = 0; tries < 16; tries++) {
      ssize_t n = mnl_socket_recvfrom(nl_, buf, sizeof buf);
      if (n < 0) return errno;
      int r = mnl_cb_run(buf, size_t(n), seq_, mnl_socket_get_portid(nl_), nullptr, nullptr);
      if (r < 0) return errno;
      if (r == MNL_CB_STOP || r == MNL_CB_OK) return 0;
    }
    return ETIMEDOUT;
  }

  Napi::Value Start(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (post_ == nullptr || closed_) {
      Napi::Error::New(env, "NfQueue: closed").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    if (thread_.joinable()) return env.Undefined();
    {
      std::lock_guard<std::mutex> lock(imageMu_);
      if (!image_) {
        Napi::Error::New(env, "NfQueue.start: setEvaluator first").ThrowAsJavaScriptException();
        return env.Undefined();
      }
    }
    std::string err = Open();
    if (!err.empty()) {
      CloseSocket();
      Napi::Error::New(env, "NfQueue " + std::to_string(queue_) + ": " + err).ThrowAsJavaScriptException();
      return env.Undefined();
    }
    thread_ = std::thread([this] { Loop(); });
    return env.Undefined();
  }

  std::string Open() {
    nl_ = mnl_socket_open(NETLINK_NETFILTER);
    if (nl_ == nullptr) return Errno("netlink socket", errno);
    if (mnl_socket_bind(nl_, 0, MNL_SOCKET_AUTOPID) < 0) return Errno("netlink bind", errno);
    int fd = mnl_socket_get_fd(nl_);
    int size = 8 << 20;
    if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof size) < 0)
      setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
    int one = 1;
    // Verdicts need no acknowledgement; an overrun is counted, not fatal.
    setsockopt(fd, SOL_NETLINK, NETLINK_NO_ENOBUFS, &one, sizeof one);
    char buf[MNL_SOCKET_BUFFER_SIZE];
    nlmsghdr* nlh = nfq_nlmsg_put(buf, NFQNL_MSG_CONFIG, queue_);
    nfq_nlmsg_cfg_put_cmd(nlh, AF_INET, NFQNL_CFG_CMD_BIND);
    if (int e = Configure(nlh)) return Errno("bind the queue", e);
    nlh = nfq_nlmsg_put(buf, NFQNL_MSG_CONFIG, queue_);
    nfq_nlmsg_cfg_put_params(nlh, NFQNL_COPY_PACKET, int(kCopyRange));
    nfq_nlmsg_cfg_put_qmaxlen(nlh, kQueueMaxLen);
    // Fail open on a full queue only in fail-open mode; closed drops what it cannot decide.
    uint32_t flags = failOpen_ ? NFQA_CFG_F_FAIL_OPEN : 0;
    mnl_attr_put_u32(nlh, NFQA_CFG_FLAGS, htonl(flags));
    mnl_attr_put_u32(nlh, NFQA_CFG_MASK, htonl(NFQA_CFG_F_FAIL_OPEN));
    if (int e = Configure(nlh)) return Errno("configure the queue", e);
    stopFd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (stopFd_ < 0) return Errno("eventfd", errno);
    return "";
  }

  void CloseSocket() {
    if (nl_ != nullptr) mnl_socket_close(nl_);
    nl_ = nullptr;
    if (stopFd_ >= 0) close(stopFd_);
    stopFd_ = -1;
  }

  struct Pending {
    uint32_t id;
    bool parsed;
    Tuple tuple;
  };

  void Loop() {
    const int fd = mnl_socket_get_fd(nl_);
    const uint32_t cap = maxBatch_;
    std::vector<uint8_t> bufs(size_t(cap) * kRecvBufferBytes);
    std::vector<iovec> iov(cap);
    std::vector<mmsghdr> msgs(cap);
    // A message may carry more than one packet only in theory; room for 4 per buffer.
    const size_t maxPackets = size_t(cap) * 4;
    std::vector<Pending> pend(maxPackets);
    std::vector<uint8_t> records(maxPackets * nf::kRecordBytes);
    std::vector<int32_t> out(maxPackets * 3);
    std::vector<uint8_t> verdicts(maxPackets * 64);
    std::vector<uint8_t> decision(kDecisionBytes);
    for (uint32_t i = 0; i < cap; i++) {
      iov[i].iov_base = bufs.data() + size_t(i) * kRecvBufferBytes;
      iov[i].iov_len = kRecvBufferBytes;
    }
    while (!stop_.load(std::memory_order_acquire)) {
      pollfd fds[2] = {{fd, POLLIN, 0}, {stopFd_, POLLIN, 0}};
      post_->FlushIfDue(nf::MonotonicNs(), kPostDelayNs, kPostBatch);
      int r = poll(fds, 2, post_->TimeoutMs(nf::MonotonicNs(), kPostDelayNs, 1000));
      if (r < 0) {
        if (errno != EINTR) recvErrors_++;
        continue;
      }
      if (fds[1].revents != 0) break;
      if ((fds[0].revents & POLLIN) == 0) continue;
      for (uint32_t i = 0; i < cap; i++) {
        std::memset(&msgs[i], 0, sizeof msgs[i]);
        msgs[i].msg_hdr.msg_iov = &iov[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
      }
      int n = recvmmsg(fd, msgs.data(), cap, MSG_DONTWAIT, nullptr);
      if (n <= 0) {
        if (n < 0 && errno == ENOBUFS) enobufs_++;
        else if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) recvErrors_++;
        continue;
      }
      const uint64_t t0 = NowNs();
      size_t count = 0;
      for (int m = 0; m < n; m++) {
        const nlmsghdr* nlh = reinterpret_cast<const nlmsghdr*>(iov[m].iov_base);
        int len = int(msgs[m].msg_len);
        for (; mnl_nlmsg_ok(nlh, len) && count < maxPackets; nlh = mnl_nlmsg_next(nlh, &len)) {
          if (NFNL_MSG_TYPE(nlh->nlmsg_type) != NFQNL_MSG_PACKET || (nlh->nlmsg_type >> 8) != NFNL_SUBSYS_QUEUE) continue;
          nlattr* attr[NFQA_MAX + 1] = {};
          if (nfq_nlmsg_parse(nlh, attr) < 0 || attr[NFQA_PACKET_HDR] == nullptr) {
            malformed_++;
            continue;
          }
          const nfqnl_msg_packet_hdr* ph = static_cast<const nfqnl_msg_packet_hdr*>(mnl_attr_get_payload(attr[NFQA_PACKET_HDR]));
          Pending& p = pend[count];
          p.id = ntohl(ph->packet_id);
          p.parsed = false;
          if (attr[NFQA_PAYLOAD] != nullptr) {
            const uint8_t* data = static_cast<const uint8_t*>(mnl_attr_get_payload(attr[NFQA_PAYLOAD]));
            p.parsed = nf::ParsePacket(data, mnl_attr_get_payload_len(attr[NFQA_PAYLOAD]), &p.tuple);
          }
          if (p.parsed) {
            nf::WritePolicyRecord(p.tuple, records.data() + count * nf::kRecordBytes);
          } else {
            std::memset(records.data() + count * nf::kRecordBytes, 0, nf::kRecordBytes);  // family 0: INVALID
            std::memset(&p.tuple, 0, sizeof p.tuple);
          }
          count++;
        }
      }
      if (count == 0) continue;
      std::shared_ptr<const void> image;
      uint32_t generation;
      {
        std::lock_guard<std::mutex> lock(imageMu_);
        image = image_;
        generation = generation_;
      }
      EvaluateRecords(image.get(), records.data(), uint32_t(count), out.data());
      size_t off = 0;
      uint32_t allowedHere = 0;
      for (size_t i = 0; i < count; i++) {
        const int32_t eg = out[i * 3], in = out[i * 3 + 1], flags = out[i * 3 + 2];
        const bool ok = pend[i].parsed && (flags & nf::kFlagAllowed) != 0;
        nlmsghdr* nlh = nfq_nlmsg_put(reinterpret_cast<char*>(verdicts.data() + off), NFQNL_MSG_VERDICT, queue_);
        nfq_nlmsg_verdict_put(nlh, int(pend[i].id), ok ? NF_ACCEPT : NF_DROP);
        if (ok) nfq_nlmsg_verdict_put_mark(nlh, nf::MarkOf(eg, in));
        off += MNL_ALIGN(nlh->nlmsg_len);
        allowedHere += ok;
      }
      // Decided: every verdict is built. The send that follows also runs the
      // kernel's reinjection of each accepted packet (the rest of its forwarding).
      const uint64_t tDecided = NowNs();
      ssize_t sent = send(fd, verdicts.data(), off, 0);
      const uint64_t t1 = NowNs();
      if (sent < 0) sendErrors_++;
      batches_++;
      received_ += count;
      allowed_ += allowedHere;
      denied_ += count - allowedHere;
      const uint64_t lat = t1 - t0;
      {
        std::lock_guard<std::mutex> lock(histMu_);
        sent_.Add(lat, count);
        decided_.Add(tDecided - t0, count);
      }
      for (size_t i = 0; i < count; i++) {
        const Pending& p = pend[i];
        const int32_t eg = out[i * 3], in = out[i * 3 + 1], flags = out[i * 3 + 2];
        uint8_t* d = decision.data();
        std::memset(d, 0, kDecisionBytes);
        std::memcpy(d, p.tuple.src, 16);
        std::memcpy(d + 16, p.tuple.dst, 16);
        d[32] = p.tuple.family;
        d[33] = p.tuple.protocol;
        const bool ok = p.parsed && (flags & nf::kFlagAllowed) != 0;
        d[34] = !p.parsed ? 3 : ok ? 0 : eg == nf::kDeny ? 1 : 2;
        d[35] = (flags & nf::kFlagSelf) != 0 ? 1 : 0;
        PutLe16(d + 36, p.tuple.sport);
        PutLe16(d + 38, p.tuple.dport);
        PutLe32(d + 40, uint32_t(eg));
        PutLe32(d + 44, uint32_t(in));
        PutLe32(d + 48, ok ? nf::MarkOf(eg, in) : 0);
        PutLe32(d + 52, generation);
        PutLe32(d + 56, lat > 0xffffffffull ? 0xffffffffu : uint32_t(lat));
        post_->Append(d);
      }
      post_->FlushIfDue(nf::MonotonicNs(), kPostDelayNs, kPostBatch);
    }
  }

  Napi::Value Stats(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Object o = Napi::Object::New(env);
    o.Set("queue", double(queue_));
    o.Set("failOpen", failOpen_);
    o.Set("running", thread_.joinable() && !stop_.load());
    o.Set("received", double(received_.load()));
    o.Set("allowed", double(allowed_.load()));
    o.Set("denied", double(denied_.load()));
    o.Set("malformed", double(malformed_.load()));
    o.Set("batches", double(batches_.load()));
    o.Set("sendErrors", double(sendErrors_.load()));
    o.Set("recvErrors", double(recvErrors_.load()));
    o.Set("overruns", double(enobufs_.load()));
    o.Set("decisionsLost", post_ == nullptr ? 0.0 : double(post_->Lost()));
    std::lock_guard<std::mutex> lock(histMu_);
    o.Set("latency", sent_.ToObject(env));
    o.Set("decideLatency", decided_.ToObject(env));
    return o;
  }

  Napi::Value ResetLatency(const Napi::CallbackInfo& info) {
    std::lock_guard<std::mutex> lock(histMu_);
    sent_.Reset();
    decided_.Reset();
    return info.Env().Undefined();
  }

  void Stop() {
    stop_.store(true, std::memory_order_release);
    if (stopFd_ >= 0) {
      uint64_t one = 1;
      ssize_t ignored = write(stopFd_, &one, sizeof one);
      (void)ignored;
    }
    if (thread_.joinable()) thread_.join();
    CloseSocket();
    if (post_ != nullptr) post_->Close();
    post_ = nullptr;
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    closed_ = true;
    Stop();
    return info.Env().Undefined();
  }

  uint16_t queue_ = 0;
  bool failOpen_ = true;
  bool closed_ = false;
  uint32_t maxBatch_ = 64;
  uint32_t seq_ = 0;
  mnl_socket* nl_ = nullptr;
  int stopFd_ = -1;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  nf::RecordPost* post_ = nullptr;
  std::mutex imageMu_;
  std::shared_ptr<const void> image_;
  uint32_t generation_ = 0;
  std::atomic<uint64_t> received_{0}, allowed_{0}, denied_{0}, malformed_{0}, batches_{0}, sendErrors_{0}, recvErrors_{0},
      enobufs_{0};
  mutable std::mutex histMu_;
  // Read → verdicts sent (what a packet waits in the agent, the send's kernel work included),
  // and read → verdicts decided (parse and evaluation only).
  Histogram sent_, decided_;
};

}  // namespace

Napi::Object InitNfQueue(Napi::Env env, Napi::Object exports) {
  exports.Set("NfQueue", NfQueue::Define(env));
  return exports;
}

}  // namespace weir
