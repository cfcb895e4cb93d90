#!/usr/bin/env bash
# Runs every test kbbot has, on a fresh Debian machine: installs redis-server
# when missing, starts a throwaway one on a free port, and runs go vet,
# a gofmt check and `go test -race ./...` against it.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v redis-server >/dev/null; then
	sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
	$sudo apt-get update -qq
	$sudo apt-get install -y -qq redis-server >/dev/null
fi

# A free port from the kernel, then a throwaway server that dies with us.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null || echo $((20000 + RANDOM % 20000)))
dir=$(mktemp -d)
redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$dir" --daemonize yes --pidfile "$dir/redis.pid" --logfile "$dir/redis.log"
trap 'kill "$(cat "$dir/redis.pid" 2>/dev/null)" 2>/dev/null || true; rm -rf "$dir"' EXIT
for _ in $(seq 50); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done

export KBBOT_TEST_REDIS="redis://127.0.0.1:$port/0"
# With CI set, tests that need Redis fail instead of skipping.
export CI="${CI:-true}"

unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then
	echo "gofmt would change: $unformatted" >&2
	exit 1
fi
# go.mod and go.sum must say exactly what the code imports.
if ! go mod tidy -diff; then
	echo "go.mod/go.sum are not tidy: run go mod tidy and commit the result" >&2
	exit 1
fi
go vet ./...
go test -race -count=1 -timeout 20m "$@" ./...
