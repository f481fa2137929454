#!/usr/bin/env bash
# The whole suite twice: on SQLite, then on a throwaway PostgreSQL server on a loopback port.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
export PM_REQUIRE_BROWSER=1 PYTHONDONTWRITEBYTECODE=1

"$BIN/ruff" check .

echo "== tests on SQLite =="
"$BIN/pytest" "$@"

echo "== tests on PostgreSQL =="
PGBIN=$(dirname "$(ls -d /usr/lib/postgresql/*/bin/initdb | sort -V | tail -n 1)")
PGDIR=$(mktemp -d /tmp/pm-pg.XXXXXX)
PORT=$("$BIN/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
AS=()
if [ "$(id -u)" -eq 0 ]; then  # the server refuses to run as root
  chown postgres "$PGDIR"
  AS=(runuser -u postgres --)
fi
stop_pg() {
  "${AS[@]}" "$PGBIN/pg_ctl" -D "$PGDIR/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$PGDIR"
}
trap stop_pg EXIT
"${AS[@]}" "$PGBIN/initdb" -D "$PGDIR/data" -A trust -U postgres -E UTF8 --locale=C.UTF-8 >/dev/null
"${AS[@]}" "$PGBIN/pg_ctl" -D "$PGDIR/data" -l "$PGDIR/log" -w \
  -o "-p $PORT -k $PGDIR -c listen_addresses=127.0.0.1 -c fsync=off" start >/dev/null
TEST_DATABASE_URL="postgresql+psycopg://postgres@127.0.0.1:$PORT/postgres" "$BIN/pytest" "$@"
