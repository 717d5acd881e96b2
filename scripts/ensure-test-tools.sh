#!/usr/bin/env bash
# Installs the system tools some tests compare against (Debian's oathtool: an independent
# TOTP implementation). Best effort: without root or apt-get it says what to install; the
# tests that need a missing tool then fail in CI (CI=true) and skip elsewhere.
set -u
missing=()
command -v oathtool >/dev/null 2>&1 || missing+=(oathtool)
[ ${#missing[@]} -eq 0 ] && exit 0
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  (apt-get update -qq && apt-get install -y -qq "${missing[@]}") >/dev/null 2>&1 && exit 0
fi
echo "note: install ${missing[*]} (Debian/Ubuntu: apt-get install ${missing[*]}) for the full test suite" >&2
exit 0
