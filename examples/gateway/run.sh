#!/usr/bin/env bash
# The gateway chain of docs/gateway.md on one machine: two clusters on loopback addresses
# (cluster A on 127.0.1.x, cluster B on 127.0.2.x), each with its own CA and trust domain,
# one internal proxy per cluster and one gateway per cluster, and a small app in each
# (python3 -m http.server). Ctrl-C stops everything.
#
#   examples/gateway/run.sh [path/to/weft]
#   curl -H 'Host: books' http://127.0.1.1:4140/   # from cluster A to books in cluster B
#   curl -H 'Host: web' http://127.0.2.1:4140/     # from cluster B to web in cluster A
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
weft="${1:-$here/../../target/release/weft}"
[ -x "$weft" ] || { echo "build weft first: cargo build --release (or pass its path)" >&2; exit 1; }

pids=()
trap 'kill "${pids[@]}" 2>/dev/null; wait' EXIT INT TERM

for c in a b; do
  o=$([ $c = a ] && echo 1 || echo 2)
  dir="$here/cluster-$c"
  mkdir -p "$dir/certs"
  # A CA per cluster, each with its own trust domain (kept across runs).
  [ -f "$dir/ca/anchor.crt" ] || "$weft" identity init --dir "$dir/ca" --trust-domain "cluster-$c.example"
  "$weft" identity serve --dir "$dir/ca" --listen "127.0.$o.200:4190" --name "127.0.$o.200" \
    --token-file "$dir/ca-tokens" & pids+=($!)
done
# The apps: web in cluster A, books in cluster B (each on its host's port 8080).
mkdir -p "$here/www/a" "$here/www/b"
echo "web, cluster A" > "$here/www/a/index.html"
echo "books, cluster B" > "$here/www/b/index.html"
python3 -m http.server 8080 --bind 127.0.1.1 --directory "$here/www/a" & pids+=($!)
python3 -m http.server 8080 --bind 127.0.2.1 --directory "$here/www/b" & pids+=($!)
sleep 1   # the CAs listen before the proxies ask them for certificates
for c in a b; do
  for p in gateway internal; do
    "$weft" proxy -c "$here/cluster-$c/$p.yaml" > /dev/null & pids+=($!)
  done
done
echo "running; try: curl -H 'Host: books' http://127.0.1.1:4140/" >&2
wait
