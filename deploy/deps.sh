#!/usr/bin/env bash
# Installs what drover's tests and demo need on a fresh Debian machine,
# idempotently and quietly, then builds the Consul test server into bin/.
# Called by `make deps`; safe to run again at any time.
set -euo pipefail
cd "$(dirname "$0")/.."

pkgs=(haproxy docker.io docker-compose wireguard-tools iproute2 nftables tcpdump iperf3 iputils-ping
      util-linux procps curl openssl ca-certificates kmod systemd chromium)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  if [[ $EUID -ne 0 ]]; then
    echo "deps: missing ${missing[*]}; run as root to install them" >&2
    exit 1
  fi
  echo "deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive NEEDRESTART_MODE=a
  log=$(mktemp)
  if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}"; } >"$log" 2>&1; then
    cat "$log" >&2
    exit 1
  fi
  rm -f "$log"
fi

# Consul v1.14.8 (the last MPL release), built from its own tiny module so
# that Consul's dependencies never enter drover's go.mod. Cached in bin/.
want=v1.14.8
have=$(bin/consul version 2>/dev/null || true)
if [[ $have != *"Consul $want"* ]]; then
  echo "deps: building Consul $want into bin/consul (a few minutes, once)"
  mkdir -p bin
  (cd deploy/consul-build && GOFLAGS=-mod=mod CGO_ENABLED=0 go build -o ../../bin/consul.tmp github.com/hashicorp/consul)
  mv bin/consul.tmp bin/consul
fi
