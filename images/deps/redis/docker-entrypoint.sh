#!/bin/sh
# The entrypoint of the redis image: options (or a *.conf file) as the first argument run
# redis-server with them; started as root, redis-server runs as user redis after /data's files are
# handed to it; the default umask 022 becomes 077 (the AOF and dumps readable by their owner only).
set -e
case "$1" in
  -*|*.conf) set -- redis-server "$@" ;;
esac
if [ "$1" = redis-server ] && [ "$(id -u)" = 0 ]; then
  find . ! -user redis -exec chown redis '{}' +
  exec setpriv --reuid=redis --regid=redis --init-groups "$0" "$@"
fi
if [ "$(umask)" = 0022 ]; then
  umask 0077
fi
exec "$@"
