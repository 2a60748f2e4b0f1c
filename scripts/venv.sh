#!/usr/bin/env bash
# Create (or reuse) the project's Python 3.10 virtualenv in .venv and install rewire
# with its `lava`, `test`, `readers` and `docs` extras. The venv is reused while pyproject.toml is unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
stamp="$VENV/.rewire-deps-$(sha256sum pyproject.toml | cut -c1-16)"

if [ -x "$VENV/bin/python" ] && [ -f "$stamp" ]; then
    exit 0
fi

is_py310() { [ -n "$1" ] && "$1" -c 'import sys; assert sys.version_info[:2] == (3, 10)' >/dev/null 2>&1; }

find_py310() {
    local c v
    for c in "${PYTHON310:-}" "$(command -v python3.10 || true)"; do
        if is_py310 "$c"; then echo "$c"; return; fi
    done
    if command -v pyenv >/dev/null 2>&1; then
        v=$(pyenv versions --bare 2>/dev/null | grep -E '^3\.10(\.[0-9]+)?$' | sort -V | tail -n1 || true)
        c="$(pyenv root)/versions/$v/bin/python"
        if [ -n "$v" ] && is_py310 "$c"; then echo "$c"; return; fi
    fi
}

PY=$(find_py310)
if [ -z "$PY" ]; then
    cat >&2 <<'MSG'
error: Python 3.10 not found (lava-dl 0.6 / lava-nc 0.10 need Python >=3.10,<3.11).
  Get one with    pyenv install 3.10.13     (or your OS package: python3.10 python3.10-venv)
  or point to it: make demo PYTHON310=/path/to/python3.10
MSG
    exit 1
fi

echo ">> creating $VENV with $PY"
rm -rf "$VENV"
"$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet -e '.[lava,test,readers,docs]'
touch "$stamp"
echo ">> $VENV ready"
