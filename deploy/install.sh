#!/bin/sh
# Installs drover on this host: binary, systemd unit, example config.
# Usage (as root, from the repo root after `make build`): deploy/install.sh
set -eu
cd "$(dirname "$0")/.."
install -m 0755 bin/drover /usr/local/bin/drover
install -d -m 0755 /etc/drover
[ -e /etc/drover/drover.toml ] || install -m 0644 deploy/drover.toml /etc/drover/drover.toml
install -m 0644 deploy/drover.service /etc/systemd/system/drover.service
if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
  systemctl daemon-reload
  echo "installed; start with: systemctl enable --now drover"
else
  echo "installed; systemd is not running here: start /usr/local/bin/drover agent --config /etc/drover/drover.toml yourself"
fi
