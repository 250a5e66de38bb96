#!/usr/bin/env bash
# Installs what the tests and the demo need on a Debian machine with Go:
# redis-server from Debian's packages (apt-get), if it is not on PATH yet;
# with the argument kafka, for the real-Kafka suites, a Java runtime and
# Maven (scripts/kafka.sh fetches Kafka itself from Maven Central); with the
# argument browser, Debian's chromium for the dashboard's browser test; with
# the argument examples, what the README's examples run with: curl, and
# Debian's python3-redis (redis-py) if python3 cannot import redis yet.
set -euo pipefail
want() { case " $* " in *" $WANT "*) return 0 ;; esac; return 1; }
if ! command -v redis-server >/dev/null 2>&1; then
  echo "deps: installing redis-server with apt-get" >&2
  SUDO=""
  if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq redis-server >/dev/null
fi
if WANT=kafka want "$@" && ! { command -v java >/dev/null && command -v mvn >/dev/null; }; then
  echo "deps: installing a Java runtime and Maven with apt-get" >&2
  SUDO=""
  if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq default-jre-headless maven >/dev/null
fi
if WANT=browser want "$@" && ! command -v chromium >/dev/null 2>&1; then
  echo "deps: installing chromium with apt-get" >&2
  SUDO=""
  if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi
if WANT=examples want "$@" && ! { command -v curl >/dev/null && python3 -c 'import redis' >/dev/null 2>&1; }; then
  echo "deps: installing curl and python3-redis with apt-get" >&2
  SUDO=""
  if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq curl python3-redis >/dev/null
fi
# The Debian package may start a system redis on 6379; the tests never use it
# (each test starts its own server on a free port), so it is left alone.
redis-server --version
go version
