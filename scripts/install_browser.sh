#!/usr/bin/env bash
# Headless browser for the UI test (tests/e2e/test_ui_browser.py): Debian's chromium, driven by the
# playwright package. `playwright install` downloads its own browser builds from outside the
# package registries, so the test points playwright at /usr/bin/chromium instead. Idempotent:
# each step runs only when its piece is missing.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
py="${PYTHON:-$root/.venv/bin/python}"
playwright_pin="${PLAYWRIGHT_PIN:-playwright==1.65.2}"

if [[ ! -x /usr/bin/chromium ]]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi

if ! "$py" -c "import playwright" 2>/dev/null; then
  # Same filter as the Makefile: pip warns once per package about the machine's file-based index.
  "$py" -m pip install -q "$playwright_pin" 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; }
fi

# Debian's launcher script prints a harmless "[: unexpected operator" when /dev/shm has several mounts.
/usr/bin/chromium --version 2>/dev/null
"$py" -c "from importlib.metadata import version; print('playwright', version('playwright'))"
