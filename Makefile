# redbandit — see README.md.
GO ?= go
BIN := bin/redbandit

.PHONY: all build test demo bench vet clean

all: build

build:
	$(GO) build -o $(BIN) ./cmd/redbandit

# Installs redis-server if missing (apt-get), then gofmt, go vet and
# go test -race ./... against real redis-server processes.
test:
	bash scripts/test.sh

# Runs the closed-loop demo (Redis, Kafka, trainer, sidecar, simulator).
demo: build
	bash scripts/deps.sh >/dev/null
	./$(BIN) demo

# Serving benchmarks; results go to docs/BENCHMARKS.md by hand.
bench:
	bash scripts/bench.sh

vet:
	$(GO) vet ./...

clean:
	rm -rf bin
