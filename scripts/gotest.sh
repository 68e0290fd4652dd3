#!/usr/bin/env bash
# gotest.sh GO test ARGS...: runs `GO test -v ARGS...` and shows each
# package's result and every skipped test with its reason, so a skip is
# never silent; when anything fails, the whole output but the RUN/PASS noise.
set -uo pipefail
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
go="$1"
shift
"$go" "$@" -v >"$log" 2>&1
rc=$?
if [ "$rc" -ne 0 ]; then
	grep -v -E '^ *(=== (RUN|PAUSE|CONT|NAME)|--- PASS)' "$log"
	exit "$rc"
fi
# go test -v logs a skip's reason on the line before its "--- SKIP".
awk '/^ *--- SKIP/ { print; print prev } /^(ok|FAIL|\?) / { print } { prev = $0 }' "$log"
skips="$(grep -c -E '^ *--- SKIP' "$log")"
echo "gotest.sh: all passed, $skips skipped"
