#!/usr/bin/env bash
# The figures of "the daemon works from memory", measured as users run Herald: the release
# binary as a process, timed from start to exit by /usr/bin/time (or by ab against a running
# `herald run`).
#
#   bash benches/daemon-from-memory.sh [ROWS]     (ROWS defaults to 1000000)
#
# 1. `GET /` and `GET /glossary/{slug}` with ab -k at 8 concurrent clients (apache2-utils).
# 2. `herald send` with ROWS subscribers: a changed file (imported), then an unchanged one
#    (skipped), each from process start to the frozen issue (a review window makes `send`
#    stop once the issue is frozen and the editors' copy is written), with peak RSS.
# 3. `herald preview` with the feed samples of tests/fixtures/feeds served by
#    `python3 -m http.server` (a plain server that queues few connections).
set -euo pipefail
cd "$(dirname "$0")/.."
rows=${1:-1000000}
cargo build --release --quiet
herald=$PWD/target/release/herald
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
cp -r glossary templates "$work/"
mkdir -p "$work/subscribers"
cat > "$work/herald.toml" <<TOML
[newsletter]
name = "AI Glossary Weekly"
from = "AI Glossary <weekly@example.com>"
base_url = "http://127.0.0.1:18480/"

[store]
url = "sqlite://herald.db"

[schedule]
review_hours = 24
editors = ["editor@example.com"]

[http]
listen = "127.0.0.1:18480"
TOML
cd "$work"
export HERALD_SECRET=benchmark-secret-0123456789abcdef0123456789

echo "== 1. pages at 8 concurrent clients (ab -k -c 8 -n 20000)"
"$herald" run 2>/dev/null &
daemon=$!
for _ in $(seq 100); do curl -sf http://127.0.0.1:18480/healthz >/dev/null && break; sleep 0.1; done
for path in / /glossary/large-language-model /archive; do
    ab -k -q -c 8 -n 20000 "http://127.0.0.1:18480$path" 2>/dev/null |
        awk -v p="$path" '/Requests per second/ {rps=$4} /99%/ {p99=$2} END {printf "GET %-32s %8.0f requests/s, p99 %s ms\n", p, rps, p99}'
done
kill -TERM $daemon; wait $daemon || true
rm -f herald.db*

echo "== 2. herald send with $rows subscribers, start to frozen issue"
python3 - "$rows" <<'PY'
import sys
rows = int(sys.argv[1])
with open("subscribers/list.csv", "w") as f:
    f.write("email,name,first_name\n")
    for i in range(rows):
        f.write(f"reader{i}@example.com,Reader {i},R{i}\n")
PY
ls -l subscribers/list.csv | awk '{printf "file: %.1f MB\n", $5 / 1e6}'
measure() {
    /usr/bin/time -f "%e s elapsed, %U s user, %S s sys, peak RSS %M KB" "$herald" send 2>&1 >/dev/null |
        grep -E "elapsed|imported a subscriber file|unchanged since|froze the issue" | sed -E 's/^[0-9]{4}-[0-9]{2}-[0-9]{2}T[^ ]+ +//' | cut -c1-160
}
echo "-- changed file (first import)"
measure
"$herald" issues discard 1 >/dev/null
echo "-- unchanged file"
measure
rm -f herald.db* subscribers/list.csv

echo "== 3. herald preview with $(ls "$OLDPWD/tests/fixtures/feeds" | grep -vc README) feeds from python3 -m http.server"
mkdir -p feeds && cp "$OLDPWD"/tests/fixtures/feeds/* feeds/
(cd feeds && python3 -m http.server 18481 --bind 127.0.0.1 >/dev/null 2>&1) &
for _ in $(seq 100); do curl -sf http://127.0.0.1:18481/ >/dev/null && break; sleep 0.1; done
for f in feeds/*; do
    name=$(basename "$f")
    [ "$name" = README.md ] && continue
    printf '\n[[news.feeds]]\nname = "%s"\nurl = "http://127.0.0.1:18481/%s"\n' "$name" "$name" >> herald.toml
done
/usr/bin/time -f "preview: %e s elapsed, peak RSS %M KB" "$herald" preview 2>&1 >/dev/null | grep -E "preview:"
