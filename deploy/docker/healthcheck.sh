#!/bin/bash
# wsgw-healthcheck [PORT] [PATH]: exit 0 when GET http://127.0.0.1:PORT/PATH answers 200 within
# 2 s, 1 otherwise. bash's /dev/tcp, so the image needs no curl. Defaults: 8080 /healthz.
# ws-gateway: 8080 /healthz (alive) or /readyz (an API node connected); ws-api: 8082 /healthz.
port=${1:-8080}
path=${2:-/healthz}
exec 3<>"/dev/tcp/127.0.0.1/$port" || exit 1
printf 'GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' "$path" >&3
IFS= read -r -t 2 status <&3 || exit 1
case "$status" in
    "HTTP/1."[01]" 200"*) exit 0 ;;
    *) echo "wsgw-healthcheck: $path on port $port: ${status%$'\r'}" >&2; exit 1 ;;
esac
