#!/usr/bin/env bash
# Installs what the tests and the demo need on a Debian machine with Go:
# redis-server from Debian's packages (apt-get), if it is not on PATH yet;
# with the argument kafka, for the real-Kafka suites, a Java runtime and
# Maven (scripts/kafka.sh fetches Kafka itself from Maven Central); with the
# argument browser, Debian's chromium for the dashboard's browser test; with
# the argument examples, what the README's examples run with: curl, a Python
# that can import redis-py (see pick_python below), Node.js with ioredis
# (npm registry) and a JDK with Jedis and its dependencies (Maven Central),
# recorded in $REDBANDIT_CACHE/examples.env (default
# ~/.cache/redbandit/examples.env) as exports of REDBANDIT_PYTHON,
# REDBANDIT_NODE_PATH and REDBANDIT_JEDIS_CLASSPATH, which scripts/test.sh
# sources and the README tests (cmd/redbandit/readme_test.go) use.
set -euo pipefail
cache=${REDBANDIT_CACHE:-$HOME/.cache/redbandit}
IOREDIS_VERSION=${IOREDIS_VERSION:-5.4.1}
JEDIS_VERSION=${JEDIS_VERSION:-5.2.0}
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

  # Node.js example: node and npm (Debian's if missing), ioredis from the
  # npm registry into the cache (NODE_PATH).
  if ! { command -v node >/dev/null && command -v npm >/dev/null; }; then
    echo "deps: installing nodejs and npm with apt-get" >&2
    SUDO=""
    if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq nodejs npm >/dev/null
  fi
  node_dir=$cache/node-ioredis-$IOREDIS_VERSION
  if [ ! -f "$node_dir/.complete" ]; then
    echo "deps: installing ioredis $IOREDIS_VERSION from the npm registry into $node_dir" >&2
    mkdir -p "$node_dir"
    npm install --prefix "$node_dir" --no-audit --no-fund --silent "ioredis@$IOREDIS_VERSION" >&2
    touch "$node_dir/.complete"
  fi

  # Java example: a JDK (java runs the single source file, which needs the
  # compiler) and Maven, then Jedis and its dependencies from Maven Central.
  if ! { command -v javac >/dev/null && command -v mvn >/dev/null; }; then
    echo "deps: installing a JDK and Maven with apt-get" >&2
    SUDO=""
    if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq default-jdk-headless maven >/dev/null
  fi
  jedis_dir=$cache/jedis-$JEDIS_VERSION
  if [ ! -f "$jedis_dir/.complete" ]; then
    mkdir -p "$jedis_dir"
    cat >"$jedis_dir/pom.xml" <<POM
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>redbandit</groupId>
  <artifactId>jedis-example</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>redis.clients</groupId><artifactId>jedis</artifactId><version>$JEDIS_VERSION</version></dependency>
    <dependency><groupId>org.slf4j</groupId><artifactId>slf4j-nop</artifactId><version>1.7.36</version></dependency>
  </dependencies>
</project>
POM
    echo "deps: fetching Jedis $JEDIS_VERSION (commons-pool2, gson, json, slf4j) from Maven Central into $jedis_dir/libs" >&2
    mvn -q -B -f "$jedis_dir/pom.xml" dependency:copy-dependencies -DoutputDirectory="$jedis_dir/libs" -DincludeScope=runtime >&2
    touch "$jedis_dir/.complete"
  fi

  mkdir -p "$cache"
  {
    echo "# Written by scripts/deps.sh examples: what the README's examples run with."
    printf 'export REDBANDIT_PYTHON=%q\n' "$python"
    printf 'export REDBANDIT_NODE_PATH=%q\n' "$node_dir/node_modules"
    printf 'export REDBANDIT_JEDIS_CLASSPATH=%q\n' "$jedis_dir/libs/*"
  } >"$cache/examples.env"
  echo "deps: the README's examples run with $python, ioredis in $node_dir, Jedis in $jedis_dir/libs (exports in $cache/examples.env)" >&2
fi
# The Debian package may start a system redis on 6379; the tests never use it
# (each test starts its own server on a free port), so it is left alone.
redis-server --version
go version
