# redbandit — see README.md.
GO ?= go
BIN := bin/redbandit

.PHONY: all build test demo bench vet clean kafka-up kafka-down

all: build

build:
	$(GO) build -o $(BIN) ./cmd/redbandit

# Installs redis-server if missing (apt-get), then gofmt, go vet and
# go test -race ./... against real redis-server processes.
test:
	bash scripts/test.sh

# Runs the closed-loop demo (Redis, Kafka, trainer, sidecar, simulator):
# make demo ARGS="--cold --visits 20000" for the cold start.
demo: build
	bash scripts/deps.sh >/dev/null
	./$(BIN) demo --redis-conf redis.conf --quiet --hold --open $(ARGS)

# The published benchmark table (docs/BENCHMARKS.md), with redbandit loadtest.
bench:
	bash scripts/benchmarks.sh

vet:
	$(GO) vet ./...

# A single-node Apache Kafka broker (KRaft) on 127.0.0.1:19092, from Maven
# Central (jars cached in ~/.cache/redbandit); see scripts/kafka.sh.
kafka-up:
	bash scripts/kafka.sh up

kafka-down:
	bash scripts/kafka.sh down

clean:
	rm -rf bin
