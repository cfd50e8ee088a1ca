// The vRouter flow table, native: see vrouter-agent/flows/flow-table.ts for
// the contract (zones, pairing, verdicts, TCP state, aging, limits, eviction)
// and vrouter-agent/flows/typescript-flow-table.ts for the same semantics in
// TypeScript. The two are tested against each other on random operation
// sequences, so any change here is a change there.
//
// Layout:
//
//   flows_  Flow[max_flows]   one 112-byte record per connection (forward +
//                             reverse), index stable for the flow's lifetime;
//                             free records form a LIFO list through `zone`.
//   slots_  Slot[n_slots]     open addressing, linear probing, one 8-byte slot
//                             per flow: {tag, record index + 1}; n_slots =
//                             max_flows * 4/3, so load <= 0.75. Deletion
//                             shifts back (no tombstones).
//
// The hash is symmetric: it ignores the zone and sums the hashes of the two
// (address, port) endpoints, so a packet and its reply land on the same slot
// chain and one slot serves both directions. The home slot comes from the
// stored 32-bit tag (fastrange), so deletion can re-home entries without the
// key. Both regions are anonymous mmaps (zero pages, faulted in on first use,
// transparent huge pages requested): about 112 + 10.7 bytes per flow of
// capacity, with no allocation per flow.
//
// The packed formats (packet records, results, entry and stats words, option
// words, removal words) are defined in vrouter-agent/flows/packed.ts; kAbi
// changes with them.
//
// The removal report (off unless the owner turns it on): Remove copies the
// record's entry words and the cause into removed_ before freeing it, at most
// max_flows_ of them, until takeRemoved hands them over.
#include <napi.h>

#include <sys/mman.h>

#include <cstdint>
#include <cstring>
#include <unordered_map>
#include <vector>

namespace weir {
namespace {

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the packed records are little-endian: port the loads before building on a big-endian host"
#endif

constexpr uint32_t kAbi = 2;
constexpr size_t kPacketBytes = 48;
constexpr size_t kEntryWords = 28;
constexpr size_t kStatsWords = 19;
constexpr size_t kOptionWords = 14;
constexpr size_t kRemovedWords = kEntryWords + 1;  // entry words, then the cause
constexpr uint32_t kNone = 0xffffffffu;
constexpr uint32_t kMaxFlowsLimit = 1u << 27;  // results encode index * 8 in an int32

enum : uint8_t { kAllow = 0, kDeny = 1, kHold = 2 };
// Drop reasons (codes shared with packed.ts); the refusal reasons are a subset.
enum : uint8_t { kReasonNone = 0, kFlowLimit = 3, kTableFull = 4, kHoldLimit = 5, kReasonCount = 7 };
enum Cause { kAged, kClosed, kEvicted, kDeleted };  // REMOVAL_CAUSES order in flow-table.ts
enum : int { kCreated = 0, kExists = 1, kRefused = 2 };

// TCP header flags as carried in packet records.
constexpr uint8_t kFin = 0x01, kSyn = 0x02, kRst = 0x04, kAck = 0x10;
// TCP state bits of a flow.
constexpr uint16_t kSynFwd = 0x001, kSynRev = 0x002, kAckFwd = 0x004, kAckRev = 0x008, kEstablished = 0x010,
                   kFinFwd = 0x020, kFinRev = 0x040, kRstSeen = 0x080, kClosedState = 0x100;

constexpr uint8_t kTcp = 6, kUdp = 17, kIcmp = 1, kIcmp6 = 58;

inline bool PortsFixed(uint8_t proto) { return proto == kIcmp || proto == kIcmp6; }

// A packet record as the caller packs it (little-endian fields, addresses in
// network order; IPv4 in the first 4 bytes of the 16).
struct PacketKey {
  uint32_t zone;
  uint16_t sport;
  uint16_t dport;
  uint8_t proto;
  uint8_t family;
  uint8_t tcp_flags;
  uint8_t reserved;
  uint32_t bytes;
  uint64_t src[2];
  uint64_t dst[2];
};
static_assert(sizeof(PacketKey) == kPacketBytes, "packet record is 48 bytes");

inline void LoadPacket(const uint8_t* p, PacketKey* k) {
  std::memcpy(k, p, kPacketBytes);
  if (k->family == 4) {
    // Only the first 4 bytes of an IPv4 address are meaningful.
    k->src[0] &= 0xffffffffull;
    k->src[1] = 0;
    k->dst[0] &= 0xffffffffull;
    k->dst[1] = 0;
  }
}

// One connection. `family` 0 marks a free record, whose `zone` links the free list.
struct Flow {
  uint64_t bytes[2];  // forward, reverse
  double first_seen_ms;
  double last_seen_ms;
  uint64_t src[2];  // forward key
  uint64_t dst[2];
  uint32_t zone;        // forward packets are looked up here
  uint32_t reply_zone;  // reverse packets here
  uint16_t sport;
  uint16_t dport;
  uint8_t proto;
  uint8_t family;
  uint8_t action;
  uint8_t drop_reason;
  uint32_t packets_lo[2];  // packets: 48-bit counters, wrapping
  uint16_t packets_hi[2];
  uint16_t tcp;
  uint16_t reserved;
  uint32_t ids[4];  // egress policy, egress rule, ingress policy, ingress rule
};
static_assert(sizeof(Flow) == 112, "a flow record is 112 bytes");

struct Slot {
  uint32_t tag;
  uint32_t ref;  // record index + 1; 0: empty
};

inline uint64_t Fmix(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdull;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ull;
  x ^= x >> 33;
  return x;
}

inline uint64_t EndpointHash(const uint64_t ip[2], uint64_t port) {
  return Fmix(ip[0] ^ (ip[1] * 0x9e3779b97f4a7c15ull) ^ (port * 0xc2b2ae3d27d4eb4full));
}

// Symmetric in (src, sport) <-> (dst, dport); for ICMP the ports are not
// swapped on replies, so they are hashed as one value.
inline uint32_t PairTag(const uint64_t src[2], const uint64_t dst[2], uint16_t sport, uint16_t dport, uint8_t proto,
                        uint8_t family) {
  uint64_t sum;
  if (PortsFixed(proto)) {
    sum = EndpointHash(src, 0) + EndpointHash(dst, 0) + Fmix((uint64_t(sport) << 16 | dport) + 0x51ed27ull);
  } else {
    sum = EndpointHash(src, sport) + EndpointHash(dst, dport);
  }
  return uint32_t(Fmix(sum + (uint64_t(proto) << 8 | family) * 0x165667b19e3779f9ull) >> 32);
}

inline uint64_t Packets(const Flow& f, int d) { return uint64_t(f.packets_hi[d]) << 32 | f.packets_lo[d]; }

inline void AddPacket(Flow& f, int d) {
  if (++f.packets_lo[d] == 0) ++f.packets_hi[d];
}

inline void Prefetch(const void* p) { __builtin_prefetch(p, 0, 3); }

struct Counters {
  double peak = 0, inserted = 0, removed = 0, aged = 0, closed = 0, evicted = 0, deleted = 0;
  double refused_flow_limit = 0, refused_table_full = 0, refused_hold_limit = 0;
  double holds_created = 0, holds_resolved = 0, lookups = 0, hits = 0;
};

void* MapZeroed(size_t bytes) {
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) return nullptr;
#ifdef MADV_HUGEPAGE
  madvise(p, bytes, MADV_HUGEPAGE);
#endif
  return p;
}

class Table {
 public:
  Table() = default;
  Table(const Table&) = delete;
  Table& operator=(const Table&) = delete;
  ~Table() { Release(); }

  // Returns an error message, or nullptr. Options are validated by the caller
  // (flow-table.ts); this only refuses what would break the layout.
  const char* Init(const double* o) {
    for (size_t i = 0; i < kOptionWords; i++) {
      if (!(o[i] >= 0) || o[i] > 1e15) return "flow table options must be finite and non-negative";
    }
    if (o[0] < 1 || o[0] > kMaxFlowsLimit) return "maxFlows must be between 1 and 2^27";
    max_flows_ = uint32_t(o[0]);
    max_per_zone_ = o[1] > kMaxFlowsLimit ? kMaxFlowsLimit : uint32_t(o[1]);
    max_holds_ = o[2] > kMaxFlowsLimit ? kMaxFlowsLimit : uint32_t(o[2]);
    evict_scan_ = o[3] > kMaxFlowsLimit ? kMaxFlowsLimit : uint32_t(o[3]);
    // Seconds to milliseconds exactly as the TypeScript table does (sec * 1000).
    syn_ms_ = o[4] * 1000;
    established_ms_ = o[5] * 1000;
    closing_ms_ = o[6] * 1000;
    closed_ms_ = o[7] * 1000;
    udp_ms_ = o[8] * 1000;
    udp_stream_ms_ = o[9] * 1000;
    icmp_ms_ = o[10] * 1000;
    other_ms_ = o[11] * 1000;
    denied_ms_ = o[12] * 1000;
    hold_ms_ = o[13] * 1000;
    n_slots_ = max_flows_ + (max_flows_ + 2) / 3;
    if (n_slots_ < 8) n_slots_ = 8;
    flows_bytes_ = size_t(max_flows_) * sizeof(Flow);
    slots_bytes_ = size_t(n_slots_) * sizeof(Slot);
    flows_ = static_cast<Flow*>(MapZeroed(flows_bytes_));
    slots_ = static_cast<Slot*>(MapZeroed(slots_bytes_));
    if (flows_ == nullptr || slots_ == nullptr) {
      Release();
      return "cannot map memory for the flow table";
    }
    return nullptr;
  }

  void Release() {
    if (flows_ != nullptr) munmap(flows_, flows_bytes_);
    if (slots_ != nullptr) munmap(slots_, slots_bytes_);
    flows_ = nullptr;
    slots_ = nullptr;
  }

  bool closed() const { return flows_ == nullptr; }
  size_t bytes_allocated() const { return flows_bytes_ + slots_bytes_; }

  // ---- lookup --------------------------------------------------------------

  // 0 forward, 1 reverse, -1 no match. A packet equal to both keys (a flow
  // from an address and port to themselves) is forward.
  static int Match(const Flow& f, const PacketKey& k) {
    if (f.proto != k.proto || f.family != k.family) return -1;
    if (k.zone == f.zone && k.src[0] == f.src[0] && k.src[1] == f.src[1] && k.dst[0] == f.dst[0] &&
        k.dst[1] == f.dst[1] && k.sport == f.sport && k.dport == f.dport) {
      return 0;
    }
    if (k.zone == f.reply_zone && k.src[0] == f.dst[0] && k.src[1] == f.dst[1] && k.dst[0] == f.src[0] &&
        k.dst[1] == f.src[1]) {
      if (PortsFixed(k.proto) ? (k.sport == f.sport && k.dport == f.dport) : (k.sport == f.dport && k.dport == f.sport)) {
        return 1;
      }
    }
    return -1;
  }

  uint32_t Home(uint32_t tag) const { return uint32_t((uint64_t(tag) * n_slots_) >> 32); }
  uint32_t Next(uint32_t i) const { return i + 1 == n_slots_ ? 0 : i + 1; }

  static uint32_t TagOf(const PacketKey& k) { return PairTag(k.src, k.dst, k.sport, k.dport, k.proto, k.family); }
  static uint32_t TagOf(const Flow& f) { return PairTag(f.src, f.dst, f.sport, f.dport, f.proto, f.family); }

  // Record index or kNone; *dir the packet's direction.
  uint32_t Find(const PacketKey& k, uint32_t tag, uint32_t from, int* dir) const {
    for (uint32_t i = from;; i = Next(i)) {
      const Slot s = slots_[i];
      if (s.ref == 0) return kNone;
      if (s.tag == tag) {
        const int d = Match(flows_[s.ref - 1], k);
        if (d >= 0) {
          *dir = d;
          return s.ref - 1;
        }
      }
    }
  }

  uint32_t Find(const PacketKey& k, int* dir) const {
    if (k.family != 4 && k.family != 6) return kNone;
    const uint32_t tag = TagOf(k);
    return Find(k, tag, Home(tag), dir);
  }

  static int32_t Result(uint32_t index, uint8_t action, int dir) { return int32_t(index * 8 + action * 2 + dir); }

  // The batch paths look G packets up at once: hash all and prefetch their
  // home slots, then find each first tag match and prefetch its record, then
  // compare. Misses to DRAM overlap instead of queueing one after another.
  // Anything unusual (a second tag match, a record removed by an earlier
  // packet of the same group) falls back to the plain Find.
  static constexpr uint32_t kGroup = 64;

  struct Pending {
    PacketKey key;
    uint32_t tag;
    uint32_t slot;
    uint32_t candidate;  // record index, or kNone for a miss
    bool valid;
  };

  void Stage(const uint8_t* packets, uint32_t base, uint32_t m, Pending* p) const {
    for (uint32_t j = 0; j < m; j++) {
      LoadPacket(packets + size_t(base + j) * kPacketBytes, &p[j].key);
      p[j].valid = p[j].key.family == 4 || p[j].key.family == 6;
      if (!p[j].valid) continue;
      p[j].tag = TagOf(p[j].key);
      p[j].slot = Home(p[j].tag);
      Prefetch(&slots_[p[j].slot]);
    }
    for (uint32_t j = 0; j < m; j++) {
      p[j].candidate = kNone;
      if (!p[j].valid) continue;
      for (uint32_t i = p[j].slot;; i = Next(i)) {
        const Slot s = slots_[i];
        if (s.ref == 0) break;
        if (s.tag == p[j].tag) {
          p[j].candidate = s.ref - 1;
          p[j].slot = i;
          const char* r = reinterpret_cast<const char*>(&flows_[s.ref - 1]);
          Prefetch(r + 32);
          Prefetch(r + 79);
          break;
        }
      }
    }
  }

  uint32_t Resolve(const Pending& p, int* dir) const {
    if (!p.valid || p.candidate == kNone) return kNone;
    const int d = Match(flows_[p.candidate], p.key);
    if (d >= 0) {
      *dir = d;
      return p.candidate;
    }
    // A second tag match, or slots shifted by a removal earlier in the batch.
    return Find(p.key, p.tag, Home(p.tag), dir);
  }

  uint32_t LookupBatch(const uint8_t* packets, uint32_t count, int32_t* out) {
    Pending p[kGroup];
    uint32_t hits = 0;
    for (uint32_t base = 0; base < count; base += kGroup) {
      const uint32_t m = count - base < kGroup ? count - base : kGroup;
      Stage(packets, base, m, p);
      for (uint32_t j = 0; j < m; j++) {
        int dir = 0;
        const uint32_t idx = Resolve(p[j], &dir);
        if (idx == kNone) {
          out[base + j] = -1;
        } else {
          out[base + j] = Result(idx, flows_[idx].action, dir);
          hits++;
        }
      }
    }
    counters_.lookups += count;
    counters_.hits += hits;
    return hits;
  }

  uint32_t AccountBatch(const uint8_t* packets, uint32_t count, double now, int32_t* out) {
    Pending p[kGroup];
    uint32_t hits = 0;
    for (uint32_t base = 0; base < count; base += kGroup) {
      const uint32_t m = count - base < kGroup ? count - base : kGroup;
      Stage(packets, base, m, p);
      for (uint32_t j = 0; j < m; j++) {
        int dir = 0;
        // A record removed by an earlier packet of the group is free (family
        // 0), matches nothing, and Resolve falls back to a fresh Find.
        const uint32_t idx = Resolve(p[j], &dir);
        const int32_t r = idx == kNone ? -1 : Account(idx, dir, p[j].key, now);
        out[base + j] = r;
        if (r >= 0) hits++;
      }
    }
    counters_.lookups += count;
    counters_.hits += hits;
    return hits;
  }

  // Counts one packet on a flow; returns the result word, or -1 when the
  // packet ends the flow instead (a new SYN on a closed TCP flow).
  int32_t Account(uint32_t idx, int dir, const PacketKey& k, double now) {
    Flow& f = flows_[idx];
    const bool tracked = f.proto == kTcp && f.action != kDeny;
    const uint8_t fl = k.tcp_flags;
    if (tracked && (f.tcp & kClosedState) && (fl & kSyn) && !(fl & kAck)) {
      Remove(idx, kClosed);
      return -1;
    }
    AddPacket(f, dir);
    f.bytes[dir] += k.bytes;
    if (now > f.last_seen_ms) f.last_seen_ms = now;
    const int32_t result = Result(idx, f.action, dir);
    if (tracked) {
      const uint16_t before = f.tcp;
      uint16_t s = before;
      if (fl & kSyn) s |= dir ? kSynRev : kSynFwd;
      if (fl & kAck) s |= dir ? kAckRev : kAckFwd;
      if (fl & kFin) s |= dir ? kFinRev : kFinFwd;
      if (fl & kRst) s |= kRstSeen | kClosedState;
      if ((s & (kAckFwd | kAckRev)) == (kAckFwd | kAckRev) && !(s & kRstSeen)) s |= kEstablished;
      if ((s & (kFinFwd | kFinRev)) == (kFinFwd | kFinRev)) s |= kClosedState;
      f.tcp = s;
      if ((s & kClosedState) && !(before & kClosedState) && closed_ms_ == 0) Remove(idx, kClosed);
    }
    return result;
  }

  // ---- aging and eviction --------------------------------------------------

  double IdleTimeoutMs(const Flow& f) const {
    if (f.action == kDeny) return denied_ms_;
    switch (f.proto) {
      case kTcp:
        if (f.tcp & kClosedState) return closed_ms_;
        if (f.tcp & (kFinFwd | kFinRev)) return closing_ms_;
        if (f.tcp & kEstablished) return established_ms_;
        return syn_ms_;
      case kUdp:
        return Packets(f, 1) > 0 ? udp_stream_ms_ : udp_ms_;
      case kIcmp:
      case kIcmp6:
        return icmp_ms_;
      default:
        return other_ms_;
    }
  }

  bool Expired(const Flow& f, double now) const {
    if (f.action == kHold) return now - f.first_seen_ms >= hold_ms_;
    return now - f.last_seen_ms >= IdleTimeoutMs(f);
  }

  static bool Established(const Flow& f) {
    if (f.action != kAllow) return false;
    if (f.proto == kTcp) return (f.tcp & kEstablished) != 0 && (f.tcp & kClosedState) == 0;
    return Packets(f, 1) > 0;
  }

  // Lower is evicted first; kNever is never evicted.
  static constexpr int kNever = 9;
  int EvictionRank(const Flow& f, double now) const {
    if (Expired(f, now)) return 0;
    if (f.action == kAllow && f.proto == kTcp && (f.tcp & kClosedState)) return 1;
    if (f.action == kDeny) return 2;
    if (f.action == kHold) return 3;
    if (!Established(f)) return 4;
    return kNever;
  }

  Cause ExpiryCause(const Flow& f) const {
    return f.proto == kTcp && (f.tcp & kClosedState) ? kClosed : kAged;
  }

  // Makes room for one flow in a full table: looks at up to evict_scan_
  // records from the clock hand and removes the lowest-ranked one.
  bool EvictOne(double now) {
    uint32_t best = kNone;
    int best_rank = kNever;
    uint32_t i = evict_hand_ >= high_water_ ? 0 : evict_hand_;
    const uint32_t steps = evict_scan_ < high_water_ ? evict_scan_ : high_water_;
    for (uint32_t n = 0; n < steps; n++) {
      const Flow& f = flows_[i];
      if (f.family != 0) {
        const int r = EvictionRank(f, now);
        if (r < best_rank) {
          best_rank = r;
          best = i;
          if (r == 0) {
            i = i + 1 >= high_water_ ? 0 : i + 1;
            break;
          }
        }
      }
      i = i + 1 >= high_water_ ? 0 : i + 1;
    }
    if (best == kNone) {
      evict_hand_ = i;
      return false;
    }
    evict_hand_ = best + 1 >= high_water_ ? 0 : best + 1;
    Remove(best, best_rank == 0 ? ExpiryCause(flows_[best]) : kEvicted);
    return true;
  }

  uint32_t Expire(double now, double max_scan) {
    if (high_water_ == 0) return 0;
    uint32_t steps = max_scan < high_water_ ? uint32_t(max_scan) : high_water_;
    uint32_t removed = 0;
    uint32_t i = age_cursor_ >= high_water_ ? 0 : age_cursor_;
    for (; steps > 0; steps--) {
      Flow& f = flows_[i];
      if (f.family != 0 && Expired(f, now)) {
        Remove(i, ExpiryCause(f));
        removed++;
      }
      i = i + 1 >= high_water_ ? 0 : i + 1;
    }
    age_cursor_ = i;
    return removed;
  }

  // ---- insert, resolve, remove ---------------------------------------------

  uint32_t& ZoneCount(uint32_t zone) { return zones_[zone]; }

  uint32_t ZoneFlows(uint32_t zone) const {
    const auto it = zones_.find(zone);
    return it == zones_.end() ? 0 : it->second;
  }

  static PacketKey Reverse(const PacketKey& k, uint32_t reply_zone) {
    PacketKey r = k;
    r.zone = reply_zone;
    std::memcpy(r.src, k.dst, sizeof r.src);
    std::memcpy(r.dst, k.src, sizeof r.dst);
    if (!PortsFixed(k.proto)) {
      r.sport = k.dport;
      r.dport = k.sport;
    }
    return r;
  }

  // Returns kCreated, kExists or kRefused; *a the index (or the refusal
  // reason), *b the direction for kExists.
  int Insert(const PacketKey& k, uint32_t reply_zone, uint8_t action, uint8_t drop_reason, const uint32_t ids[4],
             double now, int32_t* a, int32_t* b) {
    int dir = 0;
    uint32_t idx = Find(k, &dir);
    if (idx != kNone) {
      *a = int32_t(idx);
      *b = dir;
      return kExists;
    }
    idx = Find(Reverse(k, reply_zone), &dir);
    if (idx != kNone) {
      *a = int32_t(idx);
      *b = 1 - dir;
      return kExists;
    }
    uint8_t refusal = kReasonNone;
    if (action == kHold && holds_ >= max_holds_) {
      refusal = kHoldLimit;
    } else if (ZoneFlows(k.zone) >= max_per_zone_ || (reply_zone != k.zone && ZoneFlows(reply_zone) >= max_per_zone_)) {
      refusal = kFlowLimit;
    } else if (live_ >= max_flows_ && !EvictOne(now)) {
      refusal = kTableFull;
    }
    if (refusal != kReasonNone) {
      if (refusal == kHoldLimit) counters_.refused_hold_limit++;
      if (refusal == kFlowLimit) counters_.refused_flow_limit++;
      if (refusal == kTableFull) counters_.refused_table_full++;
      *a = refusal;
      *b = 0;
      return kRefused;
    }
    if (free_head_ != kNone) {
      idx = free_head_;
      free_head_ = flows_[idx].zone;
    } else {
      idx = high_water_++;
    }
    Flow& f = flows_[idx];
    std::memset(&f, 0, sizeof f);
    std::memcpy(f.src, k.src, sizeof f.src);
    std::memcpy(f.dst, k.dst, sizeof f.dst);
    f.zone = k.zone;
    f.reply_zone = reply_zone;
    f.sport = k.sport;
    f.dport = k.dport;
    f.proto = k.proto;
    f.family = k.family;
    f.action = action;
    f.drop_reason = drop_reason;
    std::memcpy(f.ids, ids, sizeof f.ids);
    f.first_seen_ms = now;
    f.last_seen_ms = now;
    const uint32_t tag = TagOf(f);
    uint32_t i = Home(tag);
    while (slots_[i].ref != 0) i = Next(i);
    slots_[i] = Slot{tag, idx + 1};
    ZoneCount(k.zone)++;
    if (reply_zone != k.zone) ZoneCount(reply_zone)++;
    live_++;
    if (live_ > counters_.peak) counters_.peak = live_;
    counters_.inserted++;
    if (action == kHold) {
      holds_++;
      counters_.holds_created++;
    }
    *a = int32_t(idx);
    *b = 0;
    return kCreated;
  }

  bool Live(double index) const { return index >= 0 && index < high_water_ && flows_[uint32_t(index)].family != 0; }

  bool SetVerdict(uint32_t idx, uint8_t action, uint8_t drop_reason, const uint32_t ids[4]) {
    Flow& f = flows_[idx];
    if (f.action == kHold) {
      holds_--;
      counters_.holds_resolved++;
    }
    f.action = action;
    f.drop_reason = drop_reason;
    std::memcpy(f.ids, ids, sizeof f.ids);
    return true;
  }

  void Remove(uint32_t idx, Cause cause) {
    Flow& f = flows_[idx];
    if (report_ && removed_count_ < max_flows_) {
      removed_.resize(size_t(removed_count_ + 1) * kRemovedWords);
      double* o = removed_.data() + size_t(removed_count_) * kRemovedWords;
      FillEntry(idx, o);
      o[kEntryWords] = double(cause);
      removed_count_++;
    }
    uint32_t i = Home(TagOf(f));
    while (slots_[i].ref != idx + 1) i = Next(i);
    // Backward-shift deletion: pull later entries of the run into the hole
    // unless their home lies cyclically in (hole, their slot].
    uint32_t j = i;
    for (;;) {
      j = Next(j);
      const Slot s = slots_[j];
      if (s.ref == 0) break;
      const uint32_t h = Home(s.tag);
      const bool stays = i <= j ? (i < h && h <= j) : (i < h || h <= j);
      if (stays) continue;
      slots_[i] = s;
      i = j;
    }
    slots_[i] = Slot{0, 0};
    DecrementZone(f.zone);
    if (f.reply_zone != f.zone) DecrementZone(f.reply_zone);
    if (f.action == kHold) holds_--;
    live_--;
    counters_.removed++;
    switch (cause) {
      case kAged: counters_.aged++; break;
      case kClosed: counters_.closed++; break;
      case kEvicted: counters_.evicted++; break;
      case kDeleted: counters_.deleted++; break;
    }
    std::memset(&f, 0, sizeof f);
    f.zone = free_head_;
    free_head_ = idx;
  }

  // Sets counters, TCP state and (forward only) last seen, as another tracker reports them.
  void Update(uint32_t idx, double fwd_packets, double fwd_bytes, double rev_packets, double rev_bytes, uint16_t tcp,
              double last_seen) {
    Flow& f = flows_[idx];
    const uint64_t packets[2] = {uint64_t(fwd_packets), uint64_t(rev_packets)};
    for (int d = 0; d < 2; d++) {
      f.packets_lo[d] = uint32_t(packets[d]);
      f.packets_hi[d] = uint16_t(packets[d] >> 32);
    }
    f.bytes[0] = uint64_t(fwd_bytes);
    f.bytes[1] = uint64_t(rev_bytes);
    f.tcp = tcp;
    if (last_seen > f.last_seen_ms) f.last_seen_ms = last_seen;
  }

  void SetReport(bool on) {
    report_ = on;
    if (!on) {
      removed_.clear();
      removed_.shrink_to_fit();
      removed_count_ = 0;
    }
  }

  uint32_t removed_count() const { return removed_count_; }

  // Copies the kept removals to `out` (room for removed_count() of them) and forgets them.
  void TakeRemoved(double* out) {
    if (removed_count_ > 0) std::memcpy(out, removed_.data(), size_t(removed_count_) * kRemovedWords * sizeof(double));
    removed_.clear();
    removed_count_ = 0;
  }

  void DecrementZone(uint32_t zone) {
    const auto it = zones_.find(zone);
    if (it == zones_.end()) return;
    if (--it->second == 0) zones_.erase(it);
  }

  // ---- introspection -------------------------------------------------------

  static double BigEndianWord(const uint64_t ip[2], int w) {
    const uint32_t raw = uint32_t(ip[w >> 1] >> ((w & 1) * 32));
    return double(__builtin_bswap32(raw));
  }

  void FillEntry(uint32_t idx, double* o) const {
    const Flow& f = flows_[idx];
    o[0] = idx;
    o[1] = f.zone;
    o[2] = f.reply_zone;
    o[3] = f.proto;
    o[4] = f.family;
    o[5] = f.sport;
    o[6] = f.dport;
    o[7] = f.action;
    o[8] = f.drop_reason;
    o[9] = f.tcp;
    for (int i = 0; i < 4; i++) o[10 + i] = f.ids[i];
    o[14] = double(Packets(f, 0));
    o[15] = double(f.bytes[0]);
    o[16] = double(Packets(f, 1));
    o[17] = double(f.bytes[1]);
    o[18] = f.first_seen_ms;
    o[19] = f.last_seen_ms;
    for (int w = 0; w < 4; w++) {
      o[20 + w] = BigEndianWord(f.src, w);
      o[24 + w] = BigEndianWord(f.dst, w);
    }
  }

  // Writes up to `limit` entries from index `cursor`; returns the count and
  // the next cursor (-1: none left).
  uint32_t List(double cursor, uint32_t limit, double* out, double* next) const {
    uint32_t n = 0;
    uint32_t i = cursor < 0 ? 0 : cursor > high_water_ ? high_water_ : uint32_t(cursor);
    for (; i < high_water_ && n < limit; i++) {
      if (flows_[i].family == 0) continue;
      FillEntry(i, out + size_t(n) * kEntryWords);
      n++;
    }
    *next = i < high_water_ ? double(i) : -1;
    return n;
  }

  void Stats(double* o) const {
    o[0] = live_;
    o[1] = holds_;
    o[2] = counters_.peak;
    o[3] = max_flows_;
    o[4] = counters_.inserted;
    o[5] = counters_.removed;
    o[6] = counters_.aged;
    o[7] = counters_.closed;
    o[8] = counters_.evicted;
    o[9] = counters_.deleted;
    o[10] = counters_.refused_flow_limit;
    o[11] = counters_.refused_table_full;
    o[12] = counters_.refused_hold_limit;
    o[13] = counters_.holds_created;
    o[14] = counters_.holds_resolved;
    o[15] = counters_.lookups;
    o[16] = counters_.hits;
    o[17] = double(zones_.size());
    o[18] = double(bytes_allocated());
  }

 private:
  Flow* flows_ = nullptr;
  Slot* slots_ = nullptr;
  size_t flows_bytes_ = 0;
  size_t slots_bytes_ = 0;
  uint32_t max_flows_ = 0, n_slots_ = 0, max_per_zone_ = 0, max_holds_ = 0, evict_scan_ = 0;
  double syn_ms_ = 0, established_ms_ = 0, closing_ms_ = 0, closed_ms_ = 0, udp_ms_ = 0, udp_stream_ms_ = 0,
         icmp_ms_ = 0, other_ms_ = 0, denied_ms_ = 0, hold_ms_ = 0;
  uint32_t live_ = 0, holds_ = 0, high_water_ = 0, free_head_ = kNone, age_cursor_ = 0, evict_hand_ = 0;
  std::unordered_map<uint32_t, uint32_t> zones_;
  Counters counters_;
  bool report_ = false;
  std::vector<double> removed_;
  uint32_t removed_count_ = 0;
};

// ---- JavaScript binding ------------------------------------------------------

template <typename T>
bool ArrayArg(const Napi::CallbackInfo& info, size_t i, napi_typedarray_type type, const char* what, T** data,
              size_t* length) {
  napi_typedarray_type t;
  void* p = nullptr;
  if (napi_get_typedarray_info(info.Env(), info[i], &t, length, &p, nullptr, nullptr) != napi_ok || t != type) {
    Napi::TypeError::New(info.Env(), std::string(what) + " must be a typed array of the documented type")
        .ThrowAsJavaScriptException();
    return false;
  }
  *data = static_cast<T*>(p);
  return true;
}

bool NumberArgs(const Napi::CallbackInfo& info, size_t from, size_t to) {
  for (size_t i = from; i < to; i++) {
    if (!info[i].IsNumber()) {
      Napi::TypeError::New(info.Env(), "argument " + std::to_string(i) + " must be a number").ThrowAsJavaScriptException();
      return false;
    }
  }
  return true;
}

double Num(const Napi::CallbackInfo& info, size_t i) { return info[i].As<Napi::Number>().DoubleValue(); }

uint32_t U32(const Napi::CallbackInfo& info, size_t i) {
  const double d = Num(info, i);
  return d >= 0 && d <= 4294967295.0 ? uint32_t(d) : 0;
}

class FlowTableWrap : public Napi::ObjectWrap<FlowTableWrap> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "FlowTable",
                       {
                           InstanceMethod<&FlowTableWrap::LookupBatch>("lookupBatch"),
                           InstanceMethod<&FlowTableWrap::AccountBatch>("accountBatch"),
                           InstanceMethod<&FlowTableWrap::Insert>("insert"),
                           InstanceMethod<&FlowTableWrap::SetVerdict>("setVerdict"),
                           InstanceMethod<&FlowTableWrap::Remove>("remove"),
                           InstanceMethod<&FlowTableWrap::Expire>("expire"),
                           InstanceMethod<&FlowTableWrap::Get>("get"),
                           InstanceMethod<&FlowTableWrap::List>("list"),
                           InstanceMethod<&FlowTableWrap::ZoneFlows>("zoneFlows"),
                           InstanceMethod<&FlowTableWrap::Update>("update"),
                           InstanceMethod<&FlowTableWrap::ReportRemovals>("reportRemovals"),
                           InstanceMethod<&FlowTableWrap::PendingRemovals>("pendingRemovals"),
                           InstanceMethod<&FlowTableWrap::TakeRemoved>("takeRemoved"),
                           InstanceMethod<&FlowTableWrap::Stats>("stats"),
                           InstanceMethod<&FlowTableWrap::Close>("close"),
                       });
  }

  explicit FlowTableWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<FlowTableWrap>(info) {
    const double* o = nullptr;
    size_t n = 0;
    if (!ArrayArg(info, 0, napi_float64_array, "options", &o, &n)) return;
    if (n < kOptionWords) {
      Napi::RangeError::New(info.Env(), "options has too few words").ThrowAsJavaScriptException();
      return;
    }
    if (const char* err = table_.Init(o)) {
      Napi::RangeError::New(info.Env(), err).ThrowAsJavaScriptException();
      return;
    }
    external_ = int64_t(table_.bytes_allocated());
    Napi::MemoryManagement::AdjustExternalMemory(info.Env(), external_);
  }

  void Finalize(Napi::Env env) override { ReleaseTable(env); }

 private:
  void ReleaseTable(Napi::Env env) {
    table_.Release();
    if (external_ != 0) Napi::MemoryManagement::AdjustExternalMemory(env, -external_);
    external_ = 0;
  }

  bool Open(const Napi::CallbackInfo& info) {
    if (!table_.closed()) return true;
    Napi::Error::New(info.Env(), "the flow table is closed").ThrowAsJavaScriptException();
    return false;
  }

  // lookupBatch(packets: Uint8Array, count, results: Int32Array) -> hits
  Napi::Value LookupBatch(const Napi::CallbackInfo& info) {
    const uint8_t* packets = nullptr;
    int32_t* out = nullptr;
    uint32_t count = 0;
    if (!BatchArgs(info, 2, &packets, &count, &out)) return info.Env().Undefined();
    return Napi::Number::New(info.Env(), table_.LookupBatch(packets, count, out));
  }

  // accountBatch(packets, count, nowMs, results) -> hits
  Napi::Value AccountBatch(const Napi::CallbackInfo& info) {
    const uint8_t* packets = nullptr;
    int32_t* out = nullptr;
    uint32_t count = 0;
    if (!BatchArgs(info, 3, &packets, &count, &out)) return info.Env().Undefined();
    if (!NumberArgs(info, 2, 3)) return info.Env().Undefined();
    return Napi::Number::New(info.Env(), table_.AccountBatch(packets, count, Num(info, 2), out));
  }

  bool BatchArgs(const Napi::CallbackInfo& info, size_t results_arg, const uint8_t** packets, uint32_t* count,
                 int32_t** out) {
    if (!Open(info)) return false;
    size_t packet_bytes = 0, results = 0;
    uint8_t* p = nullptr;
    if (!ArrayArg(info, 0, napi_uint8_array, "packets", &p, &packet_bytes)) return false;
    if (!NumberArgs(info, 1, 2)) return false;
    if (!ArrayArg(info, results_arg, napi_int32_array, "results", out, &results)) return false;
    const double c = Num(info, 1);
    if (!(c >= 0) || c > double(results) || c * kPacketBytes > double(packet_bytes)) {
      Napi::RangeError::New(info.Env(), "count exceeds the packets or results given").ThrowAsJavaScriptException();
      return false;
    }
    *packets = p;
    *count = uint32_t(c);
    return true;
  }

  // insert(packet: Uint8Array(48), replyZone, action, dropReason, egressPolicy,
  //        egressRule, ingressPolicy, ingressRule, nowMs, out: Int32Array(2)) -> outcome
  Napi::Value Insert(const Napi::CallbackInfo& info) {
    if (!Open(info)) return info.Env().Undefined();
    uint8_t* p = nullptr;
    int32_t* out = nullptr;
    size_t n = 0, m = 0;
    if (!ArrayArg(info, 0, napi_uint8_array, "packet", &p, &n)) return info.Env().Undefined();
    if (!NumberArgs(info, 1, 9)) return info.Env().Undefined();
    if (!ArrayArg(info, 9, napi_int32_array, "out", &out, &m)) return info.Env().Undefined();
    PacketKey k;
    if (n < kPacketBytes || m < 2) return RangeError(info, "packet must hold one record and out two words");
    LoadPacket(p, &k);
    const uint32_t action = U32(info, 2), reason = U32(info, 3);
    if ((k.family != 4 && k.family != 6) || action > kHold || reason >= kReasonCount) {
      return RangeError(info, "bad family, action or drop reason");
    }
    const uint32_t ids[4] = {U32(info, 4), U32(info, 5), U32(info, 6), U32(info, 7)};
    return Napi::Number::New(info.Env(), table_.Insert(k, U32(info, 1), uint8_t(action), uint8_t(reason), ids,
                                                       Num(info, 8), &out[0], &out[1]));
  }

  // setVerdict(index, action, dropReason, egressPolicy, egressRule, ingressPolicy, ingressRule) -> boolean
  Napi::Value SetVerdict(const Napi::CallbackInfo& info) {
    if (!Open(info) || !NumberArgs(info, 0, 7)) return info.Env().Undefined();
    const uint32_t action = U32(info, 1), reason = U32(info, 2);
    if (action > kDeny || reason >= kReasonCount) return RangeError(info, "bad action or drop reason");
    if (!table_.Live(Num(info, 0))) return Napi::Boolean::New(info.Env(), false);
    const uint32_t ids[4] = {U32(info, 3), U32(info, 4), U32(info, 5), U32(info, 6)};
    return Napi::Boolean::New(info.Env(), table_.SetVerdict(U32(info, 0), uint8_t(action), uint8_t(reason), ids));
  }

  // remove(index) -> boolean
  Napi::Value Remove(const Napi::CallbackInfo& info) {
    if (!Open(info) || !NumberArgs(info, 0, 1)) return info.Env().Undefined();
    if (!table_.Live(Num(info, 0))) return Napi::Boolean::New(info.Env(), false);
    table_.Remove(U32(info, 0), kDeleted);
    return Napi::Boolean::New(info.Env(), true);
  }

  // expire(nowMs, maxScan) -> removed
  Napi::Value Expire(const Napi::CallbackInfo& info) {
    if (!Open(info) || !NumberArgs(info, 0, 2)) return info.Env().Undefined();
    const double max_scan = Num(info, 1);
    return Napi::Number::New(info.Env(), table_.Expire(Num(info, 0), max_scan >= 0 ? max_scan : 0));
  }

  // get(index, out: Float64Array(28)) -> boolean
  Napi::Value Get(const Napi::CallbackInfo& info) {
    if (!Open(info) || !NumberArgs(info, 0, 1)) return info.Env().Undefined();
    double* out = nullptr;
    size_t n = 0;
    if (!ArrayArg(info, 1, napi_float64_array, "out", &out, &n)) return info.Env().Undefined();
    if (n < kEntryWords) return RangeError(info, "out must hold one entry");
    if (!table_.Live(Num(info, 0))) return Napi::Boolean::New(info.Env(), false);
    table_.FillEntry(U32(info, 0), out);
    return Napi::Boolean::New(info.Env(), true);
  }

  // list(cursor, limit, out: Float64Array(2 + limit * 28)) -> count;
  // out[0] = next cursor or -1, entries from out[2].
  Napi::Value List(const Napi::CallbackInfo& info) {
    if (!Open(info) || !NumberArgs(info, 0, 2)) return info.Env().Undefined();
    double* out = nullptr;
    size_t n = 0;
    if (!ArrayArg(info, 2, napi_float64_array, "out", &out, &n)) return info.Env().Undefined();
    const double limit = Num(info, 1);
    if (!(limit >= 0) || n < 2 || limit > double((n - 2) / kEntryWords)) return RangeError(info, "out is too small");
    double next = -1;
    const uint32_t count = table_.List(Num(info, 0), uint32_t(limit), out + 2, &next);
    out[0] = next;
    return Napi::Number::New(info.Env(), count);
  }

  Napi::Value ZoneFlows(const Napi::CallbackInfo& info) {
    if (!Open(info) || !NumberArgs(info, 0, 1)) return info.Env().Undefined();
    return Napi::Number::New(info.Env(), table_.ZoneFlows(U32(info, 0)));
  }

  // update(index, forwardPackets, forwardBytes, reversePackets, reverseBytes, tcpState, lastSeenMs) -> boolean
  // (values checked by the caller: counts below 2^53, tcpState 0..0x1ff, a finite time)
  Napi::Value Update(const Napi::CallbackInfo& info) {
    if (!Open(info) || !NumberArgs(info, 0, 7)) return info.Env().Undefined();
    for (size_t i = 1; i < 5; i++) {
      const double c = Num(info, i);
      if (!(c >= 0) || c > 9007199254740991.0) return RangeError(info, "counters must be counts below 2^53");
    }
    const double tcp = Num(info, 5), last = Num(info, 6);
    if (!(tcp >= 0) || tcp > 0x1ff || !(last == last) || last - last != 0) {
      return RangeError(info, "bad TCP state or last seen");
    }
    if (!table_.Live(Num(info, 0))) return Napi::Boolean::New(info.Env(), false);
    table_.Update(U32(info, 0), Num(info, 1), Num(info, 2), Num(info, 3), Num(info, 4), uint16_t(tcp), last);
    return Napi::Boolean::New(info.Env(), true);
  }

  // reportRemovals(on: boolean)
  Napi::Value ReportRemovals(const Napi::CallbackInfo& info) {
    if (!Open(info)) return info.Env().Undefined();
    table_.SetReport(info[0].ToBoolean().Value());
    return info.Env().Undefined();
  }

  // pendingRemovals() -> count
  Napi::Value PendingRemovals(const Napi::CallbackInfo& info) {
    if (!Open(info)) return info.Env().Undefined();
    return Napi::Number::New(info.Env(), table_.removed_count());
  }

  // takeRemoved(out: Float64Array(pendingRemovals() * 29)) -> count; each: entry words, then the cause.
  Napi::Value TakeRemoved(const Napi::CallbackInfo& info) {
    if (!Open(info)) return info.Env().Undefined();
    double* out = nullptr;
    size_t n = 0;
    if (!ArrayArg(info, 0, napi_float64_array, "out", &out, &n)) return info.Env().Undefined();
    const uint32_t count = table_.removed_count();
    if (n < size_t(count) * kRemovedWords) return RangeError(info, "out is too small");
    table_.TakeRemoved(out);
    return Napi::Number::New(info.Env(), count);
  }

  // stats(out: Float64Array(19))
  Napi::Value Stats(const Napi::CallbackInfo& info) {
    if (!Open(info)) return info.Env().Undefined();
    double* out = nullptr;
    size_t n = 0;
    if (!ArrayArg(info, 0, napi_float64_array, "out", &out, &n)) return info.Env().Undefined();
    if (n < kStatsWords) return RangeError(info, "out is too small");
    table_.Stats(out);
    return info.Env().Undefined();
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    ReleaseTable(info.Env());
    return info.Env().Undefined();
  }

  static Napi::Value RangeError(const Napi::CallbackInfo& info, const char* message) {
    Napi::RangeError::New(info.Env(), message).ThrowAsJavaScriptException();
    return info.Env().Undefined();
  }

  Table table_;
  int64_t external_ = 0;
};

}  // namespace

Napi::Object InitFlowTable(Napi::Env env, Napi::Object exports) {
  exports.Set("FlowTable", FlowTableWrap::Define(env));
  exports.Set("flowTableAbi", Napi::Number::New(env, kAbi));
  return exports;
}

}  // namespace weir
