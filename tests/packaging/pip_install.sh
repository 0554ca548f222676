#!/usr/bin/env bash
# pip_install.sh WORK_DIR LIFELINE_BINARY
# What python/README.md promises: `pip install ./python` into a fresh virtual
# environment builds and installs the package (offline: Debian's setuptools and
# wheel wheels are the build requirements, with pip's build isolation on). The
# whole pytest suite then runs against the installed copy, not the build tree's.
set -euo pipefail
work=$1 binary=$2
root=$(cd "$(dirname "$0")/../.." && pwd)
rm -rf "$work"
trap 'rm -rf "$work"' EXIT
# --system-site-packages: Debian's pytest, pytest-asyncio and websockets; the
# venv's own site-packages come first, and nothing else provides `lifeline`.
/usr/bin/python3 -m venv --system-site-packages "$work/venv"
timeout 600 "$work/venv/bin/pip" install --no-index --find-links /usr/share/python-wheels "$root/python"
installed=$(cd "$work" && "$work/venv/bin/python" -c 'import lifeline; print(lifeline.__file__)')
case "$installed" in
"$work/venv/"*) echo "imported from $installed" ;;
*)
  echo "pip_install: lifeline was imported from $installed, not from the venv" >&2
  exit 1
  ;;
esac
cd "$work"
env -u PYTHONPATH LIFELINE_BINARY="$binary" timeout 300 "$work/venv/bin/python" -m pytest -q -p no:cacheprovider \
  -c "$root/python/pytest.ini" "$root/python/tests"
