#!/usr/bin/env bash
# `make demo` / `make demo-down`: a 3-host drover sandbox with a demo
# container on every host, and commands to paste.
set -euo pipefail
cd "$(dirname "$0")/.."
drover=bin/drover
hosts=${DEMO_HOSTS:-3}

if [[ ${1:-up} == down ]]; then
  exec "$drover" sandbox down
fi
if [[ $EUID -ne 0 ]]; then
  echo "make demo needs root (network namespaces, dockerd)" >&2
  exit 1
fi
begin=$(date +%s%N)
"$drover" sandbox up --hosts "$hosts"

for i in $(seq 1 "$hosts"); do
  h=h$i
  "$drover" sandbox docker "$h" -- network inspect demo >/dev/null 2>&1 ||
    "$drover" sandbox docker "$h" -- network create --subnet 172.30.0.0/24 demo >/dev/null
  "$drover" sandbox docker "$h" -- rm -f web >/dev/null 2>&1 || true
  "$drover" sandbox docker "$h" -- run -d --name web --hostname "web-$h" --network demo \
    -e DEMO_MARKER="hello-from-$h" drover-demo:latest >/dev/null
done

ip=$("$drover" sandbox docker h1 -- inspect -f '{{.NetworkSettings.Networks.demo.IPAddress}}' web)
cmd="$drover sandbox exec h1 -- drover-demo get http://$ip:8080/demo"
for _ in $(seq 1 50); do
  if out=$($cmd 2>/dev/null); then break; fi
  sleep 0.1
done
end=$(date +%s%N)
ms=$(( (end - begin) / 1000000 ))
cat <<TXT

== drover demo is up ($hosts hosts, $((ms / 1000)).$(( (ms % 1000) / 100 )) s)
A container on h1, fetched from inside h1:
  \$ $cmd
  $out

Try:
  $drover sandbox status
  $drover sandbox exec h2 -- consul members
  $drover sandbox docker h3 -- ps
  $drover sandbox ui        # Consul UI at http://127.0.0.1:8500/ui
Remove it all: make demo-down
TXT
