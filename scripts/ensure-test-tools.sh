#!/usr/bin/env bash
# Installs the independent tools some tests compare against:
# - Debian's oathtool (an independent TOTP implementation);
# - sslyze (a TLS scanner with its own OpenSSL build) in its own venv, .venv-tools/sslyze,
#   from the hashed requirements/sslyze.lock. It never enters the project's lock files.
# Best effort: what cannot be installed is named; the tests that need a missing tool then
# fail in CI (CI=true) and skip elsewhere.
set -u
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"

missing=()
command -v oathtool >/dev/null 2>&1 || missing+=(oathtool)
if [ ${#missing[@]} -gt 0 ]; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    (apt-get update -qq && apt-get install -y -qq "${missing[@]}") >/dev/null 2>&1 && missing=()
  fi
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "note: install ${missing[*]} (Debian/Ubuntu: apt-get install ${missing[*]}) for the full test suite" >&2
fi

# The stamp holds a copy of the lock the venv was built from: a changed lock rebuilds it.
sslyze_venv=.venv-tools/sslyze
sslyze_lock=requirements/sslyze.lock
if ! cmp -s "$sslyze_lock" "$sslyze_venv/.installed-lock" 2>/dev/null; then
  rm -rf "$sslyze_venv"
  if "$PYTHON" -m venv "$sslyze_venv" >/dev/null 2>&1 \
    && "$sslyze_venv/bin/python" -m pip install -q --require-hashes -r "$sslyze_lock" >/dev/null 2>&1 \
    && "$sslyze_venv/bin/python" -m sslyze --help >/dev/null 2>&1; then
    cp "$sslyze_lock" "$sslyze_venv/.installed-lock"
  else
    rm -rf "$sslyze_venv"
    echo "note: could not install sslyze into $sslyze_venv from $sslyze_lock (needs the package index)" >&2
  fi
fi
exit 0
