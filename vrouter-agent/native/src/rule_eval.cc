// The first-packet rule evaluator: loads a rule image (the RuleTables of the
// policy core, flattened by vrouter-agent/compile/rule-image.ts, whose header
// comment is the layout contract) and decides batches of packet records
// (vrouter-agent/compile/policy-record.ts) exactly as RuleTables.egress() and
// ingress() in shared/policy/rule-tables.ts do. That TypeScript evaluator is the
// reference; test/compile/ checks the two against each other.
//
// JavaScript surface (exports.RuleEvaluator):
//
//   new RuleEvaluator(image: ArrayBuffer | ArrayBufferView,
//                     options?: { indexMinRules?: number, portIndexMinRules?: number })
//     Reads the options, then copies and validates the whole image; throws an
//     Error whose message starts "rule image: " and names the first problem
//     for anything malformed, a TypeError for arguments of the wrong kind. The
//     buffer is not referenced afterwards. indexMinRules (default 32): tables
//     with at least this many rules get a peer-address index (below); 0
//     indexes every table, 2^32-1 none. portIndexMinRules (default 16): inside
//     an index, candidate lists of at least this many rules get a port index.
//
//   evaluate(packets: ArrayBuffer | ArrayBufferView, count: number,
//            out: Int32Array): number
//     Decides records [0, count) of `packets` (40 bytes each) into
//     out[3i .. 3i+2]; returns how many were allowed. Throws (and writes
//     nothing) when count is not an integer in [0, 2^31), packets holds fewer
//     than 40·count bytes, or out is not an Int32Array of at least 3·count
//     elements. `packets` and `out` must not overlap.
//
//   info(): object of counts (endpoints, rules, tables, indexedTables, ...).
//   dispose(): frees the native tables now; evaluate() throws afterwards.
//   RuleEvaluator.imageVersion: the image version this build reads.
//
// Evaluation of one direction, tier by tier (image version 3). A rule
// matches when its peer set holds the peer address and its ports admit
// (protocol, port) — fixed triples, or the named-port entries of the
// packet's destination address. Each tier is a rule list; in a list the
// first match decides:
//   1. Admin list: a match with action allow or deny gives its rule index;
//      a match with action pass (ClusterNetworkPolicy Pass) ends the tier.
//   2. NetworkPolicy list, when its policy count is not 0 (isolated): a peer
//      address in the endpoint's node set (traffic between a pod and its own
//      node, which that tier allows) gives ALLOW_NODE; else a match gives its
//      rule index (a pass rule goes on to 3), none gives DENY. Not isolated:
//      the tier does not decide, own node or not.
//   3. Baseline list: as Admin.
//   4. ALLOW_DEFAULT.
// A direction denies when it gives DENY or the index of a deny rule.
//
// Large tables are indexed. By peer address: a segment tree over the
// elementary intervals of all the table's peer ranges (one tree per family),
// each rule filed under the O(log n) canonical nodes that cover its ranges,
// each node's list in table order; rules with any peer form one more list. A
// lookup walks leaf to root and takes, from each list on the way, the first
// rule whose ports match, stopping at the best position found so far. Long
// lists also carry a port index (PortSummary) that answers "first position
// admitting (protocol, port)" by binary search instead of a scan. The answer
// is the same first match as the linear scan. Indexes are bounded
// (kMaxPeerRangesPerTable, kIndexWordBudget); a table beyond the bounds is
// scanned linearly, a list beyond them scanned in order.
//
// The cluster tiers (Admin and Baseline lists) are indexed by peer class
// instead, as RuleTables does (shared/policy/peer-classes.ts): a thousand
// ClusterNetworkPolicies give a pod hundreds of rules whose peers are a few
// dozen shared selector groups and networks, which a per-list segment tree
// files range by range (it exhausted the budget at that size, leaving the
// lists scanned). One PeerClasses per image cuts the address space at the
// range boundaries of those groups; addresses in the same groups share a
// class, found once per direction by binary search. Each list maps a class to
// the positions of its rules whose peer holds the class (PortSummary when
// long), plus its any-peer rules; the first whose ports admit is the match.
// Built within the same budget, before the peer indexes; a cluster-tier list
// left without one gets a peer index as any other list.
//
// Memory: loading allocates in proportion to the image, plus the bounded
// indexes. The addon is built without C++ exceptions, so an allocation that
// fails aborts the process; images come from encodeRuleImage, whose size
// follows the policy.
#include <napi.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <map>
#include <set>
#include <memory>
#include <string>
#include <vector>

namespace weir {
std::shared_ptr<const void> RuleEvaluatorImage(napi_env env, napi_value value);
namespace {

using u128 = unsigned __int128;

constexpr uint32_t kMagic = 0x49545257;  // "WRTI"
constexpr uint16_t kVersion = 3;
constexpr uint32_t kSectionCount = 15;
constexpr uint64_t kHeaderBytes = 136;
constexpr uint32_t kNone = 0xffffffffu;
constexpr uint64_t kElementBytes[kSectionCount] = {8, 1, 16, 8, 24, 32, 4, 24, 16, 8, 32, 24, 8, 16, 24};
const char* const kSectionNames[kSectionCount] = {
    "STRINGS", "STRING_BYTES", "ENDPOINTS", "ADDRESSES4", "ADDRESSES6", "TABLES", "RULE_REFS", "RULES",
    "PREFIX_SETS", "RANGES4", "RANGES6", "PORT_MATCHERS", "TRIPLES", "DESTS4", "DESTS6"};
enum Sec : int {
  STRINGS, STRING_BYTES, ENDPOINTS, ADDRESSES4, ADDRESSES6, TABLES, RULE_REFS, RULES,
  PREFIX_SETS, RANGES4, RANGES6, PORT_MATCHERS, TRIPLES, DESTS4, DESTS6
};

constexpr int32_t kAllowDefault = -1;
constexpr int32_t kDeny = -2;
constexpr int32_t kNotLocal = -3;
constexpr int32_t kInvalid = -4;
constexpr int32_t kAllowNode = -5;
// RULES.action: what a match does.
constexpr uint8_t kActionAllow = 0;
constexpr uint8_t kActionDeny = 1;
constexpr uint8_t kActionPass = 2;
constexpr uint8_t kMaxTier = 2;  // RULES.tier: 0 NetworkPolicy, 1 Admin, 2 Baseline
constexpr int32_t kFlagAllowed = 1;
constexpr int32_t kFlagSelf = 2;
constexpr uint64_t kRecordBytes = 40;
constexpr uint64_t kResultStride = 3;

constexpr uint32_t kDefaultIndexMinRules = 32;
// Candidate lists of an index with at least this many rules get a port index (PortSummary).
constexpr uint32_t kDefaultPortIndexMinRules = 16;
// A table whose rules hold more peer ranges than this (counted per rule) is not indexed.
constexpr uint64_t kMaxPeerRangesPerTable = 1u << 20;
// All indexes of one image together use at most this many u32 words (128 MiB).
constexpr uint64_t kIndexWordBudget = 1u << 25;

inline uint16_t Le16(const uint8_t* p) { return uint16_t(p[0] | (p[1] << 8)); }
inline uint32_t Le32(const uint8_t* p) {
  return uint32_t(p[0]) | (uint32_t(p[1]) << 8) | (uint32_t(p[2]) << 16) | (uint32_t(p[3]) << 24);
}
inline uint64_t Le64(const uint8_t* p) { return uint64_t(Le32(p)) | (uint64_t(Le32(p + 4)) << 32); }
inline u128 Le128(const uint8_t* p) { return (u128(Le64(p)) << 64) | Le64(p + 8); }
inline uint32_t Be32(const uint8_t* p) {
  return (uint32_t(p[0]) << 24) | (uint32_t(p[1]) << 16) | (uint32_t(p[2]) << 8) | uint32_t(p[3]);
}
inline uint64_t Be64(const uint8_t* p) { return (uint64_t(Be32(p)) << 32) | Be32(p + 4); }
inline u128 Be128(const uint8_t* p) { return (u128(Be64(p)) << 64) | Be64(p + 8); }

struct Range4 { uint32_t first, last; };
struct Range6 { u128 first, last; };
struct Triple { uint16_t protocol, first, last; };
struct Dest4 { uint32_t address, first, count; };
struct Dest6 { u128 address; uint32_t first, count; };

struct PrefixSetRec { uint32_t first4, count4, first6, count6; };
struct MatcherRec { uint32_t firstTriple, triples, first4, count4, first6, count6; };

// One rule, with its peer set and port matcher resolved to spans of the
// image's arrays (no indirection on the hot path).
struct Rule {
  const Range4* r4;
  const Range6* r6;
  const Triple* triples;
  const Dest4* d4;
  const Dest6* d6;
  uint32_t n4, n6, nTriples, nd4, nd6;
  bool anyPeer, anyPorts;
  uint8_t action;  // kActionAllow, kActionDeny, kActionPass
  uint32_t peerSet;  // PREFIX_SETS index of the peer; kNone: any address
};

// A port index over one candidate list (ascending table positions): the
// first position whose ports admit (protocol, port), without a scan. Per
// protocol, the elementary port intervals of the list's fixed triples, each
// with the first position covering it; any-port rules reduce to their first
// position; rules with named-port destinations are kept aside, in order, and
// checked one by one (their fixed triples are in the intervals too).
struct PortSummary {
  uint32_t anyPorts = kNone;
  std::vector<uint32_t> dests;
  std::vector<uint16_t> protocols;   // ascending
  std::vector<uint32_t> protoStart;  // protocols.size() + 1 offsets into bounds and firsts
  std::vector<uint16_t> bounds;      // per protocol ascending from 0: interval j is [bounds[j], bounds[j+1]-1]
  std::vector<uint32_t> firsts;      // first position admitting interval j; kNone when none

  uint64_t Words() const {
    return 1 + dests.size() + protocols.size() / 2 + protoStart.size() + bounds.size() / 2 + firsts.size();
  }
};

template <class A>
struct PeerTree {
  // Elementary intervals: leaf k covers [bounds[k], bounds[k+1]-1]; bounds[0] = 0.
  std::vector<A> bounds;
  uint32_t size = 0;  // leaf count rounded up to a power of two
  // Node n (1 .. 2·size-1) lists table positions items[start[n] .. start[n+1]), ascending.
  std::vector<uint32_t> start;
  std::vector<uint32_t> items;
  // Node n's list has a port index summaries[summaryOf[n]] when summaryOf is not empty and the entry is not kNone.
  std::vector<uint32_t> summaryOf;
  std::vector<PortSummary> summaries;

  uint32_t LeafOf(A a) const {
    return uint32_t(std::upper_bound(bounds.begin(), bounds.end(), a) - bounds.begin()) - 1;
  }
};

struct PeerIndex {
  PeerTree<uint32_t> t4;
  PeerTree<u128> t6;
  std::vector<uint32_t> anyPeer;  // positions of rules whose peer is any address
  std::unique_ptr<PortSummary> anyPeerPorts;
};

// One cluster-tier list's peer index: per class, the positions of the rules
// whose peer holds the class (classes alike share one group); the positions
// of rules with any peer. The first match is the lowest position among both
// whose ports admit the packet.
struct ClassIndex {
  std::vector<uint32_t> anyPeer;
  std::unique_ptr<PortSummary> anyPeerPorts;
  std::vector<uint32_t> groupOf;    // per class
  std::vector<uint32_t> start;      // per group, + 1: items[start[g] .. start[g+1])
  std::vector<uint32_t> items;      // ascending per group
  std::vector<uint32_t> summaryOf;  // per group; kNone: scanned
  std::vector<PortSummary> summaries;
};

// One rule at one position of one table: what the scan needs, contiguous per
// table so that a table's rules are read in one sweep. The first port triple
// is copied inline (most rules have one).
struct Slot {
  uint32_t rule;
  uint8_t anyPeer, anyPorts, hasDests, protocol0;
  uint16_t first0, last0;
  uint32_t triples, nTriples;  // into Image::triples
  uint32_t r4, n4, r6, n6;     // into Image::ranges4 / ranges6
};

// One rule list. Each TABLES element k of the image becomes three, at
// Image::tables[3k + kTier...]: its NetworkPolicy list (policyCount as the
// image says), its Admin and Baseline lists (policyCount = their rule count).
struct Table {
  uint32_t policyCount, first, count;  // first: into Image::slots (and refs)
  // Lists that are the same span of RULE_REFS share one index (the encoder
  // stores a list once, however many tables hold it). Cluster-tier lists
  // get a class index (over Image::peerClasses), others a peer index.
  std::shared_ptr<PeerIndex> index;
  std::shared_ptr<ClassIndex> classes;
};
constexpr uint32_t kTierNamespace = 0, kTierAdmin = 1, kTierBaseline = 2;

// An endpoint's tables (TABLES indices k: lists at Image::tables[3k ..]) and
// its node's addresses (a prefix set resolved to spans of ranges4 / ranges6;
// hasNode false when it has none).
struct Endpoint {
  uint32_t egress, ingress;
  uint32_t r4, n4, r6, n6;
  bool hasNode;
};

// Open addressing, linear probing; endpoint 0 marks an empty slot (endpoints
// are stored + 1). Each slot carries the endpoint's table indices.
struct Slot4 { uint32_t key, endpoint, egress, ingress; };
struct Slot6 { u128 key; uint32_t endpoint, egress, ingress; };

inline uint32_t Hash64(uint64_t x, int bits) { return uint32_t((x * 0x9E3779B97F4A7C15ull) >> (64 - bits)); }

struct Addr {
  uint8_t family;
  uint32_t v4;
  u128 v6;
};

// The peer classes of the cluster tiers (shared/policy/peer-classes.ts is
// the TypeScript twin): the address space cut at every range boundary of the
// peer sets of the class-indexed lists; intervals in the same sets share a
// class. Class 0 is in none of them.
struct PeerClasses {
  std::vector<uint32_t> starts4, classes4;  // interval j starts at starts4[j] (starts4[0] = 0)
  std::vector<u128> starts6;
  std::vector<uint32_t> classes6;
  std::vector<std::vector<uint32_t>> members;  // per class: the PREFIX_SETS holding it, ascending

  uint32_t Of(const Addr& a) const {
    if (a.family == 4) {
      return classes4[size_t(std::upper_bound(starts4.begin(), starts4.end(), a.v4) - starts4.begin()) - 1];
    }
    return classes6[size_t(std::upper_bound(starts6.begin(), starts6.end(), a.v6) - starts6.begin()) - 1];
  }
};


class Image {
 public:
  std::vector<Range4> ranges4;
  std::vector<Range6> ranges6;
  std::vector<Triple> triples;
  std::vector<Dest4> dests4;
  std::vector<Dest6> dests6;
  std::vector<Rule> rules;
  std::vector<uint32_t> refs;
  std::vector<Slot> slots;
  std::vector<Table> tables;
  std::vector<Endpoint> endpoints;
  std::vector<Slot4> map4;
  std::vector<Slot6> map6;
  int bits4 = 1, bits6 = 1;
  uint32_t addresses4 = 0, addresses6 = 0, prefixSets = 0, portMatchers = 0, strings = 0;
  uint32_t indexedTables = 0, classIndexedTables = 0;
  uint64_t indexWords = 0;
  PeerClasses peerClasses;

  uint64_t Bytes() const {
    return ranges4.size() * sizeof(Range4) + ranges6.size() * sizeof(Range6) + triples.size() * sizeof(Triple) +
           dests4.size() * sizeof(Dest4) + dests6.size() * sizeof(Dest6) + rules.size() * sizeof(Rule) +
           refs.size() * 4 + slots.size() * sizeof(Slot) + tables.size() * sizeof(Table) + endpoints.size() * sizeof(Endpoint) +
           map4.size() * sizeof(Slot4) + map6.size() * sizeof(Slot6) + indexWords * 4;
  }

  static uint32_t Hash6(u128 a, int bits) { return Hash64(uint64_t(a >> 64) * 31 ^ uint64_t(a), bits); }

  // The endpoint holding an address: {endpoint + 1, egress table, ingress table}; endpoint 0 when none.
  struct Found { uint32_t endpoint, egress, ingress; };

  Found Find(const Addr& a) const {
    if (a.family == 4) {
      uint32_t mask = uint32_t(map4.size() - 1);
      for (uint32_t h = Hash64(a.v4, bits4);; h = (h + 1) & mask) {
        const Slot4& s = map4[h];
        if (s.endpoint == 0 || s.key == a.v4) return {s.endpoint, s.egress, s.ingress};
      }
    }
    uint32_t mask = uint32_t(map6.size() - 1);
    for (uint32_t h = Hash6(a.v6, bits6);; h = (h + 1) & mask) {
      const Slot6& s = map6[h];
      if (s.endpoint == 0 || s.key == a.v6) return {s.endpoint, s.egress, s.ingress};
    }
  }

  // The lists of TABLES element k.
  const Table& List(uint32_t k, uint32_t tier) const { return tables[3 * size_t(k) + tier]; }

  void PrefetchSlots(const Table& t) const {
    if (t.policyCount != 0 && t.count != 0) {
      const Slot* s = slots.data() + t.first;
      __builtin_prefetch(s);
      if (t.count > 1) __builtin_prefetch(s + 1);
    }
  }

  void Prefetch(const Addr& a) const {
    if (a.family == 4) __builtin_prefetch(&map4[Hash64(a.v4, bits4)]);
    else __builtin_prefetch(&map6[Hash6(a.v6, bits6)]);
  }

  static bool Scan(const Triple* t, uint32_t n, uint32_t protocol, uint32_t port) {
    for (uint32_t i = 0; i < n; i++) {
      if (t[i].protocol == protocol && port >= t[i].first && port <= t[i].last) return true;
    }
    return false;
  }

  template <class R, class A>
  static bool InRanges(const R* r, uint32_t n, A a) {
    if (n <= 8) {
      for (uint32_t i = 0; i < n; i++) {
        if (a < r[i].first) return false;
        if (a <= r[i].last) return true;
      }
      return false;
    }
    uint32_t lo = 0, hi = n;
    while (lo < hi) {
      uint32_t mid = (lo + hi) >> 1;
      if (r[mid].first <= a) lo = mid + 1;
      else hi = mid;
    }
    return lo > 0 && a <= r[lo - 1].last;
  }

  template <class D, class A>
  static const D* FindDest(const D* d, uint32_t n, A a) {
    uint32_t lo = 0, hi = n;
    while (lo < hi) {
      uint32_t mid = (lo + hi) >> 1;
      if (d[mid].address < a) lo = mid + 1;
      else hi = mid;
    }
    return lo < n && d[lo].address == a ? d + lo : nullptr;
  }

  bool DestPorts(const Slot& s, const Addr& dest, uint32_t protocol, uint32_t port) const {
    const Rule& r = rules[s.rule];
    if (dest.family == 4) {
      const Dest4* d = FindDest(r.d4, r.nd4, dest.v4);
      return d != nullptr && Scan(triples.data() + d->first, d->count, protocol, port);
    }
    const Dest6* d = FindDest(r.d6, r.nd6, dest.v6);
    return d != nullptr && Scan(triples.data() + d->first, d->count, protocol, port);
  }

  bool FixedPorts(const Slot& s, uint32_t protocol, uint32_t port) const {
    if (s.anyPorts) return true;
    if (s.nTriples == 0) return false;
    if (s.protocol0 == protocol && port >= s.first0 && port <= s.last0) return true;
    return s.nTriples > 1 && Scan(triples.data() + s.triples + 1, s.nTriples - 1, protocol, port);
  }

  bool Ports(const Slot& s, const Addr& dest, uint32_t protocol, uint32_t port) const {
    return FixedPorts(s, protocol, port) || (s.hasDests && DestPorts(s, dest, protocol, port));
  }

  bool Peer(const Slot& s, const Addr& peer) const {
    if (s.anyPeer) return true;
    return peer.family == 4 ? InRanges(ranges4.data() + s.r4, s.n4, peer.v4) : InRanges(ranges6.data() + s.r6, s.n6, peer.v6);
  }

  bool Matches(const Slot& s, const Addr& peer, uint32_t protocol, uint32_t port, const Addr& dest) const {
    bool fixed = FixedPorts(s, protocol, port);
    if (!fixed && !s.hasDests) return false;
    if (!Peer(s, peer)) return false;
    return fixed || DestPorts(s, dest, protocol, port);
  }

  // The first position below `best` that a port index admits, else `best`.
  uint32_t First(const PortSummary& s, const Slot* list, uint32_t protocol, uint32_t port, const Addr& dest, uint32_t best) const {
    if (s.anyPorts < best) best = s.anyPorts;
    for (size_t k = 0; k < s.protocols.size(); k++) {
      if (s.protocols[k] != protocol) continue;
      const uint16_t* lo = s.bounds.data() + s.protoStart[k];
      const uint16_t* hi = s.bounds.data() + s.protoStart[k + 1];
      size_t j = size_t(std::upper_bound(lo, hi, uint16_t(port)) - lo) - 1;
      uint32_t f = s.firsts[s.protoStart[k] + j];
      if (f < best) best = f;
      break;
    }
    for (uint32_t pos : s.dests) {
      if (pos >= best) break;
      if (DestPorts(list[pos], dest, protocol, port)) return pos;
    }
    return best;
  }

  // Lowers `best` to the first position in `items` whose ports admit the packet.
  void Scan(const uint32_t* items, uint32_t n, const Slot* list, uint32_t protocol, uint32_t port, const Addr& dest,
            uint32_t& best) const {
    for (uint32_t k = 0; k < n; k++) {
      uint32_t pos = items[k];
      if (pos >= best) return;
      if (Ports(list[pos], dest, protocol, port)) {
        best = pos;
        return;
      }
    }
  }

  template <class A>
  void Stab(const PeerTree<A>& t, A a, const Slot* list, uint32_t protocol, uint32_t port, const Addr& dest,
            uint32_t& best) const {
    for (uint32_t node = t.LeafOf(a) + t.size; node != 0; node >>= 1) {
      uint32_t k = t.start[node], e = t.start[node + 1];
      if (k == e) continue;
      uint32_t si = t.summaryOf.empty() ? kNone : t.summaryOf[node];
      if (si != kNone) best = First(t.summaries[si], list, protocol, port, dest, best);
      else Scan(t.items.data() + k, e - k, list, protocol, port, dest, best);
    }
  }

  // One direction of the endpoint found at an address (endpoint + 1, as Find
  // gives it), tier by tier (see the top of this file).
  int32_t Direction(uint32_t endpoint, uint32_t table, const Addr& peer, uint32_t protocol, uint32_t port,
                    const Addr& dest) const {
    uint32_t peerClass = kNone;  // looked up once for both cluster tiers
    const Table& admin = List(table, kTierAdmin);
    if (admin.count != 0) {
      int32_t r = admin.classes ? DecideByClass(admin, peer, &peerClass, protocol, port, dest)
                                : Decide(admin, peer, protocol, port, dest);
      if (r >= 0 && rules[r].action != kActionPass) return r;
    }
    const Table& np = List(table, kTierNamespace);
    if (np.policyCount != 0) {
      const Endpoint& e = endpoints[endpoint - 1];
      if (e.hasNode && (peer.family == 4 ? InRanges(ranges4.data() + e.r4, e.n4, peer.v4)
                                         : InRanges(ranges6.data() + e.r6, e.n6, peer.v6))) {
        return kAllowNode;
      }
      int32_t r = Decide(np, peer, protocol, port, dest);
      if (r < 0 || rules[r].action != kActionPass) return r;
    }
    const Table& baseline = List(table, kTierBaseline);
    if (baseline.count != 0) {
      int32_t r = baseline.classes ? DecideByClass(baseline, peer, &peerClass, protocol, port, dest)
                                   : Decide(baseline, peer, protocol, port, dest);
      if (r >= 0 && rules[r].action != kActionPass) return r;
    }
    return kAllowDefault;
  }

  // Whether a direction's result denies.
  bool Denies(int32_t code) const { return code == kDeny || (code >= 0 && rules[code].action == kActionDeny); }

  // A class-indexed list's first match; *peerClass is the peer's class once looked up (kNone before).
  int32_t DecideByClass(const Table& t, const Addr& peer, uint32_t* peerClass, uint32_t protocol, uint32_t port,
                        const Addr& dest) const {
    if (*peerClass == kNone) *peerClass = peerClasses.Of(peer);
    const ClassIndex& x = *t.classes;
    const Slot* list = slots.data() + t.first;
    uint32_t best = t.count;
    if (x.anyPeerPorts) best = First(*x.anyPeerPorts, list, protocol, port, dest, best);
    else Scan(x.anyPeer.data(), uint32_t(x.anyPeer.size()), list, protocol, port, dest, best);
    uint32_t g = x.groupOf[*peerClass];
    uint32_t k = x.start[g], e = x.start[g + 1];
    if (k != e) {
      uint32_t si = x.summaryOf[g];
      if (si != kNone) best = First(x.summaries[si], list, protocol, port, dest, best);
      else Scan(x.items.data() + k, e - k, list, protocol, port, dest, best);
    }
    return best < t.count ? int32_t(list[best].rule) : kDeny;
  }

  int32_t Decide(const Table& t, const Addr& peer, uint32_t protocol, uint32_t port, const Addr& dest) const {
    if (t.policyCount == 0) return kAllowDefault;
    const Slot* list = slots.data() + t.first;
    if (t.index) {
      const PeerIndex& x = *t.index;
      uint32_t best = t.count;
      if (x.anyPeerPorts) best = First(*x.anyPeerPorts, list, protocol, port, dest, best);
      else Scan(x.anyPeer.data(), uint32_t(x.anyPeer.size()), list, protocol, port, dest, best);
      if (peer.family == 4) Stab(x.t4, peer.v4, list, protocol, port, dest, best);
      else Stab(x.t6, peer.v6, list, protocol, port, dest, best);
      return best < t.count ? int32_t(list[best].rule) : kDeny;
    }
    for (uint32_t i = 0; i < t.count; i++) {
      if (Matches(list[i], peer, protocol, port, dest)) return int32_t(list[i].rule);
    }
    return kDeny;
  }
};

// Parses a packet address; false for a malformed one.
inline bool ReadAddr(const uint8_t* p, uint8_t family, Addr* a) {
  a->family = family;
  if (family == 4) {
    if (Be32(p + 4) != 0 || Be64(p + 8) != 0) return false;
    a->v4 = Be32(p);
    a->v6 = 0;
    return true;
  }
  if (family == 6) {
    a->v4 = 0;
    a->v6 = Be128(p);
    return true;
  }
  return false;
}

// The batch runs as a software pipeline so that the memory each packet needs
// is already on its way when the packet is decided: a record is parsed and
// its address-map slots prefetched kParseAhead packets early; its endpoints
// are looked up (and their tables prefetched) kFindAhead early; the tables'
// first rule slots are prefetched kTableAhead early.
constexpr uint32_t kParseAhead = 12;
constexpr uint32_t kFindAhead = 6;
constexpr uint32_t kTableAhead = 3;
constexpr uint32_t kRing = 16;  // > kParseAhead, power of two

struct Pending {
  Addr src, dst;
  uint32_t protocol, port;
  bool valid;
  Image::Found from, to;
};

uint32_t EvaluateBatch(const Image& img, const uint8_t* packets, uint32_t count, int32_t* out) {
  Pending ring[kRing];
  uint32_t allowed = 0;
  for (uint64_t i = 0; i < uint64_t(count) + kParseAhead; i++) {
    if (i < count) {
      Pending& p = ring[i % kRing];
      const uint8_t* rec = packets + i * kRecordBytes;
      p.valid = ReadAddr(rec, rec[32], &p.src) && ReadAddr(rec + 16, rec[33], &p.dst);
      p.protocol = rec[34];
      p.port = Le16(rec + 36);
      if (p.valid) {
        img.Prefetch(p.src);
        img.Prefetch(p.dst);
      }
    }
    if (i >= kParseAhead - kFindAhead && i - (kParseAhead - kFindAhead) < count) {
      Pending& p = ring[(i - (kParseAhead - kFindAhead)) % kRing];
      if (p.valid) {
        p.from = img.Find(p.src);
        p.to = img.Find(p.dst);
        if (p.from.endpoint != 0) __builtin_prefetch(&img.List(p.from.egress, kTierAdmin));
        if (p.to.endpoint != 0) __builtin_prefetch(&img.List(p.to.ingress, kTierAdmin));
      }
    }
    if (i >= kParseAhead - kTableAhead && i - (kParseAhead - kTableAhead) < count) {
      const Pending& p = ring[(i - (kParseAhead - kTableAhead)) % kRing];
      if (p.valid) {
        if (p.from.endpoint != 0) img.PrefetchSlots(img.List(p.from.egress, kTierNamespace));
        if (p.to.endpoint != 0) img.PrefetchSlots(img.List(p.to.ingress, kTierNamespace));
      }
    }
    if (i < kParseAhead) continue;
    uint64_t k = i - kParseAhead;
    const Pending& p = ring[k % kRing];
    int32_t* o = out + k * kResultStride;
    if (!p.valid) {
      o[0] = kInvalid;
      o[1] = kInvalid;
      o[2] = 0;
      continue;
    }
    if (p.from.endpoint != 0 && p.from.endpoint == p.to.endpoint) {
      o[0] = kNotLocal;
      o[1] = kNotLocal;
      o[2] = kFlagAllowed | kFlagSelf;
      allowed++;
      continue;
    }
    int32_t eg = p.from.endpoint == 0 ? kNotLocal : img.Direction(p.from.endpoint, p.from.egress, p.dst, p.protocol, p.port, p.dst);
    int32_t in = p.to.endpoint == 0 ? kNotLocal : img.Direction(p.to.endpoint, p.to.ingress, p.src, p.protocol, p.port, p.dst);
    bool ok = !img.Denies(eg) && !img.Denies(in);
    o[0] = eg;
    o[1] = in;
    o[2] = ok ? kFlagAllowed : 0;
    allowed += ok;
  }
  return allowed;
}

// ---------------------------------------------------------------------------
// Loading: every field is checked before anything refers through it.

template <class A, class ForEachRange>
bool BuildTree(PeerTree<A>& t, ForEachRange forEach, uint64_t budgetWords, uint64_t* usedWords) {
  constexpr A kMax = ~A(0);
  std::vector<A> b;
  b.push_back(0);
  forEach([&](uint32_t, A first, A last) {
    b.push_back(first);
    if (last != kMax) b.push_back(last + 1);
  });
  std::sort(b.begin(), b.end());
  b.erase(std::unique(b.begin(), b.end()), b.end());
  t.bounds = std::move(b);
  uint64_t leaves = t.bounds.size();
  uint64_t size = 1;
  while (size < leaves) size <<= 1;
  uint64_t nodesWords = 2 * size + 1;
  if (*usedWords + nodesWords + t.bounds.size() * (sizeof(A) / 4) > budgetWords) return false;
  t.size = uint32_t(size);
  std::vector<uint32_t> counts(2 * size + 1, 0);
  auto decompose = [&](A first, A last, auto&& add) {
    uint64_t l = t.LeafOf(first) + size;
    uint64_t r = (last == kMax ? leaves : t.LeafOf(A(last + 1))) + size;
    while (l < r) {
      if (l & 1) add(uint32_t(l++));
      if (r & 1) add(uint32_t(--r));
      l >>= 1;
      r >>= 1;
    }
  };
  uint64_t total = 0;
  forEach([&](uint32_t, A first, A last) { decompose(first, last, [&](uint32_t n) { counts[n]++, total++; }); });
  uint64_t words = nodesWords + total + t.bounds.size() * (sizeof(A) / 4);
  if (*usedWords + words > budgetWords) return false;
  t.start.assign(2 * size + 1, 0);
  uint32_t run = 0;
  for (uint64_t n = 0; n < 2 * size; n++) {
    t.start[n] = run;
    run += counts[n];
  }
  t.start[2 * size] = run;
  t.items.assign(total, 0);
  std::vector<uint32_t> fill(t.start.begin(), t.start.end() - 1);
  forEach([&](uint32_t pos, A first, A last) { decompose(first, last, [&](uint32_t n) { t.items[fill[n]++] = pos; }); });
  *usedWords += words;
  return true;
}

// Builds the port index of the candidate list `positions` (ascending).
void BuildSummary(PortSummary& s, const uint32_t* positions, size_t n, const Slot* list, const Triple* triples) {
  struct Entry { uint32_t protocol, first, last, pos; };
  std::vector<Entry> entries;
  for (size_t i = 0; i < n; i++) {
    uint32_t pos = positions[i];
    const Slot& sl = list[pos];
    if (pos > s.anyPorts) break;  // nothing after the first any-port rule can be first
    if (sl.anyPorts) {
      s.anyPorts = pos;
      continue;
    }
    if (sl.hasDests) s.dests.push_back(pos);
    for (uint32_t k = 0; k < sl.nTriples; k++) {
      const Triple& t = triples[sl.triples + k];
      if (t.first <= t.last) entries.push_back({t.protocol, t.first, t.last, pos});
    }
  }
  std::stable_sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) { return a.protocol < b.protocol; });
  for (size_t g = 0; g < entries.size();) {
    size_t end = g;
    while (end < entries.size() && entries[end].protocol == entries[g].protocol) end++;
    std::vector<uint32_t> b = {0};
    for (size_t i = g; i < end; i++) {
      b.push_back(entries[i].first);
      if (entries[i].last < 65535) b.push_back(entries[i].last + 1);
    }
    std::sort(b.begin(), b.end());
    b.erase(std::unique(b.begin(), b.end()), b.end());
    size_t base = s.bounds.size();
    s.protocols.push_back(uint16_t(entries[g].protocol));
    s.protoStart.push_back(uint32_t(base));
    for (uint32_t x : b) s.bounds.push_back(uint16_t(x));
    s.firsts.resize(base + b.size(), kNone);
    // Paint each entry's intervals that no earlier (lower) position painted; `next` skips painted ones.
    std::vector<uint32_t> next(b.size() + 1);
    for (size_t i = 0; i < next.size(); i++) next[i] = uint32_t(i);
    auto find = [&](uint32_t i) {
      while (next[i] != i) {
        next[i] = next[next[i]];
        i = next[i];
      }
      return i;
    };
    for (size_t i = g; i < end; i++) {
      uint32_t l = uint32_t(std::lower_bound(b.begin(), b.end(), entries[i].first) - b.begin());
      uint32_t r = entries[i].last == 65535 ? uint32_t(b.size()) : uint32_t(std::lower_bound(b.begin(), b.end(), entries[i].last + 1) - b.begin());
      for (uint32_t j = find(l); j < r; j = find(j)) {
        s.firsts[base + j] = entries[i].pos;
        next[j] = j + 1;
      }
    }
    g = end;
  }
  s.protoStart.push_back(uint32_t(s.bounds.size()));
}

template <class A>
void BuildSummaries(PeerTree<A>& t, const Slot* list, const Triple* triples, uint32_t minRules, uint64_t budgetWords, uint64_t* usedWords) {
  for (uint32_t node = 1; node < 2 * t.size; node++) {
    uint32_t k = t.start[node], e = t.start[node + 1];
    if (e - k < minRules || e == k) continue;
    if (t.summaryOf.empty()) {
      if (*usedWords + 2 * t.size > budgetWords) return;
      t.summaryOf.assign(2 * t.size, kNone);
      *usedWords += 2 * t.size;
    }
    PortSummary s;
    BuildSummary(s, t.items.data() + k, e - k, list, triples);
    if (*usedWords + s.Words() > budgetWords) return;
    *usedWords += s.Words();
    t.summaryOf[node] = uint32_t(t.summaries.size());
    t.summaries.push_back(std::move(s));
  }
}

class Loader {
 public:
  Loader(const uint8_t* data, size_t length) : p_(data), len_(length) {}

  std::string error;

  std::unique_ptr<Image> Load(uint32_t indexMinRules, uint32_t portIndexMinRules) {
    auto img = std::make_unique<Image>();
    if (!Header() || !Strings(*img) || !Ranges(*img) || !Ports(*img) || !Rules(*img) || !Tables(*img) ||
        !Endpoints(*img) || !Addresses(*img)) {
      return nullptr;
    }
    BuildIndexes(*img, indexMinRules, portIndexMinRules);
    return img;
  }

 private:
  const uint8_t* p_;
  size_t len_;
  uint64_t off_[kSectionCount] = {};
  uint32_t cnt_[kSectionCount] = {};
  std::vector<PrefixSetRec> sets_;
  std::vector<MatcherRec> matchers_;

  bool Fail(const std::string& m) {
    error = "rule image: " + m;
    return false;
  }
  const uint8_t* El(int s, uint64_t i) const { return p_ + off_[s] + i * kElementBytes[s]; }
  static std::string Where(int s, uint64_t i) { return std::string(kSectionNames[s]) + "[" + std::to_string(i) + "]"; }
  bool Span(int s, uint64_t first, uint64_t count, int owner, uint64_t i) {
    if (first + count > cnt_[s]) {
      return Fail(Where(owner, i) + ": " + kSectionNames[s] + " span [" + std::to_string(first) + ", +" +
                  std::to_string(count) + ") is outside the section (" + std::to_string(cnt_[s]) + ")");
    }
    return true;
  }
  bool Ref(int s, uint32_t v, int owner, uint64_t i) {
    if (v >= cnt_[s]) {
      return Fail(Where(owner, i) + ": " + kSectionNames[s] + " index " + std::to_string(v) + " is out of range (" +
                  std::to_string(cnt_[s]) + ")");
    }
    return true;
  }
  bool Zero32(const uint8_t* at, int owner, uint64_t i) {
    return Le32(at) == 0 || Fail(Where(owner, i) + ": reserved field is not 0");
  }

  bool Header() {
    if (len_ < kHeaderBytes) return Fail(std::to_string(len_) + " bytes is shorter than the 136-byte header");
    if (Le32(p_) != kMagic) return Fail("bad magic");
    if (Le16(p_ + 4) != kVersion) {
      return Fail("version " + std::to_string(Le16(p_ + 4)) + " is not " + std::to_string(kVersion));
    }
    if (Le16(p_ + 6) != kSectionCount) return Fail("section count " + std::to_string(Le16(p_ + 6)) + " is not 15");
    if (Le32(p_ + 8) != len_) {
      return Fail("header says " + std::to_string(Le32(p_ + 8)) + " bytes, the buffer has " + std::to_string(len_));
    }
    if (Le32(p_ + 12) != 0) return Fail("reserved header field is not 0");
    uint64_t at = kHeaderBytes;
    for (uint32_t s = 0; s < kSectionCount; s++) {
      off_[s] = Le32(p_ + 16 + s * 8);
      cnt_[s] = Le32(p_ + 20 + s * 8);
      if (off_[s] != at) {
        return Fail(std::string("section ") + kSectionNames[s] + " is at " + std::to_string(off_[s]) + ", not " +
                    std::to_string(at));
      }
      if (cnt_[s] == kNone) return Fail(std::string("section ") + kSectionNames[s] + " count is 2^32-1");
      at = (at + cnt_[s] * kElementBytes[s] + 7) & ~uint64_t(7);
      if (at > len_) return Fail(std::string("section ") + kSectionNames[s] + " runs past the end of the image");
    }
    if (at != len_) return Fail("the sections end at " + std::to_string(at) + ", the image at " + std::to_string(len_));
    return true;
  }

  bool Strings(Image& img) {
    for (uint64_t i = 0; i < cnt_[STRINGS]; i++) {
      const uint8_t* e = El(STRINGS, i);
      if (uint64_t(Le32(e)) + Le32(e + 4) > cnt_[STRING_BYTES]) return Fail(Where(STRINGS, i) + ": runs past STRING_BYTES");
    }
    img.strings = cnt_[STRINGS];
    return true;
  }

  bool Ranges(Image& img) {
    img.ranges4.resize(cnt_[RANGES4]);
    for (uint64_t i = 0; i < cnt_[RANGES4]; i++) {
      const uint8_t* e = El(RANGES4, i);
      img.ranges4[i] = {Le32(e), Le32(e + 4)};
      if (img.ranges4[i].first > img.ranges4[i].last) return Fail(Where(RANGES4, i) + ": ends before it starts");
    }
    img.ranges6.resize(cnt_[RANGES6]);
    for (uint64_t i = 0; i < cnt_[RANGES6]; i++) {
      const uint8_t* e = El(RANGES6, i);
      img.ranges6[i] = {Le128(e), Le128(e + 16)};
      if (img.ranges6[i].first > img.ranges6[i].last) return Fail(Where(RANGES6, i) + ": ends before it starts");
    }
    sets_.resize(cnt_[PREFIX_SETS]);
    for (uint64_t i = 0; i < cnt_[PREFIX_SETS]; i++) {
      const uint8_t* e = El(PREFIX_SETS, i);
      PrefixSetRec s = {Le32(e), Le32(e + 4), Le32(e + 8), Le32(e + 12)};
      if (!Span(RANGES4, s.first4, s.count4, PREFIX_SETS, i) || !Span(RANGES6, s.first6, s.count6, PREFIX_SETS, i)) return false;
      for (uint64_t k = s.first4 + 1; k < uint64_t(s.first4) + s.count4; k++) {
        if (img.ranges4[k].first <= img.ranges4[k - 1].last) return Fail(Where(PREFIX_SETS, i) + ": ranges are not ascending and disjoint");
      }
      for (uint64_t k = s.first6 + 1; k < uint64_t(s.first6) + s.count6; k++) {
        if (img.ranges6[k].first <= img.ranges6[k - 1].last) return Fail(Where(PREFIX_SETS, i) + ": ranges are not ascending and disjoint");
      }
      sets_[i] = s;
    }
    img.prefixSets = cnt_[PREFIX_SETS];
    return true;
  }

  bool Ports(Image& img) {
    img.triples.resize(cnt_[TRIPLES]);
    for (uint64_t i = 0; i < cnt_[TRIPLES]; i++) {
      const uint8_t* e = El(TRIPLES, i);
      if (e[1] != 0 || Le16(e + 6) != 0) return Fail(Where(TRIPLES, i) + ": reserved field is not 0");
      img.triples[i] = {e[0], Le16(e + 2), Le16(e + 4)};
    }
    img.dests4.resize(cnt_[DESTS4]);
    for (uint64_t i = 0; i < cnt_[DESTS4]; i++) {
      const uint8_t* e = El(DESTS4, i);
      Dest4 d = {Le32(e), Le32(e + 4), Le32(e + 8)};
      if (!Zero32(e + 12, DESTS4, i) || !Span(TRIPLES, d.first, d.count, DESTS4, i)) return false;
      img.dests4[i] = d;
    }
    img.dests6.resize(cnt_[DESTS6]);
    for (uint64_t i = 0; i < cnt_[DESTS6]; i++) {
      const uint8_t* e = El(DESTS6, i);
      Dest6 d = {Le128(e), Le32(e + 16), Le32(e + 20)};
      if (!Span(TRIPLES, d.first, d.count, DESTS6, i)) return false;
      img.dests6[i] = d;
    }
    matchers_.resize(cnt_[PORT_MATCHERS]);
    for (uint64_t i = 0; i < cnt_[PORT_MATCHERS]; i++) {
      const uint8_t* e = El(PORT_MATCHERS, i);
      MatcherRec m = {Le32(e), Le32(e + 4), Le32(e + 8), Le32(e + 12), Le32(e + 16), Le32(e + 20)};
      if (!Span(TRIPLES, m.firstTriple, m.triples, PORT_MATCHERS, i) || !Span(DESTS4, m.first4, m.count4, PORT_MATCHERS, i) ||
          !Span(DESTS6, m.first6, m.count6, PORT_MATCHERS, i)) {
        return false;
      }
      for (uint64_t k = m.first4 + 1; k < uint64_t(m.first4) + m.count4; k++) {
        if (img.dests4[k].address <= img.dests4[k - 1].address) return Fail(Where(PORT_MATCHERS, i) + ": destinations are not ascending");
      }
      for (uint64_t k = m.first6 + 1; k < uint64_t(m.first6) + m.count6; k++) {
        if (img.dests6[k].address <= img.dests6[k - 1].address) return Fail(Where(PORT_MATCHERS, i) + ": destinations are not ascending");
      }
      matchers_[i] = m;
    }
    img.portMatchers = cnt_[PORT_MATCHERS];
    return true;
  }

  bool Rules(Image& img) {
    img.rules.resize(cnt_[RULES]);
    for (uint64_t i = 0; i < cnt_[RULES]; i++) {
      const uint8_t* e = El(RULES, i);
      uint32_t peer = Le32(e + 8), ports = Le32(e + 12);
      if (!Ref(STRINGS, Le32(e), RULES, i) || !Ref(STRINGS, Le32(e + 4), RULES, i)) return false;
      if (e[16] > kActionPass) return Fail(Where(RULES, i) + ": action " + std::to_string(e[16]) + " is not 0, 1 or 2");
      if (e[17] > kMaxTier) return Fail(Where(RULES, i) + ": tier " + std::to_string(e[17]) + " is not 0, 1 or 2");
      if (Le16(e + 18) != 0 || !Zero32(e + 20, RULES, i)) return Fail(Where(RULES, i) + ": reserved field is not 0");
      if (peer != kNone && !Ref(PREFIX_SETS, peer, RULES, i)) return false;
      if (ports != kNone && !Ref(PORT_MATCHERS, ports, RULES, i)) return false;
      Rule r = {};
      r.action = e[16];
      r.peerSet = peer;
      r.anyPeer = peer == kNone;
      r.anyPorts = ports == kNone;
      r.r4 = img.ranges4.data();
      r.r6 = img.ranges6.data();
      r.triples = img.triples.data();
      r.d4 = img.dests4.data();
      r.d6 = img.dests6.data();
      if (!r.anyPeer) {
        const PrefixSetRec& s = sets_[peer];
        r.r4 += s.first4;
        r.n4 = s.count4;
        r.r6 += s.first6;
        r.n6 = s.count6;
      }
      if (!r.anyPorts) {
        const MatcherRec& m = matchers_[ports];
        r.triples += m.firstTriple;
        r.nTriples = m.triples;
        r.d4 += m.first4;
        r.nd4 = m.count4;
        r.d6 += m.first6;
        r.nd6 = m.count6;
      }
      img.rules[i] = r;
    }
    return true;
  }

  bool Tables(Image& img) {
    img.refs.resize(cnt_[RULE_REFS]);
    for (uint64_t i = 0; i < cnt_[RULE_REFS]; i++) {
      img.refs[i] = Le32(El(RULE_REFS, i));
      if (!Ref(RULES, img.refs[i], RULE_REFS, i)) return false;
    }
    img.tables.resize(3 * size_t(cnt_[TABLES]));
    for (uint64_t i = 0; i < cnt_[TABLES]; i++) {
      const uint8_t* e = El(TABLES, i);
      Table& np = img.tables[3 * i + kTierNamespace];
      np.policyCount = Le32(e);
      np.first = Le32(e + 4);
      np.count = Le32(e + 8);
      Table& admin = img.tables[3 * i + kTierAdmin];
      admin.first = Le32(e + 12);
      admin.count = admin.policyCount = Le32(e + 16);
      Table& baseline = img.tables[3 * i + kTierBaseline];
      baseline.first = Le32(e + 20);
      baseline.count = baseline.policyCount = Le32(e + 24);
      if (!Zero32(e + 28, TABLES, i) || !Span(RULE_REFS, np.first, np.count, TABLES, i) ||
          !Span(RULE_REFS, admin.first, admin.count, TABLES, i) ||
          !Span(RULE_REFS, baseline.first, baseline.count, TABLES, i)) {
        return false;
      }
    }
    img.slots.resize(img.refs.size());
    for (size_t i = 0; i < img.refs.size(); i++) {
      const Rule& r = img.rules[img.refs[i]];
      Slot& s = img.slots[i];
      s = Slot{};
      s.rule = img.refs[i];
      s.anyPeer = r.anyPeer;
      s.anyPorts = r.anyPorts;
      s.hasDests = (r.nd4 | r.nd6) != 0;
      s.triples = uint32_t(r.triples - img.triples.data());
      s.nTriples = r.nTriples;
      if (r.nTriples > 0) {
        s.protocol0 = uint8_t(r.triples[0].protocol);
        s.first0 = r.triples[0].first;
        s.last0 = r.triples[0].last;
      }
      s.r4 = uint32_t(r.r4 - img.ranges4.data());
      s.n4 = r.n4;
      s.r6 = uint32_t(r.r6 - img.ranges6.data());
      s.n6 = r.n6;
    }
    return true;
  }

  bool Endpoints(Image& img) {
    img.endpoints.resize(cnt_[ENDPOINTS]);
    for (uint64_t i = 0; i < cnt_[ENDPOINTS]; i++) {
      const uint8_t* e = El(ENDPOINTS, i);
      Endpoint ep = {};
      ep.egress = Le32(e + 4);
      ep.ingress = Le32(e + 8);
      uint32_t node = Le32(e + 12);
      if (!Ref(STRINGS, Le32(e), ENDPOINTS, i) || !Ref(TABLES, ep.egress, ENDPOINTS, i) || !Ref(TABLES, ep.ingress, ENDPOINTS, i) ||
          (node != kNone && !Ref(PREFIX_SETS, node, ENDPOINTS, i))) {
        return false;
      }
      if (node != kNone) {
        const PrefixSetRec& s = sets_[node];
        ep.hasNode = true;
        ep.r4 = s.first4;
        ep.n4 = s.count4;
        ep.r6 = s.first6;
        ep.n6 = s.count6;
      }
      img.endpoints[i] = ep;
    }
    return true;
  }

  static int BitsFor(uint64_t n) {
    int bits = 1;
    while ((uint64_t(1) << bits) < 2 * n) bits++;
    return bits;
  }

  bool Addresses(Image& img) {
    uint32_t n4 = cnt_[ADDRESSES4], n6 = cnt_[ADDRESSES6];
    img.bits4 = BitsFor(n4);
    img.map4.assign(size_t(1) << img.bits4, Slot4{0, 0, 0, 0});
    for (uint64_t i = 0; i < n4; i++) {
      const uint8_t* e = El(ADDRESSES4, i);
      uint32_t a = Le32(e), ep = Le32(e + 4);
      if (!Ref(ENDPOINTS, ep, ADDRESSES4, i)) return false;
      if (i > 0 && a <= Le32(El(ADDRESSES4, i - 1))) return Fail(Where(ADDRESSES4, i) + ": not after the previous address");
      uint32_t mask = uint32_t(img.map4.size() - 1);
      uint32_t h = Hash64(a, img.bits4);
      while (img.map4[h].endpoint != 0) h = (h + 1) & mask;
      img.map4[h] = {a, ep + 1, img.endpoints[ep].egress, img.endpoints[ep].ingress};
    }
    img.bits6 = BitsFor(n6);
    img.map6.assign(size_t(1) << img.bits6, Slot6{0, 0, 0, 0});
    for (uint64_t i = 0; i < n6; i++) {
      const uint8_t* e = El(ADDRESSES6, i);
      u128 a = Le128(e);
      uint32_t ep = Le32(e + 16);
      if (!Ref(ENDPOINTS, ep, ADDRESSES6, i) || !Zero32(e + 20, ADDRESSES6, i)) return false;
      if (i > 0 && a <= Le128(El(ADDRESSES6, i - 1))) return Fail(Where(ADDRESSES6, i) + ": not after the previous address");
      uint32_t mask = uint32_t(img.map6.size() - 1);
      uint32_t h = Image::Hash6(a, img.bits6);
      while (img.map6[h].endpoint != 0) h = (h + 1) & mask;
      img.map6[h] = {a, ep + 1, img.endpoints[ep].egress, img.endpoints[ep].ingress};
    }
    img.addresses4 = n4;
    img.addresses6 = n6;
    return true;
  }

  // The classes of the peer sets `sets` (ascending PREFIX_SETS indices), as
  // PeerClasses.of in shared/policy/peer-classes.ts; false when they would
  // use more than the budget.
  template <class A, class RangesOf>
  static bool Sweep(const std::vector<uint32_t>& sets, RangesOf rangesOf, std::vector<A>& starts,
                    std::vector<uint32_t>& classes, std::map<std::vector<uint32_t>, uint32_t>& ids,
                    std::vector<std::vector<uint32_t>>& members, uint64_t budgetWords, uint64_t* used) {
    constexpr A kMax = ~A(0);
    struct Event { A at; uint32_t set; bool enters; };
    std::vector<Event> events;
    for (uint32_t s : sets) {
      rangesOf(s, [&](A first, A last) {
        events.push_back({first, s, true});
        if (last != kMax) events.push_back({A(last + 1), s, false});
      });
    }
    std::sort(events.begin(), events.end(), [](const Event& x, const Event& y) { return x.at < y.at; });
    std::set<uint32_t> active;
    starts.assign(1, A(0));
    classes.assign(1, 0);
    for (size_t i = 0; i < events.size();) {
      A at = events[i].at;
      for (; i < events.size() && events[i].at == at; i++) {
        if (events[i].enters) active.insert(events[i].set);
        else active.erase(events[i].set);
      }
      std::vector<uint32_t> key(active.begin(), active.end());
      auto found = ids.find(key);
      uint32_t c;
      if (found != ids.end()) {
        c = found->second;
      } else {
        *used += key.size() + 1;
        if (*used > budgetWords) return false;
        c = uint32_t(members.size());
        ids.emplace(key, c);
        members.push_back(std::move(key));
      }
      if (starts.back() == at) {
        classes.back() = c;
      } else {
        starts.push_back(at);
        classes.push_back(c);
      }
      *used += 1 + sizeof(A) / 4;
      if (*used > budgetWords) return false;
    }
    return true;
  }

  // Class indexes for the cluster-tier lists of at least indexMinRules rules
  // (TABLES' Admin and Baseline lists), over one PeerClasses of all their
  // peers. Within the budget; lists left without one get a peer index below.
  static void BuildClassIndexes(Image& img, uint32_t indexMinRules, uint32_t portIndexMinRules) {
    std::vector<uint64_t> spans;  // (first << 32 | count), distinct
    for (size_t i = 0; i < img.tables.size(); i++) {
      const Table& t = img.tables[i];
      if (i % 3 == kTierNamespace || t.count == 0 || t.count < indexMinRules) continue;
      spans.push_back((uint64_t(t.first) << 32) | t.count);
    }
    if (spans.empty()) return;
    std::sort(spans.begin(), spans.end());
    spans.erase(std::unique(spans.begin(), spans.end()), spans.end());
    std::vector<uint32_t> sets;
    for (uint64_t sp : spans) {
      for (uint32_t i = 0; i < uint32_t(sp); i++) {
        const Rule& r = img.rules[img.refs[uint32_t(sp >> 32) + i]];
        if (!r.anyPeer) sets.push_back(r.peerSet);
      }
    }
    std::sort(sets.begin(), sets.end());
    sets.erase(std::unique(sets.begin(), sets.end()), sets.end());
    // A set's ranges, from any rule that has it as its peer.
    std::map<uint32_t, const Rule*> ruleOf;
    for (const Rule& r : img.rules)
      if (!r.anyPeer) ruleOf.emplace(r.peerSet, &r);
    PeerClasses pc;
    std::map<std::vector<uint32_t>, uint32_t> ids{{std::vector<uint32_t>{}, 0u}};
    pc.members.emplace_back();
    uint64_t used = img.indexWords;
    auto ranges4 = [&](uint32_t s, auto&& fn) {
      const Rule* r = ruleOf[s];
      for (uint32_t k = 0; k < r->n4; k++) fn(r->r4[k].first, r->r4[k].last);
    };
    auto ranges6 = [&](uint32_t s, auto&& fn) {
      const Rule* r = ruleOf[s];
      for (uint32_t k = 0; k < r->n6; k++) fn(r->r6[k].first, r->r6[k].last);
    };
    if (!Sweep<uint32_t>(sets, ranges4, pc.starts4, pc.classes4, ids, pc.members, kIndexWordBudget, &used) ||
        !Sweep<u128>(sets, ranges6, pc.starts6, pc.classes6, ids, pc.members, kIndexWordBudget, &used)) {
      return;
    }
    const uint32_t classCount = uint32_t(pc.members.size());
    std::vector<std::pair<uint64_t, std::shared_ptr<ClassIndex>>> built;
    for (uint64_t sp : spans) {
      const uint32_t first = uint32_t(sp >> 32), count = uint32_t(sp);
      const Slot* list = img.slots.data() + first;
      auto x = std::make_shared<ClassIndex>();
      std::map<uint32_t, std::vector<uint32_t>> bySet;
      for (uint32_t i = 0; i < count; i++) {
        if (list[i].anyPeer) x->anyPeer.push_back(i);
        else bySet[img.rules[list[i].rule].peerSet].push_back(i);
      }
      uint64_t words = used + x->anyPeer.size() + 2 * uint64_t(classCount) + 1;
      if (words > kIndexWordBudget) break;
      std::map<std::vector<uint32_t>, uint32_t> groups;
      x->groupOf.resize(classCount);
      x->start.push_back(0);
      bool fits = true;
      for (uint32_t c = 0; c < classCount && fits; c++) {
        std::vector<uint32_t> positions;
        for (uint32_t set : pc.members[c]) {
          auto f = bySet.find(set);
          if (f != bySet.end()) positions.insert(positions.end(), f->second.begin(), f->second.end());
        }
        std::sort(positions.begin(), positions.end());
        auto g = groups.find(positions);
        if (g != groups.end()) {
          x->groupOf[c] = g->second;
          continue;
        }
        words += positions.size() + 2;
        if (words > kIndexWordBudget) fits = false;
        uint32_t id = uint32_t(x->start.size() - 1);
        x->groupOf[c] = id;
        x->items.insert(x->items.end(), positions.begin(), positions.end());
        x->start.push_back(uint32_t(x->items.size()));
        groups.emplace(std::move(positions), id);
      }
      if (!fits) break;
      const uint32_t groupCount = uint32_t(x->start.size() - 1);
      x->summaryOf.assign(groupCount, kNone);
      for (uint32_t g = 0; g < groupCount; g++) {
        uint32_t k = x->start[g], e = x->start[g + 1];
        if (e == k || e - k < portIndexMinRules) continue;
        PortSummary sm;
        BuildSummary(sm, x->items.data() + k, e - k, list, img.triples.data());
        if (words + sm.Words() > kIndexWordBudget) continue;
        words += sm.Words();
        x->summaryOf[g] = uint32_t(x->summaries.size());
        x->summaries.push_back(std::move(sm));
      }
      if (!x->anyPeer.empty() && x->anyPeer.size() >= portIndexMinRules) {
        auto sm = std::make_unique<PortSummary>();
        BuildSummary(*sm, x->anyPeer.data(), x->anyPeer.size(), list, img.triples.data());
        if (words + sm->Words() <= kIndexWordBudget) {
          words += sm->Words();
          x->anyPeerPorts = std::move(sm);
        }
      }
      used = words;
      built.emplace_back(sp, std::move(x));
    }
    if (built.empty()) return;
    img.peerClasses = std::move(pc);
    img.indexWords = used;
    for (size_t i = 0; i < img.tables.size(); i++) {
      Table& t = img.tables[i];
      if (i % 3 == kTierNamespace || t.count == 0) continue;
      uint64_t sp = (uint64_t(t.first) << 32) | t.count;
      auto f = std::lower_bound(built.begin(), built.end(), sp, [](const auto& e, uint64_t k) { return e.first < k; });
      if (f != built.end() && f->first == sp) {
        t.classes = f->second;
        img.classIndexedTables++;
      }
    }
  }

  static void BuildIndexes(Image& img, uint32_t indexMinRules, uint32_t portIndexMinRules) {
    BuildClassIndexes(img, indexMinRules, portIndexMinRules);
    std::vector<std::pair<uint64_t, std::shared_ptr<PeerIndex>>> built;  // (first << 32 | count) -> index
    auto span = [](const Table& t) { return (uint64_t(t.first) << 32) | t.count; };
    for (Table& t : img.tables) {
      if (t.policyCount == 0 || t.count < indexMinRules || t.classes) continue;
      auto same = std::lower_bound(built.begin(), built.end(), span(t),
                                   [](const auto& e, uint64_t k) { return e.first < k; });
      if (same != built.end() && same->first == span(t)) {
        t.index = same->second;
        if (t.index) img.indexedTables++;
        continue;
      }
      // A list that cannot be indexed is remembered too: scanned, not retried.
      auto unindexed = [&] { built.insert(same, {span(t), nullptr}); };
      const uint32_t* list = img.refs.data() + t.first;
      uint64_t ranges = 0;
      for (uint32_t i = 0; i < t.count; i++) ranges += uint64_t(img.rules[list[i]].n4) + img.rules[list[i]].n6;
      if (ranges > kMaxPeerRangesPerTable) {
        unindexed();
        continue;
      }
      auto x = std::make_unique<PeerIndex>();
      for (uint32_t i = 0; i < t.count; i++) {
        if (img.rules[list[i]].anyPeer) x->anyPeer.push_back(i);
      }
      uint64_t used = img.indexWords + x->anyPeer.size();
      auto each4 = [&](auto&& fn) {
        for (uint32_t i = 0; i < t.count; i++) {
          const Rule& r = img.rules[list[i]];
          for (uint32_t k = 0; k < r.n4; k++) fn(i, r.r4[k].first, r.r4[k].last);
        }
      };
      auto each6 = [&](auto&& fn) {
        for (uint32_t i = 0; i < t.count; i++) {
          const Rule& r = img.rules[list[i]];
          for (uint32_t k = 0; k < r.n6; k++) fn(i, r.r6[k].first, r.r6[k].last);
        }
      };
      if (!BuildTree(x->t4, each4, kIndexWordBudget, &used) || !BuildTree(x->t6, each6, kIndexWordBudget, &used)) {
        unindexed();
        continue;
      }
      const Slot* slots = img.slots.data() + t.first;
      if (x->anyPeer.size() >= portIndexMinRules && !x->anyPeer.empty()) {
        x->anyPeerPorts = std::make_unique<PortSummary>();
        BuildSummary(*x->anyPeerPorts, x->anyPeer.data(), x->anyPeer.size(), slots, img.triples.data());
        used += x->anyPeerPorts->Words();
      }
      BuildSummaries(x->t4, slots, img.triples.data(), portIndexMinRules, kIndexWordBudget, &used);
      BuildSummaries(x->t6, slots, img.triples.data(), portIndexMinRules, kIndexWordBudget, &used);
      img.indexWords = used;
      t.index = std::move(x);
      img.indexedTables++;
      built.insert(std::lower_bound(built.begin(), built.end(), span(t),
                                    [](const auto& e, uint64_t k) { return e.first < k; }),
                   {span(t), t.index});
    }
  }
};

// Pointer and length of the bytes behind an ArrayBuffer or any view; false otherwise.
bool BytesOf(napi_env env, napi_value v, const uint8_t** data, size_t* length) {
  bool is = false;
  if (napi_is_arraybuffer(env, v, &is) == napi_ok && is) {
    void* d = nullptr;
    if (napi_get_arraybuffer_info(env, v, &d, length) != napi_ok) return false;
    *data = static_cast<const uint8_t*>(d);
    return true;
  }
  if (napi_is_typedarray(env, v, &is) == napi_ok && is) {
    napi_typedarray_type type;
    size_t elements = 0;
    void* d = nullptr;
    if (napi_get_typedarray_info(env, v, &type, &elements, &d, nullptr, nullptr) != napi_ok) return false;
    size_t width = 1;
    switch (type) {
      case napi_int16_array: case napi_uint16_array: width = 2; break;
      case napi_int32_array: case napi_uint32_array: case napi_float32_array: width = 4; break;
      case napi_float64_array: case napi_bigint64_array: case napi_biguint64_array: width = 8; break;
      default: width = 1;
    }
    *data = static_cast<const uint8_t*>(d);
    *length = elements * width;
    return true;
  }
  if (napi_is_dataview(env, v, &is) == napi_ok && is) {
    void* d = nullptr;
    if (napi_get_dataview_info(env, v, length, &d, nullptr, nullptr) != napi_ok) return false;
    *data = static_cast<const uint8_t*>(d);
    return true;
  }
  return false;
}

// Marks RuleEvaluator objects, so RuleEvaluatorImage() unwraps only those.
const napi_type_tag kRuleEvaluatorTag = {0x7765697272756c65ull, 0x6576616c75617472ull};

class RuleEvaluator : public Napi::ObjectWrap<RuleEvaluator> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "RuleEvaluator",
                       {InstanceMethod<&RuleEvaluator::Evaluate>("evaluate"), InstanceMethod<&RuleEvaluator::Info>("info"),
                        InstanceMethod<&RuleEvaluator::Dispose>("dispose"),
                        StaticValue("imageVersion", Napi::Number::New(env, kVersion))});
  }

  explicit RuleEvaluator(const Napi::CallbackInfo& info) : Napi::ObjectWrap<RuleEvaluator>(info) {
    Napi::Env env = info.Env();
    // Options first: reading them may run a getter, which could detach the image's buffer.
    uint32_t indexMinRules = kDefaultIndexMinRules;
    uint32_t portIndexMinRules = kDefaultPortIndexMinRules;
    if (info.Length() >= 2 && !info[1].IsUndefined()) {
      if (!info[1].IsObject()) {
        Napi::TypeError::New(env, "RuleEvaluator: options must be an object").ThrowAsJavaScriptException();
        return;
      }
      if (!ReadCount(env, info[1].As<Napi::Object>(), "indexMinRules", &indexMinRules) ||
          !ReadCount(env, info[1].As<Napi::Object>(), "portIndexMinRules", &portIndexMinRules)) {
        return;
      }
    }
    const uint8_t* data = nullptr;
    size_t length = 0;
    if (info.Length() < 1 || !BytesOf(env, info[0], &data, &length)) {
      Napi::TypeError::New(env, "RuleEvaluator: the image must be an ArrayBuffer or a view of one").ThrowAsJavaScriptException();
      return;
    }
    if (data == nullptr) length = 0;
    Loader loader(data, length);
    image_ = loader.Load(indexMinRules, portIndexMinRules);
    if (!image_) {
      Napi::Error::New(env, loader.error).ThrowAsJavaScriptException();
      return;
    }
    external_ = int64_t(image_->Bytes());
    Napi::MemoryManagement::AdjustExternalMemory(env, external_);
    napi_type_tag_object(env, Value(), &kRuleEvaluatorTag);
  }

  void Finalize(Napi::Env env) override { Release(env); }

 private:
  // Reads an optional u32 option; false (with an exception pending) when it is not one.
  static bool ReadCount(Napi::Env env, Napi::Object options, const char* name, uint32_t* value) {
    Napi::Value v = options.Get(name);
    if (env.IsExceptionPending()) return false;
    if (v.IsUndefined()) return true;
    double d = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : -1;
    if (!(d >= 0 && d <= 4294967295.0) || std::floor(d) != d) {
      Napi::TypeError::New(env, std::string("RuleEvaluator: ") + name + " must be an integer in [0, 2^32)").ThrowAsJavaScriptException();
      return false;
    }
    *value = uint32_t(d);
    return true;
  }

  // Shared so that a verdict thread (nfqueue.cc) can keep evaluating the
  // image it holds while JavaScript disposes of this object or loads another.
  std::shared_ptr<const Image> image_;
  int64_t external_ = 0;

  friend std::shared_ptr<const void> weir::RuleEvaluatorImage(napi_env env, napi_value value);

  void Release(Napi::Env env) {
    image_.reset();
    if (external_ != 0) {
      Napi::MemoryManagement::AdjustExternalMemory(env, -external_);
      external_ = 0;
    }
  }

  Napi::Value Evaluate(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!image_) {
      Napi::Error::New(env, "RuleEvaluator: disposed").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    const uint8_t* packets = nullptr;
    size_t packetBytes = 0;
    if (info.Length() < 3 || !BytesOf(env, info[0], &packets, &packetBytes)) {
      Napi::TypeError::New(env, "evaluate(packets, count, out): packets must be an ArrayBuffer or a view of one").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    double d = info[1].IsNumber() ? info[1].As<Napi::Number>().DoubleValue() : -1;
    if (!(d >= 0 && d <= 2147483647.0) || std::floor(d) != d) {
      Napi::TypeError::New(env, "evaluate(packets, count, out): count must be an integer in [0, 2^31)").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    uint32_t count = uint32_t(d);
    if (!info[2].IsTypedArray() || info[2].As<Napi::TypedArray>().TypedArrayType() != napi_int32_array) {
      Napi::TypeError::New(env, "evaluate(packets, count, out): out must be an Int32Array").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    Napi::Int32Array out = info[2].As<Napi::Int32Array>();
    if (packets == nullptr) packetBytes = 0;
    if (uint64_t(packetBytes) < uint64_t(count) * kRecordBytes) {
      Napi::RangeError::New(env, "evaluate: packets holds " + std::to_string(packetBytes) + " bytes, " + std::to_string(count) +
                                     " records need " + std::to_string(uint64_t(count) * kRecordBytes))
          .ThrowAsJavaScriptException();
      return env.Undefined();
    }
    if (uint64_t(out.ElementLength()) < uint64_t(count) * kResultStride || (count > 0 && out.Data() == nullptr)) {
      Napi::RangeError::New(env, "evaluate: out holds " + std::to_string(out.ElementLength()) + " Int32 values, " +
                                     std::to_string(count) + " results need " + std::to_string(uint64_t(count) * kResultStride))
          .ThrowAsJavaScriptException();
      return env.Undefined();
    }
    uint32_t allowed = count == 0 ? 0 : EvaluateBatch(*image_, packets, count, out.Data());
    return Napi::Number::New(env, allowed);
  }

  Napi::Value Info(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Object o = Napi::Object::New(env);
    o.Set("disposed", Napi::Boolean::New(env, !image_));
    if (!image_) return o;
    const Image& m = *image_;
    o.Set("endpoints", double(m.endpoints.size()));
    o.Set("addresses4", double(m.addresses4));
    o.Set("addresses6", double(m.addresses6));
    o.Set("tables", double(m.tables.size() / 3));
    o.Set("ruleLists", double(m.tables.size()));
    o.Set("indexedTables", double(m.indexedTables));
    o.Set("classIndexedTables", double(m.classIndexedTables));
    o.Set("peerClasses", double(m.peerClasses.members.size()));
    o.Set("rules", double(m.rules.size()));
    o.Set("ruleRefs", double(m.refs.size()));
    o.Set("prefixSets", double(m.prefixSets));
    o.Set("ranges4", double(m.ranges4.size()));
    o.Set("ranges6", double(m.ranges6.size()));
    o.Set("portMatchers", double(m.portMatchers));
    o.Set("triples", double(m.triples.size()));
    o.Set("dests4", double(m.dests4.size()));
    o.Set("dests6", double(m.dests6.size()));
    o.Set("strings", double(m.strings));
    o.Set("indexWords", double(m.indexWords));
    o.Set("nativeBytes", double(m.Bytes()));
    return o;
  }

  Napi::Value Dispose(const Napi::CallbackInfo& info) {
    Release(info.Env());
    return info.Env().Undefined();
  }
};

}  // namespace

// For the other native parts (nfqueue.cc, conntrack.cc): the loaded image of
// a RuleEvaluator object, shared (null for anything else, or once disposed),
// and batch evaluation of it, usable from any thread: an image is immutable.
std::shared_ptr<const void> RuleEvaluatorImage(napi_env env, napi_value value) {
  bool is = false;
  if (napi_check_object_type_tag(env, value, &kRuleEvaluatorTag, &is) != napi_ok || !is) return nullptr;
  RuleEvaluator* e = RuleEvaluator::Unwrap(Napi::Object(env, value));
  return e == nullptr ? nullptr : std::shared_ptr<const void>(e->image_);
}

uint32_t EvaluateRecords(const void* image, const uint8_t* records, uint32_t count, int32_t* out) {
  return count == 0 ? 0 : EvaluateBatch(*static_cast<const Image*>(image), records, count, out);
}

bool ResultDenies(const void* image, int32_t code) {
  return static_cast<const Image*>(image)->Denies(code);
}

Napi::Object InitRuleEval(Napi::Env env, Napi::Object exports) {
  exports.Set("RuleEvaluator", RuleEvaluator::Define(env));
  return exports;
}

}  // namespace weir
