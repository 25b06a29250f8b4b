#!/usr/bin/env bash
# `make test`: unit tests, then the integration suite against a real stack on the test ports
# (tests/stack.env). The stack is started here if it is not running and stopped again on exit,
# pass or fail; a test stack that was already running is left as it was.
set -euo pipefail
cd "$(dirname "$0")/.."
# The test stack's settings; a variable already set in the environment wins (so a second test
# stack, e.g. a clean clone, can run beside this one on other ports).
while IFS='=' read -r key value; do
  case "$key" in ''|'#'*) continue ;; esac
  if [ -z "${!key+x}" ]; then export "$key=$value"; fi
done < tests/stack.env
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
