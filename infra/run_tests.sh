#!/usr/bin/env bash
# `make test`: unit tests, then the integration suite against a real stack on the test ports
# (tests/stack.env). The stack is started here if it is not running and stopped again on exit,
# pass or fail; a test stack that was already running is left as it was.
set -euo pipefail
cd "$(dirname "$0")/.."
set -a
# shellcheck source=/dev/null
. tests/stack.env
set +a
PY=.venv/bin/python

started_here=0
if ! $PY -m infra.stack running; then
  started_here=1
fi
cleanup() {
  if [ "$started_here" = 1 ]; then
    $PY -m infra.stack down || true
  fi
}
trap cleanup EXIT

$PY -m infra.stack up
$PY -m pytest tests/unit tests/integration
