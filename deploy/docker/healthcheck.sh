#!/bin/bash
# wsgw-healthcheck [PORT [PATH]]: exit 0 when GET http://127.0.0.1:PORT/PATH answers 200 within
# 2 s, 1 otherwise. bash's /dev/tcp, so the image needs no curl.
#
# Without arguments (the image's HEALTHCHECK) it probes the program the container runs, read
# from the command line and environment of process HEALTHCHECK_PID (default 1, the container's
# main process):
#   ws-gateway  --listen / WSGW_LISTEN (default 0.0.0.0:8080), /healthz
#   ws-api      --http-listen / WSAPI_HTTP_LISTEN (default 0.0.0.0:8082), /healthz
#   anything else (ws-bench, a shell): healthy, there is no server to probe.
# Compose and Kubernetes name the port and path themselves (ws-gateway /readyz: an API node is
# connected). A program serving its HTTP port with TLS needs a probe that speaks TLS.

probe() { # port path
    exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
    printf 'GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' "$2" >&3
    IFS= read -r -t 2 status <&3 || exit 1
    case "$status" in
        "HTTP/1."[01]" 200"*) exit 0 ;;
        *) echo "wsgw-healthcheck: $2 on port $1: ${status%$'\r'}" >&2; exit 1 ;;
    esac
}

[ $# -gt 0 ] && probe "$1" "${2:-/healthz}"

pid=${HEALTHCHECK_PID:-1}
mapfile -d '' argv <"/proc/$pid/cmdline" || exit 1
mapfile -d '' environ <"/proc/$pid/environ" 2>/dev/null
prog=${argv[0]##*/}
case "$prog" in
    ws-gateway) flag=--listen env=WSGW_LISTEN addr=0.0.0.0:8080 ;;
    ws-api) flag=--http-listen env=WSAPI_HTTP_LISTEN addr=0.0.0.0:8082 ;;
    *) exit 0 ;;
esac
# precedence as the programs have it: flag > environment > default
for e in "${environ[@]}"; do
    [ "${e%%=*}" = "$env" ] && addr=${e#*=}
done
for ((i = 1; i < ${#argv[@]}; i++)); do
    case "${argv[i]}" in
        "$flag") addr=${argv[i + 1]} ;;
        "$flag"=*) addr=${argv[i]#*=} ;;
    esac
done
probe "${addr##*:}" /healthz
