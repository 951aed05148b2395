# syntax=docker/dockerfile:1
# One image for every Conveyor process; the command picks the part:
#   node dist/api/main.js | node dist/workers/main.js (WORKER_KINDS) | node dist/dashboard/main.js | node dist/main.js (all in one)

# --- build: type-check and compile TypeScript, then drop dev dependencies -----------------------------
FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund --loglevel=error
COPY tsconfig.json tsconfig.build.json main.ts ./
COPY shared ./shared
COPY api ./api
COPY workers ./workers
COPY dashboard ./dashboard
COPY modules ./modules
# tsc fails the build on a type error; non-TypeScript assets (SQL migrations) are copied beside the output.
RUN npx tsc -p tsconfig.build.json \
  && mkdir -p dist/shared/db/migrations \
  && cp shared/db/migrations/*.sql dist/shared/db/migrations/ \
  && for d in modules/*/migrations; do mkdir -p "dist/$d" && cp "$d"/*.sql "dist/$d/"; done \
  && npm prune --omit=dev --no-audit --no-fund --loglevel=error

# --- runtime -------------------------------------------------------------------------------------------
FROM node:20-bookworm-slim
ENV NODE_ENV=production \
    HOST=0.0.0.0 \
    PORT=3000 \
    DASHBOARD_PORT=3001 \
    METRICS_PORT=9464 \
    NODE_OPTIONS="--import /app/dist/shared/observability/tracing/register.js"
# NODE_OPTIONS: every `node dist/...` command loads the tracing register first (a no-op unless
# OTEL_TRACES_EXPORTER turns tracing on), so the instrumentations' module hooks see pg load.
WORKDIR /app
COPY --from=build --chown=node:node /app/package.json ./
COPY --from=build --chown=node:node /app/node_modules ./node_modules
COPY --from=build --chown=node:node /app/dist ./dist
USER node
# api, dashboard, worker metrics
EXPOSE 3000 3001 9464
# The processes handle SIGTERM themselves (graceful drain within SHUTDOWN_GRACE_MS); run them as PID 1
# directly, not under a shell that would swallow the signal.
CMD ["node", "dist/main.js"]
