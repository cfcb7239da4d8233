#!/usr/bin/env bash
# examples/go/build.sh [OUT]: builds the Go example API service into OUT/bin/api_server
# (OUT defaults to $BUILD/go-example, or build/go-example) from Debian's packages only, offline:
# protoc (protobuf-compiler) with protoc-gen-go and protoc-gen-go-grpc generates the stubs from
# proto/wsgw.proto into OUT (never into git), and the go command builds in GOPATH mode with
# GOPATH=OUT/gopath:/usr/share/gocode, where Debian's golang-*-dev packages put their sources
# (golang-google-grpc-dev, golang-github-golang-protobuf-1-5-dev and what they depend on).
# Nothing is downloaded: GOPROXY=off, GOFLAGS=-mod=mod is not used, no go.mod.
set -eu
cd "$(dirname "$0")/../.."
OUT=${1:-${BUILD:-$PWD/build}/go-example}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
for c in go protoc protoc-gen-go protoc-gen-go-grpc; do
    command -v "$c" >/dev/null || {
        echo "go example: $c not found (Debian packages golang-go protobuf-compiler" \
             "protoc-gen-go protoc-gen-go-grpc golang-google-grpc-dev" \
             "golang-github-golang-protobuf-1-5-dev)" >&2
        exit 3
    }
done
src=$OUT/gopath/src
rm -rf "$src/wsgw"
mkdir -p "$src/wsgw/examples/api_server" "$OUT/bin"
# go_package "wsgw/proto/wsgwv1": with the default paths=import the files land in
# $src/wsgw/proto/wsgwv1, the import path the example uses
protoc -Iproto --go_out="$src" --go-grpc_out="$src" proto/wsgw.proto
cp examples/go/api_server.go "$src/wsgw/examples/api_server/"
GO111MODULE=off GOPATH="$OUT/gopath:/usr/share/gocode" GOPROXY=off GOFLAGS= \
    GOCACHE="$OUT/cache" go build -o "$OUT/bin/api_server" wsgw/examples/api_server
echo "$OUT/bin/api_server"
