#include <napi.h>

namespace weir {
// Placeholder until the flow table lands: registers nothing.
Napi::Object InitFlowTable(Napi::Env, Napi::Object exports) { return exports; }
}  // namespace weir
