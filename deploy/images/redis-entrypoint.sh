#!/bin/sh
# The official image's entrypoint conventions, for Debian's redis-server: flags alone are
# redis-server's; started as root, it hands /data to the user redis and drops to it; files it
# writes are private (umask 0077); unless a configuration file given as the first argument
# sets protected-mode, protected mode is off (containers on the compose network connect
# without a password, as with the official image: publish the port on loopback only).
set -eu
umask 0077
case "${1:-}" in -*) set -- redis-server "$@" ;; esac
if [ "${1:-}" = redis-server ] && [ "$(id -u)" = 0 ]; then
    chown -R redis:redis /data
    exec setpriv --reuid=redis --regid=redis --init-groups "$0" "$@"
fi
if [ "${1:-}" = redis-server ] && ! { [ -f "${2:-}" ] && grep -q '^protected-mode' "$2"; }; then
    shift
    set -- redis-server --protected-mode no "$@"
fi
exec "$@"
