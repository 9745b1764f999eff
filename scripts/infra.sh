#!/usr/bin/env bash
# Local test infrastructure on loopback: Kafka (single-node KRaft broker from
# Maven Central jars), MariaDB and Redis (the machine's own services).
#
#   scripts/infra.sh up       start whatever is missing, wait until ready (idempotent)
#   scripts/infra.sh down     stop the Kafka broker (MariaDB/Redis are left alone)
#   scripts/infra.sh status   one line per service; exit 1 if any is down
#   scripts/infra.sh kafka-cluster up|down|status   3-broker KRaft cluster (replication 3, min ISR 2)
#   scripts/infra.sh redis-cluster up|down|status   Redis Cluster: 3 masters + 1 replica each
#   scripts/infra.sh mariadb-shards up|down|status  extra mariadbd instances (outbox shards)
#
# Environment:
#   RELAY_INFRA_DIR        cache dir (jars, broker data, logs)  [~/.cache/relay-infra]
#   KAFKA_PORT             PLAINTEXT listener                   [19092]
#   KAFKA_CONTROLLER_PORT  KRaft controller listener            [19093]
#   KAFKA_START_TIMEOUT    seconds to wait for broker readiness [90]
#   KAFKA_HEAP_OPTS        JVM heap flags                       [-Xms256m -Xmx512m]
#   KAFKA_CLUSTER_PORTS    the cluster's PLAINTEXT listeners    [29092,29094,29096]
#                          (controller of each: its port + 1)
#   REDIS_CLUSTER_PORTS    the Redis Cluster nodes (masters first) [27001,...,27006]
#   MARIADB_SHARD_PORTS    extra mariadbd instances, one data directory each [3307]
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

# -------------------------------------------------------- kafka-cluster (3 brokers)
# Three KRaft processes (broker+controller each) from the same jars, own data dirs under
# $INFRA_DIR/kafka-cluster/broker-<id>. `up` starts whichever is not running (so it also restarts
# a broker killed by a test) and waits until all three are registered.

KCLUSTER_DIR="$INFRA_DIR/kafka-cluster"
IFS=',' read -r -a KCLUSTER_PORTS <<<"${KAFKA_CLUSTER_PORTS:-29092,29094,29096}"
KCLUSTER_HEAP_OPTS="${KAFKA_CLUSTER_HEAP_OPTS:--Xms128m -Xmx384m}"

kcluster_bootstrap() {
  local out=() p
  for p in "${KCLUSTER_PORTS[@]}"; do out+=("$KAFKA_HOST:$p"); done
  (IFS=','; echo "${out[*]}")
}

kcluster_voters() {
  local out=() i
  for i in "${!KCLUSTER_PORTS[@]}"; do out+=("$((i + 1))@$KAFKA_HOST:$((KCLUSTER_PORTS[i] + 1))"); done
  (IFS=','; echo "${out[*]}")
}

# render_tokens <template under config/> <dest> <VAR>...: @VAR@ -> value of shell variable VAR.
render_tokens() {
  local src="$CONFIG_DIR/$1" dest="$2" name expr=()
  shift 2
  [[ -f "$src" ]] || die "missing $src"
  for name in "$@"; do expr+=(-e "s|@${name}@|${!name}|g"); done
  sed "${expr[@]}" "$src" >"$dest.tmp" && mv "$dest.tmp" "$dest"
}

kcluster_pid() {
  local dir="$KCLUSTER_DIR/broker-$1" pid
  [[ -f "$dir/kafka.pid" ]] || return 0
  pid="$(cat "$dir/kafka.pid" 2>/dev/null || true)"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 0
  if kill -0 "$pid" 2>/dev/null && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "kafka.Kafka $dir/server.properties"; then
    echo "$pid"
  fi
}

# Number of brokers the cluster reports (0 when no broker answers).
kcluster_brokers() {
  have_kafkajs || { echo 0; return 0; }
  (cd "$REPO_ROOT" && KAFKA_BROKERS="$(kcluster_bootstrap)" timeout 12 node -e '
    const { Kafka, logLevel } = require("kafkajs");
    const kafka = new Kafka({ clientId: "relay-infra-probe", brokers: process.env.KAFKA_BROKERS.split(","),
      logLevel: logLevel.NOTHING, connectionTimeout: 1000, requestTimeout: 3000, retry: { retries: 0 } });
    const admin = kafka.admin();
    setTimeout(() => { console.log(0); process.exit(0); }, 8000);
    admin.connect()
      .then(() => admin.describeCluster())
      .then((c) => admin.disconnect().then(() => { console.log(c.brokers.length); process.exit(0); }))
      .catch(() => { console.log(0); process.exit(0); });
  ' 2>/dev/null) || echo 0
}

kcluster_start_broker() {
  local id="$1" port="$2"
  local NODE_ID="$id" BROKER_PORT="$port" CONTROLLER_PORT="$((port + 1))"
  local QUORUM_VOTERS DATA_DIR KAFKA_LOG_DIR KAFKA_SERVER_LOG dir="$KCLUSTER_DIR/broker-$id"
  QUORUM_VOTERS="$(kcluster_voters)"
  DATA_DIR="$dir/data"
  KAFKA_LOG_DIR="$dir/logs"
  KAFKA_SERVER_LOG="$KAFKA_LOG_DIR/server.log"
  mkdir -p "$DATA_DIR" "$KAFKA_LOG_DIR"
  port_open "$KAFKA_HOST" "$port" && die "port $port is taken by something that is not broker $id of $KCLUSTER_DIR"
  port_open "$KAFKA_HOST" "$CONTROLLER_PORT" && die "controller port $CONTROLLER_PORT is taken"
  render_tokens kafka/cluster-server.properties "$dir/server.properties" \
    NODE_ID QUORUM_VOTERS KAFKA_HOST BROKER_PORT CONTROLLER_PORT DATA_DIR
  render_tokens kafka/log4j.properties "$dir/log4j.properties" KAFKA_LOG_DIR KAFKA_SERVER_LOG
  if [[ ! -f "$DATA_DIR/meta.properties" ]]; then
    kafka_tool kafka.tools.StorageTool format -t "$(cat "$KCLUSTER_DIR/cluster-id")" -c "$dir/server.properties" \
      --ignore-formatted >/dev/null || die "kafka storage format failed for broker $id"
  fi
  printf '[%s] ===== scripts/infra.sh: starting broker %s =====\n' "$(date '+%F %T')" >>"$KAFKA_SERVER_LOG"
  # shellcheck disable=SC2086  # heap opts are a list of flags
  nohup java $KCLUSTER_HEAP_OPTS \
    -server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:+ExitOnOutOfMemoryError -XX:TieredStopAtLevel=1 \
    -Djava.awt.headless=true \
    -Dlog4j.configuration="file:$dir/log4j.properties" -Dkafka.logs.dir="$KAFKA_LOG_DIR" \
    -cp "$LIBS_DIR/*" kafka.Kafka "$dir/server.properties" \
    >"$KAFKA_LOG_DIR/kafka.out" 2>&1 </dev/null 9>&- &
  echo $! >"$dir/kafka.pid"
  log "kafka-cluster: started broker $id (pid $!, $KAFKA_HOST:$port)"
}

kcluster_up() {
  local t0 i pid started=0
  t0="$(now)"
  ensure_kafka_prereqs
  ensure_kafka_jars
  mkdir -p "$KCLUSTER_DIR"
  # The CLI tools' logging (StorageTool), rendered into this cluster's own dir.
  TOOLS_LOG4J="$KCLUSTER_DIR/tools-log4j.properties"
  render_tokens kafka/tools-log4j.properties "$TOOLS_LOG4J" KAFKA_LOG_DIR
  if [[ ! -s "$KCLUSTER_DIR/cluster-id" ]]; then
    kafka_tool kafka.tools.StorageTool random-uuid | tail -n 1 >"$KCLUSTER_DIR/cluster-id.tmp"
    mv "$KCLUSTER_DIR/cluster-id.tmp" "$KCLUSTER_DIR/cluster-id"
  fi
  for i in "${!KCLUSTER_PORTS[@]}"; do
    pid="$(kcluster_pid $((i + 1)))"
    [[ -n "$pid" ]] && continue
    kcluster_start_broker $((i + 1)) "${KCLUSTER_PORTS[i]}"
    started=$((started + 1))
  done
  local deadline=$((SECONDS + KAFKA_START_TIMEOUT)) n
  while :; do
    n="$(kcluster_brokers)"
    [[ "$n" -ge "${#KCLUSTER_PORTS[@]}" ]] && break
    for i in "${!KCLUSTER_PORTS[@]}"; do
      [[ -n "$(kcluster_pid $((i + 1)))" ]] || { tail -n 40 "$KCLUSTER_DIR/broker-$((i + 1))/logs/server.log" >&2; die "kafka-cluster: broker $((i + 1)) exited during startup"; }
    done
    ((SECONDS < deadline)) || die "kafka-cluster: only $n of ${#KCLUSTER_PORTS[@]} brokers registered after ${KAFKA_START_TIMEOUT}s (logs: $KCLUSTER_DIR/broker-*/logs)"
    sleep 0.5
  done
  log "kafka-cluster ready in $(elapsed_since "$t0") s ($started started; brokers $(kcluster_bootstrap))"
}

kcluster_down() {
  local i pid
  for i in "${!KCLUSTER_PORTS[@]}"; do
    pid="$(kcluster_pid $((i + 1)))"
    [[ -n "$pid" ]] || continue
    kill -TERM "$pid" 2>/dev/null || true
  done
  for i in "${!KCLUSTER_PORTS[@]}"; do
    pid="$(kcluster_pid $((i + 1)))"
    [[ -n "$pid" ]] || continue
    local deadline=$((SECONDS + KAFKA_STOP_TIMEOUT))
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.5; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
    rm -f "$KCLUSTER_DIR/broker-$((i + 1))/kafka.pid"
  done
  log "kafka-cluster stopped"
}

kcluster_status() {
  local i pid rc=0 n
  n="$(kcluster_brokers)"
  for i in "${!KCLUSTER_PORTS[@]}"; do
    pid="$(kcluster_pid $((i + 1)))"
    if [[ -n "$pid" ]]; then
      printf 'kafka-%s up    %s:%s (pid %s)\n' $((i + 1)) "$KAFKA_HOST" "${KCLUSTER_PORTS[i]}" "$pid"
    else
      printf 'kafka-%s down  %s:%s\n' $((i + 1)) "$KAFKA_HOST" "${KCLUSTER_PORTS[i]}"; rc=1
    fi
  done
  printf 'kafka-cluster %s of %s brokers registered\n' "$n" "${#KCLUSTER_PORTS[@]}"
  [[ "$n" -ge "${#KCLUSTER_PORTS[@]}" ]] || rc=1
  return "$rc"
}

# ------------------------------------------------ redis-cluster (3 masters + 3 replicas)
# redis-server processes in cluster mode under $INFRA_DIR/redis-cluster/<port>. `up` starts the
# missing ones and creates the cluster once (slots over the first three, a replica for each);
# a node killed by a test comes back with its nodes.conf and rejoins (as a replica after a failover).

RCLUSTER_DIR="$INFRA_DIR/redis-cluster"
IFS=',' read -r -a RCLUSTER_PORTS <<<"${REDIS_CLUSTER_PORTS:-27001,27002,27003,27004,27005,27006}"

rcluster_pid() {
  local dir="$RCLUSTER_DIR/$1" pid
  [[ -f "$dir/redis.pid" ]] || return 0
  pid="$(cat "$dir/redis.pid" 2>/dev/null || true)"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 0
  if kill -0 "$pid" 2>/dev/null && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF ":$1"; then echo "$pid"; fi
}

rcluster_ok() {
  local p
  for p in "${RCLUSTER_PORTS[@]}"; do
    timeout 3 redis-cli -h "$REDIS_HOST" -p "$p" cluster info 2>/dev/null | grep -q 'cluster_state:ok' || return 1
  done
  # Every node sees the same number of masters with slots (3) and the full set of nodes.
  [[ "$(timeout 3 redis-cli -h "$REDIS_HOST" -p "${RCLUSTER_PORTS[0]}" cluster info 2>/dev/null | tr -d '\r' | awk -F: '/cluster_known_nodes/ {print $2}')" -ge "${#RCLUSTER_PORTS[@]}" ]]
}

rcluster_up() {
  local t0 p dir started=0 created=0
  t0="$(now)"
  command -v redis-server >/dev/null 2>&1 || apt_install redis-server
  need_cmd redis-cli redis-tools
  for p in "${RCLUSTER_PORTS[@]}"; do
    [[ -n "$(rcluster_pid "$p")" ]] && continue
    dir="$RCLUSTER_DIR/$p"
    mkdir -p "$dir"
    port_open "$REDIS_HOST" "$p" && die "port $p is taken by something that is not node $p of $RCLUSTER_DIR"
    # 9>&-: the daemon must not inherit the lock fd.
    # The cluster bus port defaults to port + 10000 (37001..), inside Linux's ephemeral range, where an
    # outgoing connection can hold it when the node starts: keep it below (port - 10000).
    redis-server "$CONFIG_DIR/redis/cluster-node.conf" --port "$p" --cluster-port "$((p - 10000))" --bind "$REDIS_HOST" --dir "$dir" \
      --cluster-config-file "$dir/nodes.conf" --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" \
      --daemonize yes 9>&- || die "redis-server on $p failed (log: $dir/redis.log)"
    started=$((started + 1))
  done
  local deadline=$((SECONDS + SERVICE_TIMEOUT))
  for p in "${RCLUSTER_PORTS[@]}"; do
    until [[ "$(timeout 2 redis-cli -h "$REDIS_HOST" -p "$p" ping 2>/dev/null)" == PONG ]]; do
      ((SECONDS < deadline)) || die "redis-cluster node $p not answering (log: $RCLUSTER_DIR/$p/redis.log)"
      sleep 0.2
    done
  done
  if [[ ! -f "$RCLUSTER_DIR/created" ]]; then
    local hosts=()
    for p in "${RCLUSTER_PORTS[@]}"; do hosts+=("$REDIS_HOST:$p"); done
    redis-cli --cluster create "${hosts[@]}" --cluster-replicas 1 --cluster-yes >"$RCLUSTER_DIR/create.log" 2>&1 \
      || { cat "$RCLUSTER_DIR/create.log" >&2; die "redis-cli --cluster create failed"; }
    touch "$RCLUSTER_DIR/created"
    created=1
  fi
  deadline=$((SECONDS + SERVICE_TIMEOUT))
  until rcluster_ok; do
    ((SECONDS < deadline)) || die "redis-cluster not ok after ${SERVICE_TIMEOUT}s (redis-cli -p ${RCLUSTER_PORTS[0]} cluster nodes)"
    sleep 0.3
  done
  log "redis-cluster ready in $(elapsed_since "$t0") s ($started started$([[ $created == 1 ]] && echo ', created'); nodes $(IFS=','; echo "${RCLUSTER_PORTS[*]/#/$REDIS_HOST:}"))"
}

rcluster_down() {
  local p pid
  for p in "${RCLUSTER_PORTS[@]}"; do
    pid="$(rcluster_pid "$p")"
    [[ -n "$pid" ]] || continue
    kill -TERM "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
  done
  log "redis-cluster stopped (state kept in $RCLUSTER_DIR; rm -rf it to re-create)"
}

rcluster_status() {
  local p pid rc=0 role
  for p in "${RCLUSTER_PORTS[@]}"; do
    pid="$(rcluster_pid "$p")"
    if [[ -n "$pid" ]]; then
      role="$(timeout 2 redis-cli -h "$REDIS_HOST" -p "$p" role 2>/dev/null | head -n 1)"
      printf 'redis-%s up    %s:%s (pid %s, %s)\n' "$p" "$REDIS_HOST" "$p" "$pid" "${role:-?}"
    else
      printf 'redis-%s down  %s:%s\n' "$p" "$REDIS_HOST" "$p"; rc=1
    fi
  done
  if rcluster_ok; then echo 'redis-cluster ok'; else echo 'redis-cluster not ok'; rc=1; fi
  return "$rc"
}

# ------------------------------------------------ mariadb-shards (extra mariadbd instances)
# One mariadbd per port under $INFRA_DIR/mariadb-shards/<port> (own data directory, socket, pid and
# log; root without password on loopback), for the sharded outbox (OUTBOX_SHARDS). `up` creates the
# data directory once and starts what is missing; a shard killed by a test restarts with its data.

MSHARD_DIR="$INFRA_DIR/mariadb-shards"
IFS=',' read -r -a MSHARD_PORTS <<<"${MARIADB_SHARD_PORTS:-3307}"

mshard_pid() {
  local dir="$MSHARD_DIR/$1" pid
  [[ -f "$dir/mysqld.pid" ]] || return 0
  pid="$(cat "$dir/mysqld.pid" 2>/dev/null || true)"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 0
  if kill -0 "$pid" 2>/dev/null && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "--port=$1"; then echo "$pid"; fi
}

mshard_ok() { mariadb -uroot -h"$MYSQL_HOST" -P"$1" --connect-timeout=2 -e 'select 1' >/dev/null 2>&1; }

mshard_up() {
  local t0 p dir started=0
  t0="$(now)"
  [[ -x /usr/sbin/mariadbd ]] || apt_install mariadb-server
  need_cmd mariadb mariadb-client
  for p in "${MSHARD_PORTS[@]}"; do
    [[ -n "$(mshard_pid "$p")" ]] && continue
    dir="$MSHARD_DIR/$p"
    mkdir -p "$dir"
    port_open "$MYSQL_HOST" "$p" && die "port $p is taken by something that is not shard $p of $MSHARD_DIR"
    if [[ ! -d "$dir/data/mysql" ]]; then
      mariadb-install-db --no-defaults --datadir="$dir/data" --auth-root-authentication-method=normal \
        --skip-test-db --user="$(id -un)" >"$dir/install.log" 2>&1 || { cat "$dir/install.log" >&2; die "mariadb-install-db for $p failed"; }
    fi
    # 9>&-: the daemon must not inherit the lock fd.
    (/usr/sbin/mariadbd --no-defaults --datadir="$dir/data" --port="$p" --bind-address="$MYSQL_HOST" \
      --socket="$dir/mysqld.sock" --pid-file="$dir/mysqld.pid" --log-error="$dir/error.log" \
      --user="$(id -un)" --innodb-buffer-pool-size=128M --max-connections=500 \
      --character-set-server=utf8mb4 --collation-server=utf8mb4_general_ci 9>&- >/dev/null 2>&1 &)
    started=$((started + 1))
  done
  local deadline=$((SECONDS + SERVICE_TIMEOUT))
  for p in "${MSHARD_PORTS[@]}"; do
    until mshard_ok "$p"; do
      ((SECONDS < deadline)) || die "mariadb shard $p not answering (log: $MSHARD_DIR/$p/error.log)"
      sleep 0.2
    done
    local db
    for db in "${DATABASES[@]}"; do
      mariadb -uroot -h"$MYSQL_HOST" -P"$p" -e "CREATE DATABASE IF NOT EXISTS \`$db\` CHARACTER SET utf8mb4" \
        || die "could not create database $db on shard $p"
    done
  done
  log "mariadb-shards ready in $(elapsed_since "$t0") s ($started started; ports ${MSHARD_PORTS[*]})"
}

mshard_down() {
  local p pid
  for p in "${MSHARD_PORTS[@]}"; do
    pid="$(mshard_pid "$p")"
    [[ -n "$pid" ]] || continue
    kill -TERM "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
  done
  log "mariadb-shards stopped (data kept in $MSHARD_DIR; rm -rf it to re-create)"
}

mshard_status() {
  local p pid rc=0
  for p in "${MSHARD_PORTS[@]}"; do
    pid="$(mshard_pid "$p")"
    if [[ -n "$pid" ]] && mshard_ok "$p"; then
      printf 'mariadb-%s up    %s:%s (pid %s)\n' "$p" "$MYSQL_HOST" "$p" "$pid"
    else
      printf 'mariadb-%s down  %s:%s\n' "$p" "$MYSQL_HOST" "$p"; rc=1
    fi
  done
  return "$rc"
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

usage() { echo "usage: $0 up|down|status | kafka-cluster up|down|status | redis-cluster up|down|status | mariadb-shards up|down|status" >&2; exit 2; }

case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  kafka-cluster)
    case "${2:-}" in
      up) take_lock; kcluster_up ;;
      down) take_lock; kcluster_down ;;
      status) kcluster_status ;;
      *) usage ;;
    esac ;;
  redis-cluster)
    case "${2:-}" in
      up) take_lock; rcluster_up ;;
      down) take_lock; rcluster_down ;;
      status) rcluster_status ;;
      *) usage ;;
    esac ;;
  mariadb-shards)
    case "${2:-}" in
      up) take_lock; mshard_up ;;
      down) take_lock; mshard_down ;;
      status) mshard_status ;;
      *) usage ;;
    esac ;;
  *) usage ;;
esac
