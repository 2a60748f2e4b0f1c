# The two set-up commands of the README: `make demo` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
export PYTHON310

.PHONY: demo test venv clean

venv:
	@VENV=$(VENV) bash scripts/venv.sh

demo: venv
	$(PY) -m rewire.export --profile loihi2 --out build/

test: venv
	$(PY) -m pytest -q

clean:
	rm -rf build $(VENV) .pytest_cache .hypothesis
