// What the NFQUEUE verdict loop (nfqueue.cc) and the conntrack mirror
// (conntrack.cc) share: the conntrack mark that carries a verdict's rule ids,
// the first-packet parser, the policy record of a 5-tuple, and the posting of
// fixed-size records to JavaScript in batches.
//
// THE MARK (packet mark on the verdict, copied to the conntrack mark by the
// `stamp` chain of the weir table; the contract of kernel-ruleset.ts):
//
//   bits 31..30  0b10: decided (allowed) by Weir. 0b01 on a packet: "queue
//                me" (set by the weir table's pod chain, matched by the
//                xtables NFQUEUE rule). Anything else: not Weir's.
//   bits 29..15  egress gate code, bits 14..0 ingress gate code, each:
//                0 not checked (not a local endpoint on that side, or self),
//                1 .. 0x7ffb rule id = RuleCatalog index + 1 of the tables in
//                force (MarkGeneration says which), 0x7ffc ALLOW_NODE,
//                0x7ffd ALLOW_DEFAULT, 0x7fff a rule whose index does not fit
//                (read the agent's flows for it).
#pragma once

#include <napi.h>

#include <atomic>
#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>
#include <vector>

namespace weir {

std::shared_ptr<const void> RuleEvaluatorImage(napi_env env, napi_value value);
uint32_t EvaluateRecords(const void* image, const uint8_t* records, uint32_t count, int32_t* out);

namespace nf {

constexpr uint32_t kMarkTagMask = 0xc0000000u;
constexpr uint32_t kMarkDecided = 0x80000000u;
constexpr uint32_t kMarkQueue = 0x40000000u;
constexpr uint32_t kGateNone = 0;
constexpr uint32_t kGateNode = 0x7ffc;
constexpr uint32_t kGateDefault = 0x7ffd;
constexpr uint32_t kGateOverflow = 0x7fff;
constexpr uint32_t kGateMaxRule = 0x7ffb;

// Policy record / result codes (vrouter-agent/compile/policy-record.ts).
constexpr int32_t kAllowDefault = -1;
constexpr int32_t kDeny = -2;
constexpr int32_t kNotLocal = -3;
constexpr int32_t kAllowNode = -5;
constexpr int32_t kFlagAllowed = 1;
constexpr int32_t kFlagSelf = 2;
constexpr uint32_t kRecordBytes = 40;

inline uint32_t GateCode(int32_t code) {
  if (code >= 0) return uint32_t(code) + 1 <= kGateMaxRule ? uint32_t(code) + 1 : kGateOverflow;
  if (code == kAllowDefault) return kGateDefault;
  if (code == kAllowNode) return kGateNode;
  return kGateNone;
}

inline uint32_t MarkOf(int32_t egress, int32_t ingress) {
  return kMarkDecided | (GateCode(egress) << 15) | GateCode(ingress);
}

// A packet's flow key as policy and the flow table see it. Addresses in
// network byte order (IPv4 in bytes 0..3); ports in host order; for ICMP,
// sport is the echo identifier and dport the type.
struct Tuple {
  uint8_t src[16];
  uint8_t dst[16];
  uint8_t family;  // 4 or 6
  uint8_t protocol;
  uint16_t sport;
  uint16_t dport;
};

// Parses an IP packet (from its IP header) into t; false when it is too
// short or inconsistent. IPv6 extension headers are walked (at most 8).
bool ParsePacket(const uint8_t* p, size_t n, Tuple* t);

// CLOCK_MONOTONIC in nanoseconds.
uint64_t MonotonicNs();

// The 40-byte policy record of t (the port is the destination port, 0 for
// protocols without ports, ICMP included).
void WritePolicyRecord(const Tuple& t, uint8_t* rec);

// Records of a fixed size, appended by a native thread and delivered to a
// JavaScript callback in batches (one Uint8Array per call), at most `limit`
// bytes waiting: beyond that records are counted as lost, never blocking
// the thread that appends.
class RecordPost {
 public:
  RecordPost(Napi::Env env, Napi::Function callback, const char* name, size_t recordBytes, size_t limitRecords);
  ~RecordPost();
  // Any thread. False (and counted lost) when the backlog is full.
  bool Append(const uint8_t* record);
  // Wakes JavaScript if records wait; call after a burst of Append.
  void Flush();
  // Flushes when records have waited `delayNs` since the first of them, or
  // `maxRecords` wait: JavaScript wakes once per batch, not once per event.
  void FlushIfDue(uint64_t nowNs, uint64_t delayNs, size_t maxRecords);
  // The poll timeout (ms) until the waiting records are due; `idleMs` when none wait.
  int TimeoutMs(uint64_t nowNs, uint64_t delayNs, int idleMs);
  // Main thread: stop delivering and release the thread-safe function,
  // whose finalizer deletes this object: no use afterwards. Never delete it.
  void Close();
  uint64_t Lost() const { return lost_.load(std::memory_order_relaxed); }
  uint64_t Posted() const { return posted_.load(std::memory_order_relaxed); }
  void Ref(Napi::Env env) { tsfn_.Ref(env); }
  void Unref(Napi::Env env) { tsfn_.Unref(env); }

 private:
  static void Deliver(Napi::Env env, Napi::Function cb, RecordPost* self);
  Napi::ThreadSafeFunction tsfn_;
  std::mutex mu_;
  std::vector<uint8_t> pending_;
  bool scheduled_ = false;
  bool closed_ = false;
  uint64_t firstPendingNs_ = 0;
  const size_t recordBytes_;
  const size_t limitBytes_;
  std::atomic<uint64_t> lost_{0};
  std::atomic<uint64_t> posted_{0};
};

}  // namespace nf
}  // namespace weir
