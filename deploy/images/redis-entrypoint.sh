#!/bin/sh
# The official image's entrypoint conventions, for Debian's redis-server: flags alone are
# redis-server's; started as root, it hands /data to the user redis and drops to it; with no
# configuration file, protected mode is off (containers on the compose network connect
# without a password, as with the official image: do not publish the port beyond the host).
set -eu
case "${1:-}" in -*) set -- redis-server "$@" ;; esac
if [ "${1:-}" = redis-server ] && [ "$(id -u)" = 0 ]; then
    chown -R redis:redis /data
    exec setpriv --reuid=redis --regid=redis --init-groups "$0" "$@"
fi
if [ "${1:-}" = redis-server ]; then
    case "${2:-}" in
        *.conf) ;;
        *) shift; set -- redis-server --protected-mode no "$@" ;;
    esac
fi
exec "$@"
