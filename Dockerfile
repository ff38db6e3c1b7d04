# syntax=docker/dockerfile:1
# The vimmon image: the compiled JavaScript (dist/) on Node 24, run as the unprivileged `node` user
# (uid 1000). One image for every role; the argument names it (server, conductor, executor,
# inspector, or all). No secret is baked in: certificates, tokens, the database URL and the key come
# from the environment and mounted files at run time (deploy/kubernetes/).
#
#   docker build -t vimmon:0.1.0 .
#   docker run --rm vimmon:0.1.0 --help

# --- build: every dependency, the TypeScript compiler, then the runtime dependencies only ----------
FROM node:24-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json tsconfig.json tsconfig.build.json ./
COPY cli/ cli/
COPY client/ client/
COPY common/ common/
COPY conductor/ conductor/
COPY db/ db/
COPY executor/ executor/
COPY gen/ gen/
COPY inspector/ inspector/
COPY server/ server/
# `npm install`, not `npm ci`: the lock file lists buf's platform packages for every system and
# npm ci refuses it where one is missing. Its prepare script is the build (tsc -p tsconfig.build.json
# into dist/, with gen/descriptor.binpb); the explicit build below makes a missing compiler an error.
RUN npm install --no-audit --no-fund \
  && npm run build \
  && test -f dist/cli/main.js \
  && npm prune --omit=dev --no-audit --no-fund

# --- runtime --------------------------------------------------------------------------------------
FROM node:24-bookworm-slim
# ping: the executor's ICMP probes (unprivileged ICMP sockets; deploy/kubernetes/executor.yaml).
RUN apt-get update \
  && apt-get install -y --no-install-recommends iputils-ping \
  && rm -rf /var/lib/apt/lists/* \
  && mkdir -p /var/lib/vimmon \
  && chown node:node /var/lib/vimmon
ENV NODE_ENV=production \
  VIMMON_DATA_DIR=/var/lib/vimmon
WORKDIR /app
# Owned by root, read-only to the process: the code cannot be changed by what runs it.
COPY --from=build /app/package.json ./
COPY --from=build /app/node_modules/ node_modules/
COPY --from=build /app/dist/ dist/
COPY deploy/kubernetes/grpc-health-probe.mjs deploy/kubernetes/
# Without DATABASE_URL, `vimmon all` keeps an embedded PostgreSQL here.
VOLUME ["/var/lib/vimmon"]
USER 1000:1000
# gRPC: server, conductor, executor, inspector; the inspector's Doctor endpoint; /metrics of
# `vimmon all` and of each role run alone.
EXPOSE 50051 50052 50053 50054 12345 9460 9461 9462 9463 9464
ENTRYPOINT ["node", "dist/cli/main.js"]
CMD ["all"]
