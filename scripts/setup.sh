#!/usr/bin/env bash
# Set up everything controlplane needs on a fresh Debian machine with Python 3.11:
# the Debian packages its tests drive for real (sshd), a virtualenv, and the package.
# Safe to run again: each step is skipped when already done.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}

need_apt=()
while read -r cmd pkg; do
  case "$cmd" in ''|'#'*) continue ;; esac
  if [ "$cmd" = "-" ]; then
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'ok installed' && continue
  elif [ "${cmd#/}" != "$cmd" ]; then
    [ -x "$cmd" ] && continue
  else
    command -v "$cmd" >/dev/null 2>&1 && continue
  fi
  case " ${need_apt[*]-} " in *" $pkg "*) ;; *) need_apt+=("$pkg") ;; esac
done < scripts/debian-packages.txt
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing ${need_apt[*]} from Debian"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  else
    echo "setup: please install ${need_apt[*]} (needs root)" >&2
  fi
fi

# Debian splits venv support out of python3; without it `python3 -m venv` fails.
if ! "$PYTHON" -c 'import ensurepip, venv' >/dev/null 2>&1; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing python3-venv from Debian"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
  fi
fi
if [ ! -x "$VENV/bin/python" ]; then
  echo "setup: creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi
# Reinstall only when the project metadata changed since the last install.
stamp="$VENV/.controlplane-installed"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "setup: installing controlplane and its dependencies into $VENV"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e '.[test]'
  touch "$stamp"
fi
