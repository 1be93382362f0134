#!/usr/bin/env bash
# Runs a main class with the jars of /opt/kafka/libs, taking the settings of Kafka's own
# kafka-run-class.sh from the environment: KAFKA_HEAP_OPTS, KAFKA_JVM_PERFORMANCE_OPTS,
# KAFKA_JMX_OPTS, KAFKA_LOG4J_OPTS, KAFKA_OPTS, LOG_DIR, CLASSPATH, JAVA_HOME.
# Usage: kafka-run-class.sh [-name NAME] [-loggc] CLASS [ARGS...] (-daemon is not supported here).
set -e
base_dir=$(cd "$(dirname "$0")/.." && pwd)
while [ $# -gt 0 ]; do
  case "$1" in
    -name) shift 2 ;;
    -loggc) shift ;;
    -daemon) echo "kafka-run-class.sh: -daemon is not supported in this image" >&2; exit 1 ;;
    *) break ;;
  esac
done
if [ $# -lt 1 ]; then
  echo "USAGE: $0 [-name servicename] [-loggc] classname [opts]" >&2
  exit 1
fi
LOG_DIR=${LOG_DIR:-$base_dir/logs}
KAFKA_HEAP_OPTS=${KAFKA_HEAP_OPTS:--Xmx256M}
KAFKA_JVM_PERFORMANCE_OPTS=${KAFKA_JVM_PERFORMANCE_OPTS:--server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent -XX:MaxInlineLevel=15 -Djava.awt.headless=true}
KAFKA_LOG4J_OPTS=${KAFKA_LOG4J_OPTS:--Dlog4j.configuration=file:$base_dir/config/tools-log4j.properties}
java=java
[ -n "$JAVA_HOME" ] && java=$JAVA_HOME/bin/java
# Word splitting of the *_OPTS variables is intended (each holds several JVM options).
# shellcheck disable=SC2086
exec "$java" $KAFKA_HEAP_OPTS $KAFKA_JVM_PERFORMANCE_OPTS $KAFKA_JMX_OPTS "-Dkafka.logs.dir=$LOG_DIR" \
  $KAFKA_LOG4J_OPTS -cp "${CLASSPATH:+$CLASSPATH:}$base_dir/libs/*" $KAFKA_OPTS "$@"
