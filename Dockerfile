# syntax=docker/dockerfile:1
# One image for every role: the entry is `damselfly`, the role is the subcommand.
#   docker build -t damselfly .
#   docker run --rm damselfly scheduler --config /etc/damselfly/scheduler.yaml
# Both stages use the same base (the current Node LTS; package.json engines still admit Node 20) so better-sqlite3, a native module, is compiled for the runtime's
# Node and glibc.

FROM node:24-bookworm-slim AS build
WORKDIR /src
# better-sqlite3 builds from source when no prebuilt binary can be fetched.
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY adapters ./adapters
COPY agent ./agent
COPY control ./control
COPY scheduler ./scheduler
RUN npm run build \
 && npm prune --omit=dev --no-audit --no-fund

FROM node:24-bookworm-slim AS runtime
ENV NODE_ENV=production
WORKDIR /app
COPY --from=build --chown=root:root /src/package.json ./package.json
COPY --from=build --chown=root:root /src/node_modules ./node_modules
COPY --from=build --chown=root:root /src/dist ./dist
COPY --chown=root:root infra/docker/healthcheck.mjs ./healthcheck.mjs
# State (the embedded SQLite store, the piece cache) lives under /var/lib/damselfly and the agent's
# socket under /var/run/damselfly, both owned by the unprivileged `node` user that every role runs
# as by default. The agent runs as root only where it writes on the node itself: containerd's
# hosts.toml (Kubernetes init container) and host-path cache/socket in the DaemonSet.
RUN mkdir -p /var/lib/damselfly/cache /var/lib/damselfly/store /var/lib/damselfly/manager /var/run/damselfly /etc/damselfly \
 && chown -R node:node /var/lib/damselfly /var/run/damselfly
USER node
# manager 8080; scheduler 8002 (+metrics 8000); agent 4000 gRPC, 4001 mirror/proxy, 4002 metrics, 4005 pieces
EXPOSE 8080 8002 8000 4000 4001 4002 4005
# The check finds the role from PID 1's arguments and probes that role's port.
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 CMD ["node", "/app/healthcheck.mjs"]
ENTRYPOINT ["node", "/app/dist/control/cli.js"]
CMD ["--help"]
