#!/usr/bin/env bash
# The project's test command (`make test`): installs what the tests need,
# then vets, checks formatting and runs every test with the race detector.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
echo "== gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then
  echo "gofmt would change: $unformatted" >&2
  exit 1
fi
echo "== go vet"
go vet ./...
echo "== go test -race"
go test -race -count=1 -timeout 20m ./...
