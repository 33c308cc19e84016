# Sourced by the process benchmarks: Postfix's smtp-sink on 127.0.0.1:$port (as nobody when
# run by root), a scratch directory $work, both cleaned up on exit, `report KEY FILE` to read
# /usr/bin/time's output, and `installation` (below) for a fresh installation.
user=()
[ "$(id -u)" = 0 ] && user=(-u nobody)
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
smtp-sink "${user[@]}" -c "127.0.0.1:$port" 2000 >/dev/null &
for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
export HERALD_SECRET=benchmark-secret-0123456789abcdef0123456789
export HERALD_SMTP_URL="smtp://127.0.0.1:$port"
report() { awk -v k="$1" '$1 == k {print $2}' "$2"; }

# installation DIR COUNT STORE_URL EXTRA_TOML: a fresh installation in DIR (the bundled
# glossary and templates, COUNT subscribers in subscribers/list.csv, a herald.toml on
# STORE_URL with EXTRA_TOML appended).
installation() {
    local dir=$1 rows=$2
    mkdir -p "$dir/subscribers"
    cp -r glossary templates "$dir/"
    cat > "$dir/herald.toml" <<TOML
[newsletter]
name = "AI Glossary Weekly"
from = "AI Glossary Weekly <weekly@example.com>"
reply_to = "editors@example.com"
base_url = "https://glossary.example.com/"
postal_address = "AI Glossary Weekly, 1 Example Street, 12345 Example City"

[store]
url = "$3"

$4
TOML
    python3 - "$rows" "$dir/subscribers/list.csv" <<'PY'
import sys
rows, path = int(sys.argv[1]), sys.argv[2]
with open(path, "w") as f:
    f.write("email,name,first_name\n")
    for i in range(rows):
        f.write(f"reader{i}@example.com,Reader {i},R{i}\n")
PY
}
