# syntax=docker/dockerfile:1
# Build stage: full dependencies, compile TypeScript, then drop dev dependencies.
FROM node:24-slim AS build
WORKDIR /app
# Toolchain for native addons that lack a prebuild for the target platform, and
# for keyward's own malloc_trim addon (native/malloc-trim.c, built by npm run build).
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make gcc g++ libc6-dev \
 && rm -rf /var/lib/apt/lists/*
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
COPY scripts/build-native.mjs ./scripts/build-native.mjs
COPY native ./native
RUN KEYWARD_REQUIRE_NATIVE=1 npm run build && npm prune --omit=dev --no-audit --no-fund

# Runtime stage: production dependencies and compiled code only, non-root.
FROM node:24-slim
ENV NODE_ENV=production \
    KEYWARD_LISTEN=0.0.0.0:50051 \
    KEYWARD_DATABASE_URL=sqlite:/data/keyward.db
WORKDIR /app
COPY --from=build --chown=node:node /app/package.json ./package.json
COPY --from=build --chown=node:node /app/node_modules ./node_modules
COPY --from=build --chown=node:node /app/dist ./dist
COPY --from=build --chown=node:node /app/build ./build
RUN mkdir -p /data && chown node:node /data
USER node
VOLUME ["/data"]
EXPOSE 50051
# keyward drains in-flight calls and flushes usage counts on SIGTERM.
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:50051/readyz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
# dist/main.js re-executes itself (same pid) with its V8 heap flags (src/v8-flags.ts; KEYWARD_V8_FLAGS).
CMD ["node", "dist/main.js"]
