# Sourced by the process benchmarks: Postfix's smtp-sink on 127.0.0.1:$port (as nobody when
# run by root), a scratch directory $work, both cleaned up on exit, and `report KEY FILE` to
# read /usr/bin/time's output.
user=()
[ "$(id -u)" = 0 ] && user=(-u nobody)
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
smtp-sink "${user[@]}" -c "127.0.0.1:$port" 2000 >/dev/null &
for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
export HERALD_SECRET=benchmark-secret-0123456789abcdef0123456789
export HERALD_SMTP_URL="smtp://127.0.0.1:$port"
report() { awk -v k="$1" '$1 == k {print $2}' "$2"; }
