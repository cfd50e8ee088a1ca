// The Weir native addon: the vRouter flow table, the first-packet rule
// evaluator and, when built with the netfilter libraries, the kernel
// datapath's NFQUEUE verdict loop and conntrack mirror. Each part registers
// its own exports; this file only wires them.
#include <napi.h>

namespace weir {
Napi::Object InitFlowTable(Napi::Env env, Napi::Object exports);
Napi::Object InitRuleEval(Napi::Env env, Napi::Object exports);
#ifdef WEIR_NETFILTER
Napi::Object InitNfQueue(Napi::Env env, Napi::Object exports);
Napi::Object InitConntrack(Napi::Env env, Napi::Object exports);
#endif
}  // namespace weir

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  weir::InitFlowTable(env, exports);
  weir::InitRuleEval(env, exports);
#ifdef WEIR_NETFILTER
  weir::InitNfQueue(env, exports);
  weir::InitConntrack(env, exports);
#endif
  return exports;
}

NODE_API_MODULE(weir_native, Init)
