#!/usr/bin/env bash
# Make sure the PostgreSQL and Redis this machine provides answer; start them if they do not.
# The scale-out tests talk to them for real (127.0.0.1:5432 database "test", 127.0.0.1:6379).
set -u

pg_up() { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; }
redis_up() { [ "$(redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null)" = "PONG" ]; }

if ! pg_up; then
  echo "services: starting PostgreSQL" >&2
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start >&2 || true
  for _ in $(seq 1 30); do pg_up && break; sleep 1; done
fi
if ! redis_up; then
  echo "services: starting Redis" >&2
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no >&2 || true
  for _ in $(seq 1 30); do redis_up && break; sleep 1; done
fi

ok=0
pg_up && echo "services: PostgreSQL answers on 127.0.0.1:5432" >&2 || { echo "services: PostgreSQL does not answer on 127.0.0.1:5432" >&2; ok=1; }
redis_up && echo "services: Redis answers on 127.0.0.1:6379" >&2 || { echo "services: Redis does not answer on 127.0.0.1:6379" >&2; ok=1; }
exit $ok
