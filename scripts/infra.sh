#!/usr/bin/env bash
# Local test infrastructure on loopback: Kafka (single-node KRaft broker from
# Maven Central jars), MariaDB and Redis (the machine's own services).
#
#   scripts/infra.sh up       start whatever is missing, wait until ready (idempotent)
#   scripts/infra.sh down     stop the Kafka broker (MariaDB/Redis are left alone)
#   scripts/infra.sh status   one line per service; exit 1 if any is down
#
# Environment:
#   RELAY_INFRA_DIR        cache dir (jars, broker data, logs)  [~/.cache/relay-infra]
#   KAFKA_PORT             PLAINTEXT listener                   [19092]
#   KAFKA_CONTROLLER_PORT  KRaft controller listener            [19093]
#   KAFKA_START_TIMEOUT    seconds to wait for broker readiness [90]
#   KAFKA_HEAP_OPTS        JVM heap flags                       [-Xms256m -Xmx512m]
# See docs/infra.md.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/.." && pwd)"
POM="$SCRIPT_DIR/kafka/pom.xml"
CONFIG_DIR="$(cd "$SCRIPT_DIR/../config" && pwd)"

INFRA_DIR="${RELAY_INFRA_DIR:-$HOME/.cache/relay-infra}"
LIBS_DIR="$INFRA_DIR/libs"
KAFKA_DIR="$INFRA_DIR/kafka"
KAFKA_DATA_DIR="$KAFKA_DIR/data"
KAFKA_LOG_DIR="$KAFKA_DIR/logs"
KAFKA_PROPS="$KAFKA_DIR/server.properties"
KAFKA_LOG4J="$KAFKA_DIR/log4j.properties"
TOOLS_LOG4J="$KAFKA_DIR/tools-log4j.properties"
KAFKA_PID_FILE="$KAFKA_DIR/kafka.pid"
KAFKA_CLUSTER_ID_FILE="$KAFKA_DIR/cluster-id"
KAFKA_SERVER_LOG="$KAFKA_LOG_DIR/server.log"
KAFKA_STDOUT_LOG="$KAFKA_LOG_DIR/kafka.out"

KAFKA_HOST=127.0.0.1
KAFKA_PORT="${KAFKA_PORT:-19092}"
KAFKA_CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-19093}"
KAFKA_START_TIMEOUT="${KAFKA_START_TIMEOUT:-90}"
KAFKA_STOP_TIMEOUT=30
KAFKA_HEAP_OPTS="${KAFKA_HEAP_OPTS:--Xms256m -Xmx512m}"

SERVICE_TIMEOUT=30
MYSQL_HOST=127.0.0.1
REDIS_HOST=127.0.0.1
DATABASES=(relay_test relay)

log() { printf '[infra] %s\n' "$*"; }
err() { printf '[infra] ERROR: %s\n' "$*" >&2; }
die() { err "$*"; exit 1; }

now() { date +%s.%N; }
elapsed_since() { awk -v s="$1" -v e="$(now)" 'BEGIN { printf "%.1f", e - s }'; }

# ---------------------------------------------------------------- prerequisites

APT_UPDATED=0
apt_install() {
  local sudo=()
  if [[ $EUID -ne 0 ]]; then
    command -v sudo >/dev/null 2>&1 || die "need to install '$*' but not root and no sudo; install it manually"
    sudo=(sudo)
  fi
  command -v apt-get >/dev/null 2>&1 || die "need '$*' but apt-get is not available; install it manually"
  if [[ $APT_UPDATED -eq 0 ]]; then
    log "apt-get update"
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    APT_UPDATED=1
  fi
  log "apt-get install -y $*"
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@"
}

# need_cmd <command> <debian package>
need_cmd() { command -v "$1" >/dev/null 2>&1 || apt_install "$2"; command -v "$1" >/dev/null 2>&1 || die "'$1' still missing after installing $2"; }

ensure_kafka_prereqs() {
  need_cmd java openjdk-17-jre-headless
  need_cmd mvn maven
  local major
  major="$(java -version 2>&1 | awk -F'"' '/version/ { split($2, v, "."); print (v[1] == "1" ? v[2] : v[1]); exit }')"
  [[ "${major:-0}" -ge 11 ]] || die "Kafka 3.9 needs Java >= 11 (found '${major:-?}')"
}

ensure_service_prereqs() {
  need_cmd mariadb mariadb-client
  need_cmd redis-cli redis-tools
  [[ -x /usr/sbin/mariadbd ]] || apt_install mariadb-server
  command -v redis-server >/dev/null 2>&1 || apt_install redis-server
}

# --------------------------------------------------------------------- helpers

port_open() { timeout 1 bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null; }

# Serialise concurrent up/down runs sharing one cache dir.
take_lock() {
  mkdir -p "$INFRA_DIR"
  exec 9>"$INFRA_DIR/.lock"
  flock -w 300 9 || die "could not lock $INFRA_DIR/.lock (another infra.sh still running?)"
}

# ----------------------------------------------------------------------- kafka

jars_stamp() { { sha256sum "$POM" | cut -d' ' -f1; }; }

ensure_kafka_jars() {
  local stamp
  stamp="$(jars_stamp)"
  if [[ -f "$LIBS_DIR/.stamp" && "$(cat "$LIBS_DIR/.stamp")" == "$stamp" ]]; then
    return 0
  fi
  log "fetching Kafka jars from Maven Central into $LIBS_DIR (pom: scripts/kafka/pom.xml)"
  local t0 tmp
  t0="$(now)"
  tmp="$INFRA_DIR/libs.tmp"
  rm -rf "$tmp"
  # Output goes to a file: Debian's mvn 3.8.7 prints stray ANSI resets even with -q -B.
  if ! mvn -q -B -Dstyle.color=never -f "$POM" dependency:copy-dependencies \
      -DoutputDirectory="$tmp" -DincludeScope=runtime >"$INFRA_DIR/mvn.log" 2>&1; then
    tail -n 50 "$INFRA_DIR/mvn.log" >&2
    die "mvn dependency:copy-dependencies failed (full output: $INFRA_DIR/mvn.log)"
  fi
  ls "$tmp"/kafka_2.13-*.jar >/dev/null 2>&1 || die "mvn did not produce kafka_2.13 jar in $tmp"
  echo "$stamp" >"$tmp/.stamp"
  rm -rf "$LIBS_DIR"
  mv "$tmp" "$LIBS_DIR"
  log "jars fetched in $(elapsed_since "$t0") s ($(find "$LIBS_DIR" -name '*.jar' | wc -l) jars)"
}

write_kafka_config() {
  mkdir -p "$KAFKA_DATA_DIR" "$KAFKA_LOG_DIR"
  # The broker's settings live in config/kafka; only paths and ports are filled in here.
  render_config kafka/server.properties "$KAFKA_PROPS"
  render_config kafka/log4j.properties "$KAFKA_LOG4J"
  render_config kafka/tools-log4j.properties "$TOOLS_LOG4J"
}

# Copies config/<template> to <dest>, replacing each @NAME@ with the value of the shell variable NAME.
render_config() {
  local src="$CONFIG_DIR/$1" dest="$2" name expr=()
  [[ -f "$src" ]] || die "missing $src"
  for name in KAFKA_HOST KAFKA_PORT KAFKA_CONTROLLER_PORT KAFKA_DATA_DIR KAFKA_LOG_DIR KAFKA_SERVER_LOG; do
    expr+=(-e "s|@${name}@|${!name}|g")
  done
  sed "${expr[@]}" "$src" >"$dest.tmp" && mv "$dest.tmp" "$dest"
}

kafka_tool() { java -Xmx256m -Dlog4j.configuration="file:$TOOLS_LOG4J" -cp "$LIBS_DIR/*" "$@"; }

format_kafka_storage() {
  [[ -f "$KAFKA_DATA_DIR/meta.properties" ]] && return 0
  if [[ ! -s "$KAFKA_CLUSTER_ID_FILE" ]]; then
    kafka_tool kafka.tools.StorageTool random-uuid | tail -n 1 >"$KAFKA_CLUSTER_ID_FILE.tmp"
    mv "$KAFKA_CLUSTER_ID_FILE.tmp" "$KAFKA_CLUSTER_ID_FILE"
  fi
  log "formatting KRaft storage (cluster id $(cat "$KAFKA_CLUSTER_ID_FILE"))"
  kafka_tool kafka.tools.StorageTool format -t "$(cat "$KAFKA_CLUSTER_ID_FILE")" -c "$KAFKA_PROPS" --ignore-formatted >/dev/null \
    || die "kafka storage format failed"
}

# Pid of the broker started from this cache dir, or nothing.
kafka_pid() {
  local pid
  [[ -f "$KAFKA_PID_FILE" ]] || return 0
  pid="$(cat "$KAFKA_PID_FILE" 2>/dev/null || true)"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 0
  # Guard against pid reuse: it must be our kafka.Kafka with our properties.
  if kill -0 "$pid" 2>/dev/null && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "kafka.Kafka $KAFKA_PROPS"; then
    echo "$pid"
  fi
}

have_kafkajs() { command -v node >/dev/null 2>&1 && [[ -f "$REPO_ROOT/node_modules/kafkajs/package.json" ]]; }

# Ready = answers a Metadata request (describeCluster) with at least one broker.
kafka_ready() {
  port_open "$KAFKA_HOST" "$KAFKA_PORT" || return 1
  if have_kafkajs; then
    (cd "$REPO_ROOT" && KAFKA_BROKER="$KAFKA_HOST:$KAFKA_PORT" timeout 10 node -e '
      const { Kafka, logLevel } = require("kafkajs");
      const kafka = new Kafka({ clientId: "relay-infra-probe", brokers: [process.env.KAFKA_BROKER],
        logLevel: logLevel.NOTHING, connectionTimeout: 1000, requestTimeout: 3000, retry: { retries: 0 } });
      const admin = kafka.admin();
      setTimeout(() => process.exit(1), 6000);
      admin.connect()
        .then(() => admin.describeCluster())
        .then((c) => admin.disconnect().then(() => process.exit(c.brokers.length > 0 ? 0 : 1)))
        .catch(() => process.exit(1));
    ' >/dev/null 2>&1)
  else
    # No node/kafkajs: fall back to the broker's own "started" line.
    [[ -n "$(kafka_pid)" ]] && grep -q 'Kafka Server started' "$KAFKA_SERVER_LOG" 2>/dev/null
  fi
}

# First consumer-group use creates __consumer_offsets; do it now so the first
# test does not pay for it (or log GROUP_COORDINATOR_NOT_AVAILABLE retries).
kafka_warmup() {
  have_kafkajs || return 0
  (cd "$REPO_ROOT" && KAFKA_BROKER="$KAFKA_HOST:$KAFKA_PORT" timeout 30 node -e '
    const { Kafka, logLevel } = require("kafkajs");
    const kafka = new Kafka({ clientId: "relay-infra-warmup", brokers: [process.env.KAFKA_BROKER], logLevel: logLevel.NOTHING });
    const admin = kafka.admin();
    admin.connect()
      .then(() => admin.describeGroups(["relay-infra-warmup"]))
      .then(() => admin.disconnect())
      .then(() => process.exit(0), () => process.exit(1));
  ' >/dev/null 2>&1) || err "kafka warm-up (group coordinator) failed; continuing"
}

kafka_fail() {
  err "$1"
  local f
  for f in "$KAFKA_SERVER_LOG" "$KAFKA_STDOUT_LOG"; do
    if [[ -s "$f" ]]; then
      echo "----- last 50 lines of $f -----" >&2
      tail -n 50 "$f" >&2
    fi
  done
  exit 1
}

kafka_up() {
  local pid t0
  if kafka_ready; then
    pid="$(kafka_pid)"
    log "kafka already up on $KAFKA_HOST:$KAFKA_PORT${pid:+ (pid $pid)}"
    return 0
  fi

  ensure_kafka_prereqs
  t0="$(now)"
  pid="$(kafka_pid)"
  if [[ -n "$pid" ]]; then
    log "kafka (pid $pid) is running but not ready yet; waiting"
  else
    port_open "$KAFKA_HOST" "$KAFKA_PORT" \
      && die "port $KAFKA_PORT is taken by something that is not a healthy Kafka broker (see: ss -ltnp | grep $KAFKA_PORT)"
    port_open "$KAFKA_HOST" "$KAFKA_CONTROLLER_PORT" \
      && die "controller port $KAFKA_CONTROLLER_PORT is already in use (see: ss -ltnp | grep $KAFKA_CONTROLLER_PORT)"
    ensure_kafka_jars
    t0="$(now)"
    write_kafka_config
    format_kafka_storage
    rm -f "$KAFKA_PID_FILE"
    : >"$KAFKA_STDOUT_LOG"
    printf '[%s] ===== scripts/infra.sh: starting broker =====\n' "$(date '+%F %T')" >>"$KAFKA_SERVER_LOG"
    log "starting kafka 3.9 broker on $KAFKA_HOST:$KAFKA_PORT (logs: $KAFKA_LOG_DIR)"
    # 9>&-: the broker must not inherit the lock fd (it would hold the lock forever).
    # shellcheck disable=SC2086  # KAFKA_HEAP_OPTS is a list of flags
    nohup java $KAFKA_HEAP_OPTS \
      -server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:+ExitOnOutOfMemoryError \
      -Djava.awt.headless=true \
      -Dlog4j.configuration="file:$KAFKA_LOG4J" -Dkafka.logs.dir="$KAFKA_LOG_DIR" \
      -cp "$LIBS_DIR/*" kafka.Kafka "$KAFKA_PROPS" \
      >"$KAFKA_STDOUT_LOG" 2>&1 </dev/null 9>&- &
    echo $! >"$KAFKA_PID_FILE"
    pid="$(cat "$KAFKA_PID_FILE")"
  fi

  local deadline=$((SECONDS + KAFKA_START_TIMEOUT))
  while ! kafka_ready; do
    kill -0 "$pid" 2>/dev/null || kafka_fail "kafka broker (pid $pid) exited during startup"
    ((SECONDS < deadline)) || kafka_fail "kafka broker (pid $pid) not ready after ${KAFKA_START_TIMEOUT}s (left running; 'scripts/infra.sh down' to stop it)"
    sleep 0.5
  done
  kafka_warmup
  log "kafka ready in $(elapsed_since "$t0") s (pid $pid, $KAFKA_HOST:$KAFKA_PORT)"
}

kafka_down() {
  local pid
  pid="$(kafka_pid)"
  if [[ -z "$pid" ]]; then
    rm -f "$KAFKA_PID_FILE"
    if port_open "$KAFKA_HOST" "$KAFKA_PORT"; then
      log "kafka: no broker started from $INFRA_DIR, but something listens on $KAFKA_PORT (not touching it)"
    else
      log "kafka already down"
    fi
    return 0
  fi
  local t0
  t0="$(now)"
  log "stopping kafka (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + KAFKA_STOP_TIMEOUT))
  while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.5; done
  if kill -0 "$pid" 2>/dev/null; then
    err "kafka (pid $pid) still running after ${KAFKA_STOP_TIMEOUT}s, sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null; do sleep 0.2; done
  fi
  rm -f "$KAFKA_PID_FILE"
  log "kafka stopped in $(elapsed_since "$t0") s"
}

# --------------------------------------------------------------- mariadb/redis

as_root() { if [[ $EUID -eq 0 ]]; then "$@"; else sudo "$@"; fi; }

mysql_ok() { mariadb -uroot -h"$MYSQL_HOST" --connect-timeout=2 -e 'select 1' >/dev/null 2>&1; }
redis_ok() { [[ "$(timeout 3 redis-cli -h "$REDIS_HOST" ping 2>/dev/null)" == "PONG" ]]; }

# wait_for <name> <check-fn>
wait_for() {
  local deadline=$((SECONDS + SERVICE_TIMEOUT))
  until "$2"; do
    ((SECONDS < deadline)) || die "$1 did not come up within ${SERVICE_TIMEOUT}s"
    sleep 0.5
  done
}

mysql_up() {
  if ! mysql_ok; then
    log "mariadb not answering on $MYSQL_HOST:3306; starting it"
    if id mysql >/dev/null 2>&1; then as_root install -d -o mysql -g mysql /run/mysqld; fi
    # 9>&-: a daemon must not inherit the lock fd (it would hold the lock for its whole life).
    as_root start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd 9>&-
    wait_for mariadb mysql_ok
    log "mariadb started"
  fi
  local db
  for db in "${DATABASES[@]}"; do
    mariadb -uroot -h"$MYSQL_HOST" -e "CREATE DATABASE IF NOT EXISTS \`$db\` CHARACTER SET utf8mb4" \
      || die "could not create database $db"
  done
  log "mariadb up on $MYSQL_HOST:3306 (databases: ${DATABASES[*]})"
}

redis_up() {
  if ! redis_ok; then
    log "redis not answering on $REDIS_HOST:6379; starting it"
    as_root mkdir -p /var/lib/redis /var/log/redis
    # 9>&-: the daemon must not inherit the lock fd (it would hold the lock for as long as it runs).
    as_root redis-server "$CONFIG_DIR/redis/redis.conf" --daemonize yes --bind 127.0.0.1 -::1 --port 6379 \
      --dir /var/lib/redis --logfile /var/log/redis/ci.log 9>&-
    wait_for redis redis_ok
    log "redis started"
  fi
  log "redis up on $REDIS_HOST:6379"
}

# ---------------------------------------------------------------------- main

cmd_up() {
  take_lock
  ensure_service_prereqs
  mysql_up
  redis_up
  kafka_up
}

cmd_down() {
  take_lock
  kafka_down
}

cmd_status() {
  local rc=0 pid
  if kafka_ready; then
    pid="$(kafka_pid)"
    printf '%-6s up    %s:%s%s\n' kafka "$KAFKA_HOST" "$KAFKA_PORT" "${pid:+ (pid $pid)}"
  else
    printf '%-6s down  %s:%s\n' kafka "$KAFKA_HOST" "$KAFKA_PORT"; rc=1
  fi
  if command -v mariadb >/dev/null 2>&1 && mysql_ok; then
    printf '%-6s up    %s:3306\n' mysql "$MYSQL_HOST"
  else
    printf '%-6s down  %s:3306\n' mysql "$MYSQL_HOST"; rc=1
  fi
  if command -v redis-cli >/dev/null 2>&1 && redis_ok; then
    printf '%-6s up    %s:6379\n' redis "$REDIS_HOST"
  else
    printf '%-6s down  %s:6379\n' redis "$REDIS_HOST"; rc=1
  fi
  return "$rc"
}

usage() { echo "usage: $0 up|down|status" >&2; exit 2; }

case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  *) usage ;;
esac
