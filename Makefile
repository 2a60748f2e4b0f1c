# The two set-up commands of the README: `make demo` and `make test`; `make test-fast` is the
# inner loop (the tests not marked slow or lava).
VENV ?= .venv
PY := $(VENV)/bin/python
export PYTHON310

.PHONY: demo test test-fast venv clean

venv:
	@VENV=$(VENV) bash scripts/venv.sh

demo: venv
	$(PY) -m rewire.export --profile loihi2 --out build/

test: venv
	$(PY) -m pytest -q

test-fast: venv
	$(PY) -m pytest -q -m "not slow and not lava"

clean:
	rm -rf build $(VENV) .pytest_cache .hypothesis
