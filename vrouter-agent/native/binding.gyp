{
  "targets": [
    {
      "target_name": "weir_native",
      "sources": ["src/addon.cc", "src/flow_table.cc", "src/rule_eval.cc"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_DISABLE_CPP_EXCEPTIONS"],
      "cflags_cc": ["-std=c++17", "-O3", "-fno-exceptions", "-Wall", "-Wextra"],
      "cflags_cc!": ["-fno-rtti"]
    }
  ]
}
