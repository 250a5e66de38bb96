#!/usr/bin/env bash
# Installs what the tests and the demo need on a Debian machine with Go:
# redis-server from Debian's packages (apt-get), if it is not on PATH yet;
# with the argument kafka, for the real-Kafka suites, a Java runtime and
# Maven (scripts/kafka.sh fetches Kafka itself from Maven Central); with the
# argument browser, Debian's chromium for the dashboard's browser test; with
# the argument examples, what the README's examples run with: curl, and a
# Python that can import redis-py (see pick_python below), recorded in
# $REDBANDIT_CACHE/examples.env (default ~/.cache/redbandit/examples.env) as
# `export REDBANDIT_PYTHON=…`, which scripts/test.sh sources and the README
# tests (cmd/redbandit/readme_test.go) run.
set -euo pipefail
cache=${REDBANDIT_CACHE:-$HOME/.cache/redbandit}
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
# pick_python prints the first interpreter that can import redis: the one
# REDBANDIT_PYTHON names, python3 on PATH (which may be pyenv's, a venv's or
# Homebrew's rather than Debian's), Debian's /usr/bin/python3, the venv this
# script makes; resolved to the real executable, so it holds whatever PATH
# the tests later run with.
pick_python() {
  local py
  for py in "${REDBANDIT_PYTHON:-}" "$(command -v python3 || true)" /usr/bin/python3 "$cache/venv/bin/python3"; do
    if [ -n "$py" ] && [ -x "$py" ] && "$py" -c 'import redis' >/dev/null 2>&1; then
      "$py" -c 'import sys; print(sys.executable)'
      return 0
    fi
  done
  return 1
}
if WANT=examples want "$@"; then
  if ! command -v curl >/dev/null 2>&1 || ! pick_python >/dev/null; then
    if command -v apt-get >/dev/null 2>&1; then
      echo "deps: installing curl and python3-redis (for /usr/bin/python3) with apt-get" >&2
      SUDO=""
      if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
      $SUDO apt-get update -qq
      DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq curl python3 python3-redis >/dev/null
    fi
  fi
  if ! pick_python >/dev/null; then
    # No Debian packages (or a python3 first on PATH that is not Debian's
    # and no apt-get): redis-py from PyPI into a venv of our own.
    echo "deps: installing redis-py with pip into $cache/venv" >&2
    python3 -m venv "$cache/venv" >&2
    "$cache/venv/bin/python3" -m pip install -q redis >&2
  fi
  python=$(pick_python) || { echo "deps: no Python can import redis after installing redis-py" >&2; exit 1; }
  mkdir -p "$cache"
  {
    echo "# Written by scripts/deps.sh examples: the interpreters the README's examples run with."
    printf 'export REDBANDIT_PYTHON=%q\n' "$python"
  } >"$cache/examples.env"
  echo "deps: the README's Python example runs with $python (REDBANDIT_PYTHON in $cache/examples.env)" >&2
fi
# The Debian package may start a system redis on 6379; the tests never use it
# (each test starts its own server on a free port), so it is left alone.
redis-server --version
go version
