// The Weir native addon: the vRouter flow table and the first-packet rule
// evaluator. Each part registers its own exports; this file only wires them.
#include <napi.h>

namespace weir {
Napi::Object InitFlowTable(Napi::Env env, Napi::Object exports);
Napi::Object InitRuleEval(Napi::Env env, Napi::Object exports);
}  // namespace weir

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  weir::InitFlowTable(env, exports);
  weir::InitRuleEval(env, exports);
  return exports;
}

NODE_API_MODULE(weir_native, Init)
