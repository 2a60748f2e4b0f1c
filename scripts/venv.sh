#!/usr/bin/env bash
# Create (or reuse) the project's virtualenv in .venv and install rewire with its `lava`,
# `xylo`, `test`, `readers`, `docs` and `neurobench` extras. The venv is reused while
# pyproject.toml and the interpreter are unchanged.
#
# Python 3.10 is preferred: lava-dl 0.6 / lava-nc 0.10 need Python >=3.10,<3.11. Without a
# 3.10 the newest Python >= 3.10 found is used without the `lava` extra (one line says so);
# the main job then skips its Lava check and the report says why, and the Lava tests skip.
# Choose an interpreter by hand with PYTHON310=/path/to/python3.10 or PYTHON=/path/to/python.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}

version_of() {  # "3 11" for a working Python >= 3.10, nothing otherwise
    [ -n "$1" ] && "$1" -c 'import sys; v = sys.version_info
assert v >= (3, 10), v; print(v[0], v[1])' 2>/dev/null
}
is_py310() { [ "$(version_of "$1")" = "3 10" ]; }

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

find_newest() {  # the newest Python >= 3.10 on PATH or in pyenv
    local c v best="" best_v=0 cands=()
    for v in 3.14 3.13 3.12 3.11 3.10; do cands+=("$(command -v "python$v" || true)"); done
    cands+=("$(command -v python3 || true)")
    if command -v pyenv >/dev/null 2>&1; then
        for v in $(pyenv versions --bare 2>/dev/null | grep -E '^3\.[0-9]+(\.[0-9]+)?$' || true); do
            cands+=("$(pyenv root)/versions/$v/bin/python")
        done
    fi
    for c in "${cands[@]}"; do
        v=$(version_of "$c") || continue
        [ -n "$v" ] || continue
        v=$(( ${v% *} * 100 + ${v#* } ))
        if [ "$v" -gt "$best_v" ]; then best=$c; best_v=$v; fi
    done
    echo "$best"
}

EXTRAS="lava,xylo,test,readers,docs,neurobench"
if [ -n "${PYTHON:-}" ]; then
    PY=$PYTHON
    if [ -z "$(version_of "$PY")" ]; then
        echo "error: PYTHON=$PY is not a working Python >= 3.10" >&2; exit 1
    fi
else
    PY=$(find_py310)
fi
if [ -z "$PY" ]; then
    PY=$(find_newest)
    if [ -z "$PY" ]; then
        cat >&2 <<'MSG'
error: no Python >= 3.10 found (rewire needs >= 3.10; Lava needs exactly 3.10).
  Get one with    pyenv install 3.10.13     (or your OS package: python3.10 python3.10-venv)
  or point to it: make demo PYTHON310=/path/to/python3.10   (or PYTHON=/path/to/python3.x)
MSG
        exit 1
    fi
fi
if ! is_py310 "$PY"; then
    EXTRAS="test,readers,docs,neurobench"
    echo ">> no Python 3.10: using $PY (Python $(version_of "$PY" | tr ' ' .)) without the lava and xylo extras; the Lava and XyloSim checks and tests are skipped" >&2
fi

stamp="$VENV/.rewire-deps-$(sha256sum pyproject.toml | cut -c1-16)"
if [ "$EXTRAS" != "lava,xylo,test,readers,docs,neurobench" ]; then
    stamp="$stamp-py$(version_of "$PY" | tr ' ' .)-nolava"
fi
if [ -x "$VENV/bin/python" ] && [ -f "$stamp" ]; then
    exit 0
fi

echo ">> creating $VENV with $PY"
rm -rf "$VENV"
"$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet -e ".[$EXTRAS]"
touch "$stamp"
echo ">> $VENV ready"
