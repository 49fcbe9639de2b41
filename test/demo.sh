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
  [[ $("$drover" sandbox exec h1 -- curl -s 'https://127.0.0.1:8501/v1/health/service/web?passing=true' | grep -o '"ServiceID"' | wc -l) -ge $hosts ]] && break
  sleep 0.1
done
echo "  \$ $drover sandbox exec h1 -- drover services web"
"$drover" sandbox exec h1 -- drover services web | sed 's/^/    /'
echo
echo "The same service by name inside a container, with no DNS flag of its own (drover answers at"
echo "169.254.53.53, dockerd's \"dns\"; only passing instances; other names go to the host's resolvers):"
echo "  \$ $drover sandbox docker h1 -- run --rm --network drover drover-demo:latest resolve web.service.consul"
for _ in $(seq 1 50); do
  out=$("$drover" sandbox docker h1 -- run --rm --network drover drover-demo:latest resolve web.service.consul 2>/dev/null) && break
  sleep 0.2
done
echo "    ${out:-}"
echo "  (the bare name \"web\" works too, except on a host where a container itself is named web:"
echo "  Docker's embedded resolver answers its own containers' names first)"
# confgen: a file on h1 rendered from Consul KV and service data.
sb_dir=/var/lib/${DROVER_SANDBOX_PREFIX:-drv}-sandbox
cg=$sb_dir/h1/confgen-demo
mkdir -p "$cg/conf.d" "$cg/templates" "$cg/out"
cat > "$cg/templates/demo.tmpl" <<'TMPL'
# rendered by drover confgen from Consul
message = {{getv "/message" "(unset)"}}
{{- range service "web"}}
web {{.Node}} {{.Address}}:{{.Port}}
{{- end}}
TMPL
cat > "$cg/conf.d/demo.toml" <<TOML
[template]
src = "demo.tmpl"
dest = "$cg/out/demo.conf"
keys = ["/message"]
prefix = "/demo"
reload_cmd = "echo reloaded at \$(date +%T) >> $cg/reloads"
min_wait = "100ms"
TOML
if [[ -s $cg/confgen.pid ]] && grep -q confgen "/proc/$(cat "$cg/confgen.pid")/cmdline" 2>/dev/null; then
  kill "$(cat "$cg/confgen.pid")" 2>/dev/null || true
fi
"$drover" sandbox exec h1 -- consul kv put demo/message "hello from Consul KV" >/dev/null
nohup "$drover" sandbox exec h1 -- sh -c "echo \$\$ > $cg/confgen.pid; exec drover confgen --confdir $cg" >"$cg/confgen.log" 2>&1 &
for _ in $(seq 1 100); do grep -q "hello from Consul" "$cg/out/demo.conf" 2>/dev/null && break; sleep 0.1; done
echo
echo "A file on h1 rendered by drover confgen from Consul (KV demo/message and service web):"
echo "  \$ cat $cg/out/demo.conf"
sed 's/^/    /' "$cg/out/demo.conf"
echo "  Change the key and watch it re-render (and its reload_cmd run):"
echo "  \$ $drover sandbox exec h1 -- consul kv put demo/message 'changed!' && sleep 1 && cat $cg/out/demo.conf $cg/reloads"

# lb: HAProxy on h1 (run by h1's agent) in front of replicas on h2 and h3.
for h in h2 h3; do
  "$drover" sandbox docker "$h" -- rm -f shop >/dev/null 2>&1 || true
  "$drover" sandbox docker "$h" -- run -d --name shop --hostname "shop-$h" --network drover \
    -l drover.service=shop -l drover.lb.mode=http -l drover.check=http:/healthz -l drover.check.interval=1s \
    drover-demo:latest >/dev/null
done
for _ in $(seq 1 100); do
  [[ $("$drover" sandbox exec h1 -- drover status --json | grep -c '"status": "UP"') -ge 2 ]] && break
  sleep 0.1
done
echo
echo "One URL on h1, served by HAProxy (run by drover) from the replicas on h2 and h3:"
echo "  \$ $drover sandbox exec h1 -- curl -s http://127.0.0.1/"
for _ in 1 2 3 4; do "$drover" sandbox exec h1 -- curl -s -m 2 http://127.0.0.1/ | sed 's/^/    /'; done
echo "  Watch it under load (one line per second, replies by replica) while you scale in another terminal:"
echo "  \$ $drover sandbox exec h1 -- drover-demo load -rate 50 -duration 120s -report 1s http://127.0.0.1/"
echo "  \$ $drover sandbox docker h3 -- run -d --network drover -l drover.service=shop -l drover.lb.mode=http -l drover.check=http:/healthz -l drover.check.interval=1s drover-demo:latest"
echo "  \$ $drover sandbox docker h2 -- stop shop         # graceful: no request fails, no HAProxy reload"

echo
echo "The mesh as h1 sees it:"
echo "  \$ $drover sandbox exec h1 -- drover status"
"$drover" sandbox exec h1 -- drover status | sed 's/^/    /'
echo
echo "The whole cluster in a browser (h1's web UI: mesh matrix, services and refused containers, load balancer, events):"
echo "  \$ $drover sandbox ui        # relays it to loopback, then open http://127.0.0.1:9714/ui/"
echo "  (inside h1 it is http://127.0.0.1:9714/ui/: \$ $drover sandbox exec h1 -- drover ui; JSON API: docs/api.md)"
cat <<TXT

Try:
  $drover sandbox exec h2 -- wg show                 # the WireGuard device drover drives
  $drover sandbox exec h3 -- ip route                # routes to the other hosts' subnets
  $drover sandbox status                             # hosts, daemons, Consul members
  $drover sandbox ui                                 # drover's UI at http://127.0.0.1:9714/ui/ and Consul's at https://127.0.0.1:8501/ui (CA, token: $sb_dir/security)
  $drover sandbox exec h1 -- consul members          # consul and curl in a host use HTTPS and the management token
  $drover acl-policy --node h1                       # the Consul ACL policy of h1's drover token
Remove it all: make demo-down
TXT
