# The Weir image: controller, agent and weirctl. Build: docker build -t weir .
FROM node:20-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends python3 make g++ \
      libnetfilter-queue-dev libnetfilter-conntrack-dev libnftables-dev libmnl-dev pkg-config \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY package.json package-lock.json ./
COPY scripts scripts
COPY proto proto
COPY tsconfig.json ./
COPY shared shared
COPY controller controller
COPY vrouter-agent vrouter-agent
COPY cli cli
COPY bin bin
COPY deploy/examples deploy/examples
ENV WEIR_REQUIRE_NATIVE=1
RUN npm ci --no-audit --no-fund && npm prune --omit=dev

FROM node:20-bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends nftables iptables conntrack \
      libnetfilter-queue1 libnetfilter-conntrack3 libnftables1 libmnl0 \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY --from=build /app /app
ENV PATH=/app/bin:$PATH
ENTRYPOINT ["node"]
