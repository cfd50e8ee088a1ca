// Shared by the verdict loop and the conntrack mirror: the packet parser,
// policy records and batched posting to JavaScript (nfqueue_verdict.h).
#include <arpa/inet.h>
#include <time.h>

#include "nfqueue_verdict.h"

namespace weir {
namespace nf {

namespace {
inline uint16_t Be16(const uint8_t* p) { return uint16_t((p[0] << 8) | p[1]); }

// Ports (or ICMP id/type) of the transport header at p (n bytes left).
bool ParseTransport(uint8_t protocol, const uint8_t* p, size_t n, Tuple* t) {
  switch (protocol) {
    case 6:    // TCP
    case 17:   // UDP
    case 132:  // SCTP
    case 136:  // UDP-Lite
      if (n < 4) return false;
      t->sport = Be16(p);
      t->dport = Be16(p + 2);
      return true;
    case 1:   // ICMP
    case 58:  // ICMPv6
      if (n < 8) return false;
      t->sport = Be16(p + 4);
      t->dport = p[0];
      return true;
    default:
      t->sport = 0;
      t->dport = 0;
      return true;
  }
}
}  // namespace

bool ParsePacket(const uint8_t* p, size_t n, Tuple* t) {
  std::memset(t, 0, sizeof *t);
  if (n < 1) return false;
  const uint8_t version = p[0] >> 4;
  if (version == 4) {
    if (n < 20) return false;
    const size_t ihl = size_t(p[0] & 0x0f) * 4;
    const size_t total = Be16(p + 2);
    if (ihl < 20 || ihl > n || total < ihl) return false;
    t->family = 4;
    t->protocol = p[9];
    std::memcpy(t->src, p + 12, 4);
    std::memcpy(t->dst, p + 16, 4);
    // Conntrack reassembles before the filter hooks: a later fragment here is unexpected, and has no ports.
    if ((Be16(p + 6) & 0x1fff) != 0) return false;
    return ParseTransport(t->protocol, p + ihl, n - ihl, t);
  }
  if (version == 6) {
    if (n < 40) return false;
    t->family = 6;
    std::memcpy(t->src, p + 8, 16);
    std::memcpy(t->dst, p + 24, 16);
    uint8_t next = p[6];
    size_t at = 40;
    for (int hops = 0; hops < 8; hops++) {
      if (next == 0 || next == 43 || next == 60) {  // hop-by-hop, routing, destination options
        if (n < at + 8) return false;
        next = p[at];
        at += (size_t(p[at + 1]) + 1) * 8;
      } else if (next == 44) {  // fragment
        if (n < at + 8) return false;
        if ((Be16(p + at + 2) & 0xfff8) != 0) return false;
        next = p[at];
        at += 8;
      } else if (next == 51) {  // AH
        if (n < at + 8) return false;
        next = p[at];
        at += (size_t(p[at + 1]) + 2) * 4;
      } else {
        break;
      }
      if (at > n) return false;
    }
    t->protocol = next;
    return ParseTransport(next, p + at, n - at, t);
  }
  return false;
}

void WritePolicyRecord(const Tuple& t, uint8_t* rec) {
  std::memset(rec, 0, kRecordBytes);
  std::memcpy(rec, t.src, t.family == 4 ? 4 : 16);
  std::memcpy(rec + 16, t.dst, t.family == 4 ? 4 : 16);
  rec[32] = t.family;
  rec[33] = t.family;
  rec[34] = t.protocol;
  const bool ports = t.protocol == 6 || t.protocol == 17 || t.protocol == 132 || t.protocol == 136;
  const uint16_t port = ports ? t.dport : 0;
  rec[36] = uint8_t(port & 0xff);
  rec[37] = uint8_t(port >> 8);
}

RecordPost::RecordPost(Napi::Env env, Napi::Function callback, const char* name, size_t recordBytes, size_t limitRecords)
    : recordBytes_(recordBytes), limitBytes_(recordBytes * limitRecords) {
  // The thread-safe function owns this object: its finalizer, which runs
  // after every queued delivery, deletes it (see Close).
  tsfn_ = Napi::ThreadSafeFunction::New(env, callback, name, 0, 1, [](Napi::Env, RecordPost* self) { delete self; }, this);
}

RecordPost::~RecordPost() = default;

uint64_t MonotonicNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return uint64_t(ts.tv_sec) * 1000000000ull + uint64_t(ts.tv_nsec);
}

bool RecordPost::Append(const uint8_t* record) {
  std::lock_guard<std::mutex> lock(mu_);
  if (closed_ || pending_.size() + recordBytes_ > limitBytes_) {
    lost_.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
  if (pending_.empty()) firstPendingNs_ = MonotonicNs();
  pending_.insert(pending_.end(), record, record + recordBytes_);
  return true;
}

void RecordPost::Flush() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (closed_ || scheduled_ || pending_.empty()) return;
    scheduled_ = true;
  }
  napi_status s = tsfn_.NonBlockingCall(this, [](Napi::Env env, Napi::Function cb, RecordPost* self) { Deliver(env, cb, self); });
  if (s != napi_ok) {
    std::lock_guard<std::mutex> lock(mu_);
    scheduled_ = false;
  }
}

void RecordPost::FlushIfDue(uint64_t nowNs, uint64_t delayNs, size_t maxRecords) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (pending_.empty() || scheduled_) return;
    if (pending_.size() < maxRecords * recordBytes_ && nowNs - firstPendingNs_ < delayNs) return;
  }
  Flush();
}

int RecordPost::TimeoutMs(uint64_t nowNs, uint64_t delayNs, int idleMs) {
  std::lock_guard<std::mutex> lock(mu_);
  if (pending_.empty()) return idleMs;
  // A delivery in flight takes what waits when it runs; look again soon for what comes after.
  if (scheduled_) return int((delayNs + 999999) / 1000000);
  uint64_t due = firstPendingNs_ + delayNs;
  if (due <= nowNs) return 0;
  return int((due - nowNs + 999999) / 1000000);
}

void RecordPost::Deliver(Napi::Env env, Napi::Function cb, RecordPost* self) {
  std::vector<uint8_t> batch;
  {
    std::lock_guard<std::mutex> lock(self->mu_);
    self->scheduled_ = false;
    if (self->closed_) return;
    batch.swap(self->pending_);
  }
  if (batch.empty() || env == nullptr) return;
  self->posted_.fetch_add(batch.size() / self->recordBytes_, std::memory_order_relaxed);
  Napi::Uint8Array bytes = Napi::Uint8Array::New(env, batch.size());
  std::memcpy(bytes.Data(), batch.data(), batch.size());
  cb.Call({bytes});
}

void RecordPost::Close() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (closed_) return;
    closed_ = true;
    pending_.clear();
  }
  tsfn_.Release();
}

}  // namespace nf
}  // namespace weir
