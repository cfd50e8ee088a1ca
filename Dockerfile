# The Weir image: weir-controller, weir-agent and weirctl, one entrypoint.
#   docker build -t weir .
#   docker run --rm weir weir-controller --help
# Kubernetes runs it as deploy/base says: args [weir-controller, ...] as user
# 65532, args [weir-agent, ...] as root with only CAP_NET_ADMIN (the kernel
# datapath: nftables, NFQUEUE and conntrack over netlink).
#
# Node.js 24 LTS (supported to April 2028), pinned by exact version on
# Debian 12. Pin the digest as well where you build (docker buildx imagetools
# inspect node:24.11.0-bookworm-slim), e.g. FROM node:24.11.0-bookworm-slim@sha256:...

# --- build: the TypeScript, the protobuf types and the native addon ---------
FROM node:24.11.0-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends python3 make g++ pkg-config \
      libnetfilter-queue-dev libnetfilter-conntrack-dev libmnl-dev libnfnetlink-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY package.json package-lock.json tsconfig.json ./
COPY scripts scripts
COPY proto proto
COPY shared shared
COPY controller controller
COPY vrouter-agent vrouter-agent
COPY cli cli
COPY bin bin
# The addon must build: without it the agent would run the TypeScript flow engine.
ENV WEIR_REQUIRE_NATIVE=1
RUN npm ci --no-audit --no-fund \
    && npm prune --omit=dev --no-audit --no-fund \
    && mkdir -p /app/vrouter-agent/native/build/Release \
    && cp -a package.json bin dist proto node_modules /app/ \
    && cp vrouter-agent/native/build/Release/weir_native.node /app/vrouter-agent/native/build/Release/

# --- runtime: the build, the netfilter libraries, nft and iptables ---------
# No sources (bin/ runs dist/), no compiler, no demo manifests: the controller
# must be given --in-cluster, --kubeconfig or --manifests.
FROM node:24.11.0-bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends \
      nftables iptables libnetfilter-queue1 libnetfilter-conntrack3 libmnl0 libnfnetlink0 \
    && rm -rf /var/lib/apt/lists/*
# (iptables: the fallback NFQUEUE rule through iptables-nft where nft lacks
# the queue statement; vrouter-agent/datapath/kernel-ruleset.ts.)
# Nothing installs packages at run time: no npm, npx or corepack.
RUN rm -rf /usr/local/lib/node_modules/npm /usr/local/lib/node_modules/corepack \
      /usr/local/bin/npm /usr/local/bin/npx /usr/local/bin/corepack
COPY --from=build /app /app
ENV NODE_ENV=production PATH=/app/bin:$PATH
WORKDIR /app
# The controller's user; the agent's pod runs as root (runAsUser: 0) because
# the kernel datapath refuses to start otherwise.
USER 65532:65532
ENTRYPOINT ["/app/bin/weir"]
CMD ["weir-controller", "--help"]
