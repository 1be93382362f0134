#!/bin/bash
# The entrypoint of the influxdb image: options as the first argument run influxd with them.
# The upstream image also creates databases and users from INFLUXDB_DB, INFLUXDB_ADMIN_USER, ...
# and runs /docker-entrypoint-initdb.d on the first start; this stand-in does not (the chart
# creates its database with a Job), and says so instead of starting without them.
set -e
if [ "${1:0:1}" = - ]; then
  set -- influxd "$@"
fi
if [ "$1" = influxd ]; then
  for name in INFLUXDB_DB INFLUXDB_ADMIN_USER INFLUXDB_USER INFLUXDB_READ_USER INFLUXDB_WRITE_USER; do
    if [ -n "${!name:-}" ]; then
      echo "$name is set: the first-start setup of the influxdb image is not part of this local stand-in; use the upstream image, or create it with influx -execute" >&2
      exit 1
    fi
  done
  if [ -n "$(ls -A /docker-entrypoint-initdb.d 2>/dev/null)" ]; then
    echo "/docker-entrypoint-initdb.d is not run by this local stand-in of the influxdb image: use the upstream image" >&2
    exit 1
  fi
fi
exec "$@"
