#!/usr/bin/env bash
# Create the project's venv and install fleetprof with its dev tools into it.
# On a fresh Debian/Ubuntu the venv module may be missing: as root, install it.
set -euo pipefail
python=${1:-python3}
venv=${2:-.venv}

if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "fleetprof needs Python 3.11 or newer; $python is $("$python" -V 2>&1)" >&2
    exit 1
fi
if ! "$python" -c 'import ensurepip, venv' 2>/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        ver=$("$python" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
        apt-get update -qq
        apt-get install -y -qq "python${ver}-venv" || apt-get install -y -qq python3-venv
    else
        echo "Python's venv module is missing: install python3-venv (as root: apt-get install python3-venv)" >&2
        exit 1
    fi
fi
"$python" -m venv "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip
"$venv/bin/python" -m pip install -q -e '.[dev]'
