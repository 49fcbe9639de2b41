#!/usr/bin/env bash
# `make demo` / `make demo-down`: a 3-host drover sandbox (Consul, dockerd
# and a drover agent per host, joined by the encrypted WireGuard mesh), a
# demo container on every host, and commands to paste.
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
"$drover" sandbox up --hosts "$hosts" >/dev/null

declare -A ip
for i in $(seq 1 "$hosts"); do
  h=h$i
  "$drover" sandbox docker "$h" -- rm -f web >/dev/null 2>&1 || true
  "$drover" sandbox docker "$h" -- run -d --name web --hostname "web-$h" --network drover \
    -l drover.service=web -l drover.tags=demo -l drover.check=http:/healthz -l drover.check.interval=2s \
    -e DEMO_MARKER="hello-from-$h" drover-demo:latest >/dev/null
  ip[$h]=$("$drover" sandbox docker "$h" -- inspect -f '{{.NetworkSettings.Networks.drover.IPAddress}}' web)
done

fetch() { # fetch FROM-HOST TO-HOST: a container on FROM fetches TO's container through the mesh
  "$drover" sandbox docker "$1" -- run --rm --network drover drover-demo:latest get -timeout 2s "http://${ip[$2]}:8080/from-$1"
}
for _ in $(seq 1 50); do fetch h1 h2 >/dev/null 2>&1 && break; sleep 0.1; done
end=$(date +%s%N)
ms=$(( (end - begin) / 1000000 ))

echo
echo "== drover demo is up: $hosts hosts, $((ms / 1000)).$(( (ms % 1000) / 100 )) s"
echo
echo "Containers answering each other across hosts, through the encrypted WireGuard mesh:"
for from in h1 h2; do
  for to in h2 h3; do
    [[ $from == "$to" ]] && continue
    [[ -n ${ip[$to]:-} ]] || continue
    echo "  \$ $drover sandbox docker $from -- run --rm --network drover drover-demo:latest get http://${ip[$to]}:8080/from-$from"
    echo "    $(fetch "$from" "$to")"
  done
done
echo
echo "The demo services, registered in Consul by drover with their overlay addresses and health:"
for _ in $(seq 1 100); do
  [[ $("$drover" sandbox exec h1 -- curl -s '127.0.0.1:8500/v1/health/service/web?passing=true' | grep -o '"ServiceID"' | wc -l) -ge $hosts ]] && break
  sleep 0.1
done
echo "  \$ $drover sandbox exec h1 -- drover services web"
"$drover" sandbox exec h1 -- drover services web | sed 's/^/    /'
echo
echo "The mesh as h1 sees it:"
echo "  \$ $drover sandbox exec h1 -- drover status"
"$drover" sandbox exec h1 -- drover status | sed 's/^/    /'
cat <<TXT

Try:
  $drover sandbox exec h2 -- wg show                 # the WireGuard device drover drives
  $drover sandbox exec h3 -- ip route                # routes to the other hosts' subnets
  $drover sandbox status                             # hosts, daemons, Consul members
  $drover sandbox ui                                 # Consul UI at http://127.0.0.1:8500/ui
Remove it all: make demo-down
TXT
