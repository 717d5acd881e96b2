#!/usr/bin/env bash
# Installs the independent tools some tests compare against:
# - Debian's oathtool (an independent TOTP implementation);
# - sslyze (a TLS scanner with its own OpenSSL build) in its own venv, .venv-tools/sslyze,
#   from the hashed requirements/sslyze.lock. It never enters the project's lock files.
# - pip-audit (scripts/audit_dependencies.py) the same way: .venv-tools/pip-audit from the
#   hashed requirements/pip-audit.lock.
# - moto's server (the AWS KMS protocol peer of the KMS key-encrypting-key tests) the same way:
#   .venv-tools/moto from the hashed requirements/moto.lock, run by the tests as moto_server.
# - promtool (checks deploy/prometheus/*.yml) from Debian's prometheus package, unpacked into
#   .venv-tools/prometheus without installing it (installing would start a server).
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
tool_venv() {
  local name="$1" lock="$2" check="$3"
  local venv=".venv-tools/$name"
  if ! cmp -s "$lock" "$venv/.installed-lock" 2>/dev/null; then
    rm -rf "$venv"
    if "$PYTHON" -m venv "$venv" >/dev/null 2>&1 \
      && "$venv/bin/python" -m pip install -q --require-hashes -r "$lock" >/dev/null 2>&1 \
      && "$venv/bin/python" -m "$check" --help >/dev/null 2>&1; then
      cp "$lock" "$venv/.installed-lock"
    else
      rm -rf "$venv"
      echo "note: could not install $name into $venv from $lock (needs the package index)" >&2
    fi
  fi
}
tool_venv sslyze requirements/sslyze.lock sslyze
tool_venv pip-audit requirements/pip-audit.lock pip_audit
tool_venv moto requirements/moto.lock moto.server

# promtool: the Debian package's static binary, taken out of the .deb (no daemon, no root).
promtool=.venv-tools/prometheus/usr/bin/promtool
if ! command -v promtool >/dev/null 2>&1 && [ ! -x "$promtool" ]; then
  if command -v apt-get >/dev/null 2>&1 && command -v dpkg-deb >/dev/null 2>&1; then
    download=$(mktemp -d)
    # A fresh container has no package lists yet: fetch them (as root) and try once more.
    if (cd "$download" && { apt-get download -qq prometheus \
          || { [ "$(id -u)" = 0 ] && apt-get update -qq && apt-get download -qq prometheus; }; } \
          >/dev/null 2>&1) \
      && dpkg-deb -x "$download"/prometheus_*.deb .venv-tools/prometheus \
      && "$promtool" --version >/dev/null 2>&1; then
      :
    else
      rm -rf .venv-tools/prometheus
      echo "note: could not unpack promtool from Debian's prometheus package (apt-get download prometheus)" >&2
    fi
    rm -rf "$download"
  else
    echo "note: install promtool (Debian/Ubuntu: apt-get install prometheus) to check the alert rules" >&2
  fi
fi
exit 0
