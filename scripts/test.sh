#!/usr/bin/env bash
# The whole suite twice: on SQLite, then on a throwaway PostgreSQL server on a loopback port.
# Each pass migrates one template database and runs pytest-xdist workers on clones of it
# (tests/databases.py). PYTEST_WORKERS overrides the worker count (default: one per core).
# Extra arguments go to both pytest runs.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
export PM_REQUIRE_BROWSER=1 PYTHONDONTWRITEBYTECODE=1
XDIST=(-n "${PYTEST_WORKERS:-auto}" --dist loadgroup)

elapsed() { printf '%dm %02ds' $(($1 / 60)) $(($1 % 60)); }
run_pytest() {  # pytest's "no tests collected" (5) is a failure here, never a silent pass
  local rc=0
  "$BIN/pytest" "${XDIST[@]}" "$@" || rc=$?
  if [ "$rc" -eq 5 ]; then
    echo "pytest collected no tests" >&2
    rc=1
  fi
  return "$rc"
}
START=$SECONDS
trap 'echo "== wall time: $(elapsed $((SECONDS - START))) =="' EXIT

"$BIN/ruff" check .

echo "== tests on SQLite =="
PASS=$SECONDS
run_pytest "$@"
echo "== SQLite pass: $(elapsed $((SECONDS - PASS))) =="

echo "== tests on PostgreSQL =="
PASS=$SECONDS
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
  echo "== wall time: $(elapsed $((SECONDS - START))) =="
}
trap stop_pg EXIT
"${AS[@]}" "$PGBIN/initdb" -D "$PGDIR/data" -A trust -U postgres -E UTF8 --locale=C.UTF-8 >/dev/null
"${AS[@]}" "$PGBIN/pg_ctl" -D "$PGDIR/data" -l "$PGDIR/log" -w \
  -o "-p $PORT -k $PGDIR -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
  start >/dev/null
TEST_DATABASE_URL="postgresql+psycopg://postgres@127.0.0.1:$PORT/postgres" run_pytest "$@"
echo "== PostgreSQL pass: $(elapsed $((SECONDS - PASS))) =="
