#!/usr/bin/env bash
# A throwaway PostgreSQL server for the feedback-store tests: `scripts/postgres.sh start` initialises a cluster in a
# temporary folder, starts it on a free localhost port and prints the SQLAlchemy URL; `scripts/postgres.sh stop
# <folder>` stops it and removes the folder. Needs the Debian package (`apt-get install postgresql`); .ci/run
# installs it when missing. The server runs as the `postgres` user (it refuses to run as root).
#   url=$(scripts/postgres.sh start)   # postgresql+psycopg2://divrec@127.0.0.1:<port>/divrec  (folder on stderr)
set -euo pipefail
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)
[ -n "$bin" ] || { echo "error: PostgreSQL is not installed; run: apt-get install -y postgresql" >&2; exit 2; }
as_pg=()
[ "$(id -u)" = 0 ] && as_pg=(runuser -u postgres --)
case "${1:-}" in
  start)
    dir=$(mktemp -d /tmp/divrec-pg.XXXXXX)
    [ "$(id -u)" = 0 ] && chown postgres "$dir"
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    "${as_pg[@]}" "$bin/initdb" -D "$dir/data" -U divrec --auth=trust >/dev/null
    "${as_pg[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -w \
      -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=on" start >/dev/null
    "${as_pg[@]}" "$bin/createdb" -h 127.0.0.1 -p "$port" -U divrec divrec
    echo "$dir" >&2
    echo "postgresql+psycopg2://divrec@127.0.0.1:$port/divrec"
    ;;
  stop)
    dir=${2:?usage: scripts/postgres.sh stop <folder>}
    "${as_pg[@]}" "$bin/pg_ctl" -D "$dir/data" -m fast stop >/dev/null || true
    rm -rf "$dir"
    ;;
  *) echo "usage: scripts/postgres.sh start | stop <folder>" >&2; exit 2 ;;
esac
