#!/usr/bin/env bash
# Single-node Apache Kafka (KRaft) from the jars on Maven Central, no Docker.
#   kafka.sh install   fetch the broker jars once (cached under $DATA_DIR/kafka/libs)
#   kafka.sh start     format storage on first start, start the broker, wait for its port
#   kafka.sh stop      stop it cleanly
#   kafka.sh status
set -euo pipefail
source "$(dirname "$0")/common.sh"

KAFKA_HOME=$DATA_DIR/kafka
LIBS=$KAFKA_HOME/libs
AGENT_DIR=$KAFKA_HOME/agent
JMX_PORT=${CXM_KAFKA_JMX_PORT:-7071}
POM=$ROOT/deploy/kafka/pom.xml
PID=$RUN_DIR/kafka.pid
LOG=$LOG_DIR/kafka.log
CONF=$KAFKA_HOME/server.properties
STORAGE=$KAFKA_HOME/data

install() {
  command -v java >/dev/null || die "java (17+) is needed for the Kafka broker: apt-get install openjdk-17-jre-headless"
  # The stamp records which pom the jars came from, so a version bump refetches.
  local stamp=$LIBS/.pom.sha256 want
  want=$(sha256sum "$POM" | cut -d' ' -f1)
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then return 0; fi
  command -v mvn >/dev/null || die "maven is needed once to fetch the Kafka jars: apt-get install maven"
  log "fetching the Kafka broker jars from Maven Central (once)"
  rm -rf "$LIBS" "$AGENT_DIR"
  { mvn -q -B -f "$POM" dependency:copy-dependencies \
      -DoutputDirectory="$LIBS" -DincludeScope=runtime \
    && mvn -q -B -f "$POM" dependency:copy -DoutputDirectory="$AGENT_DIR"; } \
    >"$LOG_DIR/kafka-fetch.log" 2>&1 \
    || { tail_log "$LOG_DIR/kafka-fetch.log"; die "mvn could not fetch the Kafka jars"; }
  echo "$want" >"$stamp"
}

kjava() { java -Xms256m -Xmx${CXM_KAFKA_HEAP:-1g} -cp "$LIBS/*" -Dkafka.logfile="$LOG" \
  -Dlog4j2.configurationFile="$ROOT/deploy/kafka/log4j2.properties" "$@"; }

render_config() {
  sed -e "s|@KAFKA_PORT@|$KAFKA_PORT|g" -e "s|@CONTROLLER_PORT@|$KAFKA_CONTROLLER_PORT|g" \
      -e "s|@LOG_DIRS@|$STORAGE|g" "$ROOT/deploy/kafka/server.properties.in" >"$CONF"
}

start() {
  # a running broker keeps its jars: never refetch them under it
  if pid_alive "$PID"; then log "kafka already running (pid $(cat "$PID"))"; return 0; fi
  install
  if port_open "$KAFKA_PORT"; then
    die "port $KAFKA_PORT is taken by another process; stop it or set CXM_KAFKA_PORT"
  fi
  if port_open "$JMX_PORT"; then
    die "port $JMX_PORT (broker metrics) is taken by another process; set CXM_KAFKA_JMX_PORT"
  fi
  render_config
  if [ ! -f "$STORAGE/meta.properties" ]; then
    log "formatting KRaft storage in $STORAGE"
    local cluster_id
    cluster_id=$(kjava kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n 1)
    kjava kafka.tools.StorageTool format -t "$cluster_id" -c "$CONF" >>"$LOG_DIR/kafka-format.log" 2>&1 \
      || { tail_log "$LOG_DIR/kafka-format.log"; die "kafka storage format failed"; }
  fi
  log "starting kafka on 127.0.0.1:$KAFKA_PORT"
  setsid nohup java -Xms256m -Xmx${CXM_KAFKA_HEAP:-1g} -XX:+UseG1GC \
    -javaagent:"$AGENT_DIR/jmx_prometheus_javaagent.jar=127.0.0.1:$JMX_PORT:$ROOT/deploy/kafka/jmx-exporter.yaml" \
    ${CXM_KAFKA_JAVA_OPTS:-} -cp "$LIBS/*" -Dkafka.logfile="$LOG" \
    -Dlog4j2.configurationFile="$ROOT/deploy/kafka/log4j2.properties" \
    kafka.Kafka "$CONF" >"$LOG_DIR/kafka.out" 2>&1 </dev/null &
  echo $! >"$PID"
  local i
  for ((i = 0; i < 600; i++)); do
    if ! pid_alive "$PID"; then
      tail_log "$LOG_DIR/kafka.out"; tail_log "$LOG"; die "kafka exited during start"
    fi
    if port_open "$KAFKA_PORT"; then log "kafka is listening"; return 0; fi
    sleep 0.1
  done
  tail_log "$LOG"; die "kafka did not open port $KAFKA_PORT within 60s"
}

stop() { stop_pid "$PID" kafka 60; }

status() {
  if pid_alive "$PID"; then
    echo "kafka: running (pid $(cat "$PID")) on 127.0.0.1:$KAFKA_PORT, metrics :$JMX_PORT"
  else echo "kafka: stopped"; fi
}

"${1:-status}"
