#!/usr/bin/env bash
# `herald send` on PostgreSQL with one and with two delivery workers, against the same send
# on SQLite, in one run: each as users run it, as processes timed by /usr/bin/time.
#
#   bash benches/compare-postgres.sh [COUNT]      (default: 100000)
#
# For each setup: a fresh installation (the bundled glossary and templates, COUNT subscribers
# imported first with `herald subscribers import`), then `herald send` to Postfix's
# `smtp-sink` on loopback. SQLite: the send delivers (as today). PostgreSQL, 0 workers: the
# send delivers itself. PostgreSQL, 1 and 2 workers: `[delivery] sender_delivers = false`,
# the workers (`herald worker`, started first) deliver and the send freezes the issue, wakes
# them and follows them to the end. The rate is COUNT over the send's elapsed time (process
# start to exit: compose, freeze and every message); each process's peak RSS is reported.
# Needs postfix (smtp-sink) and a PostgreSQL server: POSTGRES_URL, default
# postgres://postgres@127.0.0.1:5432/test (a database herald_bench is made and dropped there).
# SESSIONS (default 8) is each sender's and worker's concurrency; PORT the sink's port.
set -euo pipefail
cd "$(dirname "$0")/.."
count=${1:-100000}
sessions=${SESSIONS:-8}
port=${PORT:-2599}
admin=${POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}
bench_db="${admin%/*}/herald_bench"
cargo build --release --quiet
herald=$PWD/target/release/herald
# shellcheck source=benches/sink.sh
. benches/sink.sh
psql_admin() { psql "$admin" -qAt -c "$1" >/dev/null; }

# setup NAME URL SENDER_DELIVERS: an installation in $work/NAME with COUNT subscribers imported.
setup() {
    local dir="$work/$1"
    installation "$dir" "$count" "$2" "[schedule]
poll_seconds = 1

[delivery]
concurrency = $sessions
sender_delivers = $3"
    (cd "$dir" && "$herald" subscribers import subscribers/list.csv >/dev/null 2>import.log)
}

# run NAME WORKERS: the send (and WORKERS workers) of installation NAME; prints a table row.
run() {
    local name=$1 workers=$2 dir="$work/$1" pids=()
    (
        cd "$dir"
        for w in $(seq "$workers"); do
            /usr/bin/time -o "worker$w.time" -f "elapsed %e\nuser %U\nsys %S\nrss %M" \
                "$herald" worker >/dev/null 2>"worker$w.log" &
            pids+=($!)
        done
        # The workers are listening before the issue is frozen.
        for w in $(seq "$workers"); do
            for _ in $(seq 100); do grep -q "delivery worker ready" "worker$w.log" && break; sleep 0.1; done
        done
        /usr/bin/time -o send.time -f "elapsed %e\nuser %U\nsys %S\nrss %M" \
            "$herald" send >/dev/null 2>send.log || { tail -5 send.log; exit 1; }
        # /usr/bin/time reports when its child (the worker) exits: stop the worker.
        for pid in "${pids[@]}"; do pkill -TERM -P "$pid"; done
        wait
    )
    local rss="$(( $(report rss "$dir/send.time") / 1024 )) MB"
    for w in $(seq "$workers"); do
        rss="$rss, worker $w: $(( $(report rss "$dir/worker$w.time") / 1024 )) MB"
    done
    python3 -c "import sys; c, e = int(sys.argv[1]), float(sys.argv[2]); print(f'{sys.argv[3]:<28} {c / e:>9.0f} {e:>9.2f} s   {sys.argv[4]}')" \
        "$count" "$(report elapsed "$dir/send.time")" "$name" "send: $rss"
}

printf "%-28s %9s %11s   %s\n" setup "msg/s" elapsed "peak RSS"
setup sqlite "sqlite://herald.db" true
run sqlite 0
for workers in 0 1 2; do
    psql_admin "DROP DATABASE IF EXISTS herald_bench WITH (FORCE)"
    psql_admin "CREATE DATABASE herald_bench"
    name="postgres-$workers-workers"
    if [ "$workers" = 0 ]; then
        setup "$name" "$bench_db" true
    else
        setup "$name" "$bench_db" false
    fi
    run "$name" "$workers"
    rm -rf "${work:?}/$name"
done
psql_admin "DROP DATABASE IF EXISTS herald_bench WITH (FORCE)"
