# The two commands of the README. The tools live in .venv/ (rebuildable); your weights, photos, results,
# settings and the durable queue live in comfyui-data/ (ComfyUI's --base-directory; COMFYUI_DATA=... moves it).
#   make run                      http://127.0.0.1:8188
#   make run PORT=8190            another port (LISTEN=0.0.0.0 to serve the network)
#   make run ARGS="--preview-method auto"   more ComfyUI arguments
.PHONY: run test setup lint bench

run:  ## set up if needed, then start ComfyUI with the pack on http://127.0.0.1:$(or $(PORT),8188)
	./scripts/devenv.sh run $(ARGS)

test:  ## set up if needed, then run the whole test suite
	./scripts/devenv.sh test

setup:
	./scripts/devenv.sh setup

lint:
	./scripts/devenv.sh setup && .venv/bin/python -m ruff check .
