#!/usr/bin/env bash
# `herald send` as users run it, against Postfix's own load generator, in one run.
#
#   bash benches/compare-smtp-source.sh [COUNT ...]      (default: 20000 200000)
#
# For each COUNT: a fresh installation (the bundled glossary and templates, COUNT subscribers
# in one CSV file), then the release binary `herald send` as a process, timed by /usr/bin/time
# from process start to exit (subscriber import, compose, freeze and every message), to
# Postfix's `smtp-sink` on loopback; then `smtp-source` with the same count, message size and
# sessions to the same sink. Prints both rates, the ratio, Herald's CPU per message and peak
# RSS. Needs the Debian package postfix (smtp-sink, smtp-source). The import and the send are
# also timed apart (`herald subscribers import` first), so the table can report both.
# SESSIONS (default 8) is the concurrency of both; PORT the sink's port; HERALD a binary to
# measure instead of building this checkout's.
set -euo pipefail
cd "$(dirname "$0")/.."
counts=("$@")
[ ${#counts[@]} -eq 0 ] && counts=(20000 200000)
sessions=${SESSIONS:-8}
port=${PORT:-2598}
# HERALD=/path/to/herald measures another build (a before/after comparison in one session).
if [ -z "${HERALD:-}" ]; then
    cargo build --release --quiet
fi
herald=${HERALD:-$PWD/target/release/herald}
# shellcheck source=benches/sink.sh
. benches/sink.sh
printf "%-9s %-9s %-9s %-6s %-11s %-10s %-9s %-11s %-8s\n" count herald/s source/s ratio "CPU us/msg" "peak RSS" import "import RSS" freeze
for count in "${counts[@]}"; do
    dir="$work/$count"
    installation "$dir" "$count" "sqlite://herald.db" "[delivery]
concurrency = $sessions"
    (
        cd "$dir"
        /usr/bin/time -o import.time -f "elapsed %e\nuser %U\nsys %S\nrss %M" \
            "$herald" subscribers import subscribers/list.csv >/dev/null 2>import.log
        /usr/bin/time -o send.time -f "elapsed %e\nuser %U\nsys %S\nrss %M" \
            "$herald" send >/dev/null 2>send.log || { tail -5 send.log; exit 1; }
        # The size of one message as it went out, for smtp-source's -l.
        "$herald" preview --out preview >/dev/null 2>&1 || true
    )
    size=$(stat -c %s "$dir"/preview/issue.eml 2>/dev/null || echo 16384)
    start=$(date +%s.%N)
    smtp-source -s "$sessions" -l "$size" -m "$count" -f weekly@example.com -t reader@example.org "127.0.0.1:$port"
    end=$(date +%s.%N)
    python3 - "$count" "$start" "$end" "$size" "$(report elapsed "$dir/send.time")" \
        "$(report user "$dir/send.time")" "$(report sys "$dir/send.time")" "$(report rss "$dir/send.time")" \
        "$(report elapsed "$dir/import.time")" "$(report rss "$dir/import.time")" "$dir/send.log" <<'PY'
import sys
from datetime import datetime
count, start, end, size, elapsed, user, sys_, rss, imp, imp_rss, log = sys.argv[1:]
count = int(count)
source = count / (float(end) - float(start))
herald = count / float(elapsed)
cpu = (float(user) + float(sys_)) / count * 1e6
# The freeze: from the end of the subscriber import to the frozen issue (plan, render, one
# ledger row per subscriber), from the send's own log lines.
stamps = {}
for line in open(log):
    for key in ("imported subscriber files", "froze the issue"):
        if key in line and key not in stamps:
            stamps[key] = datetime.fromisoformat(line.split()[0].replace("Z", "+00:00"))
freeze = (stamps["froze the issue"] - stamps["imported subscriber files"]).total_seconds()
print(f"{count:<9} {herald:<9.0f} {source:<9.0f} {herald / source:<6.2f} {cpu:<11.0f} "
      f"{int(rss) / 1024:<5.1f} MB  {float(imp):<6.2f} s  {int(imp_rss) / 1024:<5.1f} MB    {freeze:.2f} s"
      f"   (message {size} bytes)")
PY
    rm -rf "$dir"
done
