# The two commands of the README. Everything they need is set up inside this checkout (.venv/).
.PHONY: run test setup lint bench

run:  ## set up if needed, then start ComfyUI with the pack on http://127.0.0.1:8188
	./scripts/devenv.sh run

test:  ## set up if needed, then run the whole test suite
	./scripts/devenv.sh test

setup:
	./scripts/devenv.sh setup

lint:
	./scripts/devenv.sh setup && .venv/bin/python -m ruff check .
