#!/usr/bin/env bash
# Install what the test suite needs on a fresh Debian machine (root, Node >= 20).
# Debian packages: mosquitto (OTA tests start their own broker on a free loopback port), socat (HIL pty pairs),
# softhsm2 (PKCS#11 tests: a token in a temp dir, /usr/lib/softhsm/libsofthsm2.so), openssl (key import/export tests),
# postgresql (PostgreSQL 15, /usr/lib/postgresql/15/bin: the --db tests initdb their own cluster in a temp dir, as the
# postgres user, on a free loopback port; the packaged cluster is not used), prometheus (promtool: metrics, alert rules and
# dashboard queries are checked by it), chromium (the web console is tested in a real headless browser, driven by playwright-core),
# libxml2-utils (xmllint: the HIL JUnit report is validated against test/vectors/junit/junit-10.xsd).
set -euo pipefail
cd "$(dirname "$0")/.."
APT_PACKAGES=(mosquitto socat softhsm2 openssl postgresql prometheus chromium libxml2-utils)
if [ "${#APT_PACKAGES[@]}" -gt 0 ]; then
  missing=()
  for p in "${APT_PACKAGES[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  if [ "${#missing[@]}" -gt 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
  fi
fi
npm ci --no-audit --no-fund
