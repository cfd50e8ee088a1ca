#include <napi.h>

namespace weir {
// Placeholder until the native evaluator lands: registers nothing.
Napi::Object InitRuleEval(Napi::Env, Napi::Object exports) { return exports; }
}  // namespace weir
