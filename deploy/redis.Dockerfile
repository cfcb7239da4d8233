# deploy/redis.Dockerfile: Debian's redis-server for ws-api --redis (presence, the registry of
# gateways, pub/sub between ws-api nodes). Nothing is persisted: what Redis holds is rebuilt by
# the gateways when it comes back empty (README "Redis"), so a restart costs a resync, not data.
#   docker build -f deploy/redis.Dockerfile -t wsgw-redis .
ARG DEBIAN=bookworm
FROM debian:${DEBIAN}-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends redis-server \
    && rm -rf /var/lib/apt/lists/*
USER 10002:10002
EXPOSE 6379
HEALTHCHECK --interval=5s --timeout=3s --retries=5 CMD ["redis-cli", "ping"]
# protected mode off: it only allows loopback clients when no password is set; reach it on a
# private network (compose's, the cluster's) and set a password (--requirepass, and ws-api's
# WSAPI_REDIS_PASSWORD) where that network is shared
CMD ["redis-server", "--bind", "0.0.0.0", "--protected-mode", "no", "--save", "", \
     "--appendonly", "no", "--maxmemory-policy", "noeviction", "--tcp-keepalive", "30"]
