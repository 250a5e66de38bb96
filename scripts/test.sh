#!/usr/bin/env bash
# The project's test command (`make test`): installs what the tests need,
# then vets, checks formatting and runs every test with the race detector,
# then the end-to-end suites once more against a real Kafka broker.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh kafka browser examples
# The interpreters deps.sh chose for the README's examples (REDBANDIT_PYTHON:
# python3 on PATH need not be the one that has redis-py).
. "${REDBANDIT_CACHE:-$HOME/.cache/redbandit}/examples.env"
# The dashboard's browser test and the README's Python, Node.js and Java examples must run
# (not skip); the browser test's screenshot goes to artifacts/.
export REDBANDIT_TEST_BROWSER=1 REDBANDIT_TEST_PYTHON=1 REDBANDIT_TEST_NODE=1 REDBANDIT_TEST_JAVA=1 REDBANDIT_ARTIFACTS="$PWD/artifacts"
echo "== gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then
  echo "gofmt would change: $unformatted" >&2
  exit 1
fi
echo "== go vet"
go vet ./...
echo "== go test -race (in-process Kafka)"
go test -race -count=1 -timeout 20m ./...

# The end-to-end suites again, through a real Apache Kafka broker (KRaft,
# single node on 127.0.0.1, from Maven Central: scripts/kafka.sh).
echo "== go test -race (real Apache Kafka)"
export KAFKA_PORT=${KAFKA_PORT:-19092}
trap 'bash scripts/kafka.sh down' EXIT
bash scripts/kafka.sh up
# REDBANDIT_TEST_KAFKA_CTL lets the broker-restart fault test stop and
# start this broker.
REDBANDIT_TEST_KAFKA=127.0.0.1:$KAFKA_PORT REDBANDIT_TEST_KAFKA_CTL="bash $PWD/scripts/kafka.sh" \
	go test -race -count=1 -timeout 20m -skip TestDashboardBrowser ./trainer/ ./tools/demo/ ./training/joiner/
