{
  "variables": {
    # The kernel datapath's parts (NFQUEUE verdict loop, conntrack mirror) are
    # built when pkg-config finds the netfilter libraries; without them the
    # addon still builds, and the agent reports the kernel datapath as
    # unavailable and why.
    "netfilter%": "<!(pkg-config --exists libnetfilter_queue libnetfilter_conntrack libmnl libnfnetlink && echo 1 || echo 0)"
  },
  "targets": [
    {
      "target_name": "weir_native",
      "sources": ["src/addon.cc", "src/flow_table.cc", "src/rule_eval.cc"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_DISABLE_CPP_EXCEPTIONS"],
      "cflags_cc": ["-std=c++17", "-O3", "-fno-exceptions", "-Wall", "-Wextra"],
      "cflags_cc!": ["-fno-rtti"],
      "conditions": [
        [
          "netfilter==1",
          {
            "sources": ["src/nfqueue_common.cc", "src/nfqueue.cc", "src/conntrack.cc"],
            "defines": ["WEIR_NETFILTER=1"],
            "cflags_cc": ["<!@(pkg-config --cflags libnetfilter_queue libnetfilter_conntrack libmnl libnfnetlink)"],
            "libraries": ["<!@(pkg-config --libs libnetfilter_queue libnetfilter_conntrack libmnl libnfnetlink)"]
          }
        ]
      ]
    }
  ]
}
