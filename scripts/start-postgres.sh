#!/usr/bin/env bash
# Starts the machine's PostgreSQL when it is not accepting connections, then waits until it does.
# The cluster tests need it at 127.0.0.1:5432 (user postgres, database test).
set -euo pipefail
ready() { pg_isready -q -h 127.0.0.1 -p 5432 -U postgres; }
if ready; then exit 0; fi
if ! command -v pg_ctlcluster >/dev/null; then
  echo "PostgreSQL is not running and pg_ctlcluster is missing: install Debian's postgresql." >&2
  exit 1
fi
echo "Starting PostgreSQL..."
# One cluster named "main" per installed major version; start each that is down.
for version in $(ls /etc/postgresql); do
  pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
done
for _ in $(seq 1 60); do
  if ready; then exit 0; fi
  sleep 1
done
echo "PostgreSQL did not accept connections within 60 seconds." >&2
exit 1
