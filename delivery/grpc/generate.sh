#!/bin/sh
# Regenerates the Go code of the two service definitions. Needs protoc
# (Debian: apt-get install protobuf-compiler) and the plugins:
#   go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
#   go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.5.1
# Run from anywhere: go generate ./delivery/grpc
set -eu
cd "$(dirname "$0")"
PATH="$(go env GOPATH)/bin:$PATH"

# The versioned API.
protoc -I . \
	--go_out=. --go_opt=paths=source_relative \
	--go-grpc_out=. --go-grpc_opt=paths=source_relative \
	logstreampb/v1/logstream.proto

# The legacy unversioned service, compiled from the file exactly as
# clients have it: it has no package and no go_package option, so the Go
# package is given here (M option).
legacy=github.com/logstream/logstream/delivery/grpc/legacypb
protoc -I . \
	--go_out=. --go_opt=paths=source_relative --go_opt=Mlegacypb/logservice.proto=$legacy \
	--go-grpc_out=. --go-grpc_opt=paths=source_relative --go-grpc_opt=Mlegacypb/logservice.proto=$legacy \
	legacypb/logservice.proto
