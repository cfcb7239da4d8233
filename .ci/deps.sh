#!/usr/bin/env bash
# .ci/deps.sh: installs the Debian packages wsgw needs, only those missing.
# Runs `apt-get update` once, and only when something must be installed. A no-op otherwise.
set -eu
missing=()
need_pkg() { # pkg-config module, Debian package
    pkg-config --exists "$1" 2>/dev/null || missing+=("$2")
}
need_cmd() { # command, Debian package
    command -v "$1" >/dev/null 2>&1 || missing+=("$2")
}
need_py() { # module, Debian package (Debian's python3 only)
    /usr/bin/python3 -c "import $1" >/dev/null 2>&1 || missing+=("$2")
}
need_file() { # path, Debian package
    [ -e "$1" ] || missing+=("$2")
}
need_cmd pkg-config pkg-config
need_cmd make make
need_cmd cc gcc
need_pkg libwebsockets libwebsockets-dev
need_pkg libnghttp2 libnghttp2-dev
need_pkg libprotobuf-c libprotobuf-c-dev
need_cmd protoc-c protobuf-c-compiler
need_pkg jansson libjansson-dev
need_pkg openssl libssl-dev
need_pkg libjwt libjwt-dev
need_pkg libuv libuv1-dev
# ws-api --redis: hiredis 0.14 (async, on ws-api's libuv loop); tests start Debian's redis-server
need_pkg hiredis libhiredis-dev
need_cmd redis-server redis-server
need_file /usr/include/ev.h libev-dev
need_file /usr/include/uthash.h uthash-dev
need_file /usr/bin/python3 python3
need_py grpc python3-grpcio
need_py grpc_tools python3-grpc-tools
need_py websockets python3-websockets
# the attack suite (tests/integration/test_attack_api.py) builds HTTP/2 header blocks with hpack
need_py h2 python3-h2
# test_inline_writers.py counts the gateway's system calls with strace -c
need_cmd strace strace
# test_unix_socket.py reads the send buffer of ws-api's Unix domain sockets with ss -xm
need_cmd ss iproute2
# test_deploy.py parses deploy/k8s/*.yaml and docker-compose.yml
need_py yaml python3-yaml
# test_gateway_hostnames.py resolves a test name to several loopback addresses without root
ldconfig -p 2>/dev/null | grep -q 'libnss_wrapper\.so' || missing+=(libnss-wrapper)
# the Go example API service (examples/go, tests/integration/test_examples.py), offline in
# GOPATH mode from Debian's Go packages
need_cmd go golang-go
need_cmd protoc protobuf-compiler
need_cmd protoc-gen-go protoc-gen-go
need_cmd protoc-gen-go-grpc protoc-gen-go-grpc
need_file /usr/share/gocode/src/google.golang.org/grpc golang-google-grpc-dev
need_file /usr/share/gocode/src/github.com/golang/protobuf golang-github-golang-protobuf-1-5-dev
need_cmd curl curl
need_cmd openssl openssl
need_cmd timeout coreutils
# docker-compose validates deploy/docker-compose.yml in tests/integration/test_deploy.py
# (`docker-compose config` only: no Docker engine is needed or used)
need_cmd docker-compose docker-compose
# promtool (Debian package prometheus) checks both /metrics outputs in
# tests/integration/test_metrics_promtool.py; the prometheus daemon itself is not started
need_cmd promtool prometheus
# clang for `make fuzz` (libFuzzer) and the clang build check
need_cmd clang clang
# gnuplot for the benchmark plots (make bench)
need_cmd gnuplot gnuplot-nox
# sslscan lists the TLS versions and suites wss:// accepts (tests/integration/test_attack_gateway_tls.py)
need_cmd sslscan sslscan
if [ ${#missing[@]} -eq 0 ]; then
    echo "deps: all present"
    exit 0
fi
echo "deps: installing ${missing[*]}"
SUDO=
[ "$(id -u)" -eq 0 ] || SUDO=sudo
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
