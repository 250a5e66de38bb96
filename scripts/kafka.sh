#!/usr/bin/env bash
# A single-node Apache Kafka broker (KRaft: broker and controller in one
# process) on 127.0.0.1, from the official artifacts on Maven Central
# (org.apache.kafka:kafka_2.13), for the end-to-end tests and the demo.
#
#   scripts/kafka.sh up       fetch the jars once (cached), format, start, wait until it serves
#   scripts/kafka.sh down     stop it (SIGTERM, then SIGKILL after 30 s) and remove its data
#   scripts/kafka.sh status   print the bootstrap address if it runs
#   scripts/kafka.sh stop     stop the broker but keep its data (fault tests)
#   scripts/kafka.sh start    start a stopped broker again on the same data
#
# Environment: KAFKA_VERSION (default 4.1.1), KAFKA_PORT (default 19092; the
# controller listens on KAFKA_PORT+1), KAFKA_HOME (state: default
# ${TMPDIR:-/tmp}/redbandit-kafka), REDBANDIT_CACHE (jar cache: default
# ~/.cache/redbandit). Needs Java 17+ and Maven.
set -euo pipefail

version=${KAFKA_VERSION:-4.1.1}
port=${KAFKA_PORT:-19092}
cport=$((port + 1))
home=${KAFKA_HOME:-${TMPDIR:-/tmp}/redbandit-kafka}
cache=${REDBANDIT_CACHE:-$HOME/.cache/redbandit}/kafka-$version
pidfile=$home/kafka.pid

fetch() {
	[ -f "$cache/.complete" ] && return 0
	command -v mvn >/dev/null || { echo "kafka.sh: Maven (mvn) is needed to fetch Kafka from Maven Central" >&2; exit 1; }
	mkdir -p "$cache"
	cat >"$cache/pom.xml" <<POM
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>redbandit</groupId>
  <artifactId>kafka-broker</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>$version</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId><version>2.24.3</version></dependency>
  </dependencies>
</project>
POM
	echo "kafka.sh: fetching Kafka $version from Maven Central into $cache" >&2
	mvn -q -B -f "$cache/pom.xml" dependency:copy-dependencies -DoutputDirectory="$cache/libs" -DincludeScope=runtime >&2
	touch "$cache/.complete"
}

running() {
	[ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null
}

up() {
	if running; then
		echo "127.0.0.1:$port"
		return 0
	fi
	fetch
	rm -rf "$home" && mkdir -p "$home/data"
	cat >"$home/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$cport
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=$home/data
num.partitions=6
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
PROPS
	cat >"$home/log4j2.properties" <<LOG
rootLogger.level=WARN
rootLogger.appenderRef.file.ref=file
appender.file.type=File
appender.file.name=file
appender.file.fileName=$home/kafka.log
appender.file.layout.type=PatternLayout
appender.file.layout.pattern=[%d] %p %m (%c)%n
LOG
	"${java[@]}" kafka.tools.StorageTool format -t "$("${java[@]}" kafka.tools.StorageTool random-uuid)" -c "$home/server.properties" >"$home/format.log" 2>&1 ||
		{ cat "$home/format.log" >&2; exit 1; }
	start
}

java=(java -Xms256m -Xmx768m -XX:+UseG1GC -Dlog4j2.configurationFile="$home/log4j2.properties" -cp "$cache/libs/*")

# start runs the formatted broker of $home and waits until it serves.
start() {
	if running; then
		echo "127.0.0.1:$port"
		return 0
	fi
	[ -f "$home/server.properties" ] || { echo "kafka.sh: no broker in $home: run up first" >&2; exit 1; }
	nohup "${java[@]}" kafka.Kafka "$home/server.properties" >>"$home/stdout.log" 2>&1 &
	echo $! >"$pidfile"
	for _ in $(seq 1 120); do
		if ! running; then
			echo "kafka.sh: the broker exited; see $home/stdout.log and $home/kafka.log" >&2
			tail -20 "$home/stdout.log" >&2 || true
			exit 1
		fi
		if (exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null; then
			echo "127.0.0.1:$port"
			return 0
		fi
		sleep 0.5
	done
	echo "kafka.sh: the broker did not listen on 127.0.0.1:$port within 60 s" >&2
	down
	exit 1
}

# stop stops the broker (SIGTERM, then SIGKILL after 30 s) and keeps its data.
stop() {
	if running; then
		local pid
		pid=$(cat "$pidfile")
		kill -TERM "$pid" 2>/dev/null || true
		for _ in $(seq 1 60); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.5
		done
		kill -KILL "$pid" 2>/dev/null || true
	fi
}

down() {
	stop
	rm -rf "$home"
}

case "${1:-}" in
up) up ;;
down) down ;;
stop) stop ;;
start) start ;;
status) running && echo "127.0.0.1:$port" || { echo "kafka.sh: not running" >&2; exit 1; } ;;
*) echo "usage: $0 up|down|start|stop|status" >&2; exit 2 ;;
esac
