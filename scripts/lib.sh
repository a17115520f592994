# Sourced by scripts/demo.sh and scripts/test.sh: a Python >= 3.11 virtualenv in .venv.
set -euo pipefail

pick_python() {
  local candidate
  for candidate in "${PYTHON:-}" python3.13 python3.12 python3.11 python3; do
    [ -n "$candidate" ] || continue
    if command -v "$candidate" >/dev/null 2>&1 &&
      "$candidate" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
      echo "$candidate"
      return 0
    fi
  done
  echo "mayhold needs Python 3.11 or newer; set PYTHON=/path/to/python3.11" >&2
  return 1
}

ensure_venv() {  # what to install, editable: e.g. "." or ".[dev]" client
  if [ ! -x .venv/bin/python ]; then
    "$(pick_python)" -m venv .venv
  fi
  local spec editables=()
  for spec in "$@"; do editables+=(--editable "$spec"); done
  .venv/bin/python -m pip install --quiet --disable-pip-version-check "${editables[@]}"
}

ensure_tools() {  # command-line tools the README's recipes (and their tests) use: curl, jq
  local missing=()
  for tool in curl jq; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
  done
  [ "${#missing[@]}" -eq 0 ] && return 0
  if command -v apt-get >/dev/null 2>&1; then
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq && $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "install ${missing[*]} (the README's recipes and their tests use them)" >&2
    return 1
  fi
}

ensure_chromium() {  # the console's browser tests drive the system's Chromium (Playwright never
  # downloads a browser: tests/test_console_browser.py launches /usr/bin/chromium)
  local browser="${MAYHOLD_CHROMIUM:-/usr/bin/chromium}"
  [ -x "$browser" ] && return 0
  if command -v apt-get >/dev/null 2>&1; then
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq && $sudo apt-get install -y -qq chromium >/dev/null
  else
    echo "install Chromium at $browser (or set MAYHOLD_CHROMIUM): the console's browser tests use it" >&2
    return 1
  fi
}

# Spectral (the OpenAPI linter tests/test_openapi_lint.py runs), pinned, from the npm registry
# into a project-local, git-ignored .tools/ (nothing global). Needs node >= 18 and npm.
SPECTRAL_VERSION="6.16.3"
SPECTRAL_DIR=".tools/spectral"

ensure_spectral() {
  local bin="$SPECTRAL_DIR/node_modules/.bin/spectral"
  if [ -x "$bin" ] && [ "$("$bin" --version 2>/dev/null)" = "$SPECTRAL_VERSION" ]; then
    return 0
  fi
  if ! command -v npm >/dev/null 2>&1; then
    echo "install node (>= 18) and npm: tests/test_openapi_lint.py runs Spectral" >&2
    return 1
  fi
  mkdir -p "$SPECTRAL_DIR"
  npm install --prefix "$SPECTRAL_DIR" --no-save --no-audit --no-fund --loglevel=error \
    "@stoplight/spectral-cli@$SPECTRAL_VERSION" >/dev/null
}
