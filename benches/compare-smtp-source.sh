#!/usr/bin/env bash
# Sends the same number of messages of the same size to Postfix's smtp-sink twice in one run:
# once with Postfix's own load generator smtp-source, once through Herald's whole send path
# (benches/send.rs). Needs the Debian package postfix (smtp-sink, smtp-source).
#
#   bash benches/compare-smtp-source.sh [COUNT] [SESSIONS]
set -euo pipefail
cd "$(dirname "$0")/.."
count=${1:-10000}
sessions=${2:-8}
port=${PORT:-2598}
size=19896 # the size of the benchmark's message, as benches/send.rs prints it

user=()
[ "$(id -u)" = 0 ] && user=(-u nobody)
smtp-sink "${user[@]}" "127.0.0.1:$port" 1000 &
sink=$!
trap 'kill $sink 2>/dev/null || true' EXIT
sleep 1

cargo bench --bench send --no-run >/dev/null 2>&1
start=$(date +%s.%N)
smtp-source -s "$sessions" -l "$size" -m "$count" -f weekly@example.com -t reader@example.org "127.0.0.1:$port"
end=$(date +%s.%N)
python3 -c "d = $end - $start; print(f'smtp-source: {$count} messages of {$size} bytes, {$sessions} sessions: {d:.2f} s, {$count / d:.0f} messages/s')"

HERALD_BENCH_COUNTS="$count" HERALD_BENCH_CONCURRENCY="$sessions" HERALD_BENCH_SMTP_URL="smtp://127.0.0.1:$port" \
    cargo bench --bench send 2>/dev/null | tail -n +1
