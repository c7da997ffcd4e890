#!/usr/bin/env bash
# Installs the real peers axi-obs's tests run against, into a cache folder (no system-wide
# install): Prometheus 3.x + promtool, Alertmanager + amtool, node_exporter, unpacked from
# Debian unstable's packages (current upstream releases; Debian 12's own are older), and the
# official OpenTelemetry Python SDK in a virtualenv, run through the `otel-python` wrapper,
# and nginx (Debian's nginx-light, from this machine's own Debian release: sid's build needs a
# newer glibc) for the log shipper's access-log tests; it runs unprivileged with
# `nginx -p PREFIX -c CONF -e ERRLOG`; and aiosmtpd (PyPI), a real SMTP server for the mail
# tests, in the same virtualenv, run through the `aiosmtpd-python` wrapper.
#
#   usage: scripts/install-peers.sh [DIR]    DIR defaults to $AXI_PEERS_DIR or ~/.cache/axi-obs-peers
#
# Prints the folder holding the binaries on its last line; scripts/test.sh exports it as
# AXI_PEERS_BIN. A second run with everything in place does nothing and takes milliseconds.
set -euo pipefail
dir=${1:-${AXI_PEERS_DIR:-$HOME/.cache/axi-obs-peers}}
bin=$dir/root/usr/bin
need=(prometheus promtool prometheus-alertmanager amtool prometheus-node-exporter otel-python aiosmtpd-python nginx)
# Debian's Alertmanager reads its built-in templates from this absolute path; link it when we
# may (root in CI), else Alertmanager tests will say what is missing. On every run: a cache
# restored from elsewhere has the packages but not the link.
link_templates() {
  if [[ -d $dir/root/usr/share/prometheus/alertmanager && ! -e /usr/share/prometheus/alertmanager/default.tmpl ]] \
    && mkdir -p /usr/share/prometheus 2>/dev/null; then
    ln -sfn "$dir/root/usr/share/prometheus/alertmanager" /usr/share/prometheus/alertmanager || true
  fi
}
have_all=1
for b in "${need[@]}"; do [[ -x $bin/$b ]] || have_all=0; done
if [[ $have_all == 1 ]]; then
  link_templates
  echo "$bin"; exit 0
fi
install_python_sdk() {
  # The official OpenTelemetry Python SDK (PyPI), a real W3C/OTLP client for the tests.
  [[ -x $bin/otel-python ]] && return 0
  echo "install-peers: installing the OpenTelemetry Python SDK into $dir/venv" >&2
  python3 -m venv "$dir/venv" >&2
  "$dir/venv/bin/pip" install -q --disable-pip-version-check \
    'opentelemetry-sdk>=1.30' 'opentelemetry-exporter-otlp-proto-http>=1.30' >&2
  mkdir -p "$bin"
  printf '#!/bin/sh\nexec "%s/venv/bin/python" "$@"\n' "$dir" >"$bin/otel-python"
  chmod +x "$bin/otel-python"
  "$bin/otel-python" -c 'import opentelemetry.version as v; print("opentelemetry-sdk (python)", v.__version__)' >&2
}
install_aiosmtpd() {
  # aiosmtpd (PyPI), a real SMTP server (with AUTH) for axi-obs-alert's mail tests, in the
  # virtualenv install_python_sdk made.
  [[ -x $bin/aiosmtpd-python ]] && return 0
  echo "install-peers: installing aiosmtpd into $dir/venv" >&2
  [[ -x $dir/venv/bin/pip ]] || python3 -m venv "$dir/venv" >&2
  "$dir/venv/bin/pip" install -q --disable-pip-version-check 'aiosmtpd>=1.4' >&2
  mkdir -p "$bin"
  printf '#!/bin/sh\nexec "%s/venv/bin/python" "$@"\n' "$dir" >"$bin/aiosmtpd-python"
  chmod +x "$bin/aiosmtpd-python"
  "$bin/aiosmtpd-python" -c 'import aiosmtpd; print("aiosmtpd (python)", aiosmtpd.__version__)' >&2
}
install_nginx() {
  # nginx-light: in Debian 12 a metapackage over `nginx`, which holds /usr/sbin/nginx. Fetched
  # with a private apt state for this machine's release (no root needed), linked into $bin.
  [[ -x $bin/nginx ]] && return 0
  command -v apt-get >/dev/null || { echo "install-peers: apt-get is needed to fetch nginx" >&2; exit 1; }
  local codename ng=$dir/apt-nginx
  codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")
  echo "install-peers: fetching nginx-light ($codename) into $dir" >&2
  mkdir -p "$ng/lists/partial" "$ng/etc" "$ng/cache/archives/partial" "$ng/debs" "$dir/root"
  cat >"$ng/etc/sources.list" <<LIST
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian $codename main
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian-security $codename-security main
LIST
  local n=(-oDir::State::Lists="$ng/lists" -oDir::Etc::SourceList="$ng/etc/sources.list"
     -oDir::Etc::SourceParts=/nonexistent -oDir::Cache="$ng/cache" -oAPT::Sandbox::User=root)
  apt-get "${n[@]}" -qq update >&2
  local version
  version=$(apt-cache "${n[@]}" policy nginx-light | awk '/Candidate:/ {print $2}')
  rm -f "$ng"/debs/*.deb
  ( cd "$ng/debs" && apt-get "${n[@]}" -qq download "nginx-light=$version" "nginx=$version" >&2 )
  for f in "$ng"/debs/*.deb; do dpkg-deb -x "$f" "$dir/root"; done
  mkdir -p "$bin"
  ln -sf ../sbin/nginx "$bin/nginx"
  "$bin/nginx" -v 2>&1 | head -1 >&2
}
debs_present=1
for b in prometheus promtool prometheus-alertmanager amtool prometheus-node-exporter; do [[ -x $bin/$b ]] || debs_present=0; done
if [[ $debs_present == 1 ]]; then
  link_templates
  install_python_sdk
  install_aiosmtpd
  install_nginx
  echo "$bin"; exit 0
fi
command -v apt-get >/dev/null || { echo "install-peers: apt-get is needed to fetch Debian packages" >&2; exit 1; }
mkdir -p "$dir/apt/lists/partial" "$dir/apt/etc" "$dir/apt/cache/archives/partial" "$dir/debs" "$dir/root"
cat >"$dir/apt/etc/sources.list" <<'LIST'
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian sid main
LIST
o=(-oDir::State::Lists="$dir/apt/lists" -oDir::Etc::SourceList="$dir/apt/etc/sources.list"
   -oDir::Etc::SourceParts=/nonexistent -oDir::Cache="$dir/apt/cache" -oAPT::Sandbox::User=root)
echo "install-peers: fetching Prometheus, promtool, Alertmanager, node_exporter into $dir" >&2
apt-get "${o[@]}" -qq update >&2
( cd "$dir/debs" && apt-get "${o[@]}" -qq download prometheus promtool prometheus-alertmanager prometheus-node-exporter >&2 )
for f in "$dir"/debs/*.deb; do dpkg -x "$f" "$dir/root"; done
ln -sf prometheus-alertmanager "$bin/alertmanager"
ln -sf prometheus-node-exporter "$bin/node_exporter"
link_templates
for b in prometheus promtool alertmanager node_exporter; do
  "$bin/$b" --version 2>&1 | head -1 >&2
done
install_python_sdk
install_aiosmtpd
install_nginx
echo "$bin"
