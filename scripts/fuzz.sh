#!/usr/bin/env bash
# fuzz.sh GO FUZZTIME MINIMIZETIME PKG:TARGET... — run each fuzz target for
# FUZZTIME. A target fails on a real finding: go test writes the failing
# input under testdata/fuzz and says so. Go's fuzzing coordinator before
# Go 1.27 can also fail a target with a bare "context deadline exceeded" as
# -fuzztime runs out (golang/go#75804: it races its own deadline), having
# found nothing; such a run is retried, up to three tries in all.
set -uo pipefail
go=$1 fuzztime=$2 minimize=$3
shift 3
for t in "$@"; do
	pkg=./${t%%:*}/ name=${t#*:}
	for try in 1 2 3; do
		note=""
		[ $try -gt 1 ] && note=", try $try"
		echo "fuzz $name ($fuzztime$note)"
		out=$("$go" test -run '^$' -fuzz "^$name\$" -fuzztime "$fuzztime" \
			-fuzzminimizetime "$minimize" "$pkg" 2>&1)
		rc=$?
		printf '%s\n' "$out" | tail -n 3
		[ $rc -eq 0 ] && break
		if grep -q 'Failing input written to' <<<"$out" ||
			! grep -q 'context deadline exceeded' <<<"$out"; then
			printf '%s\n' "$out"
			echo "fuzz.sh: $name failed" >&2
			exit 1
		fi
		if [ $try -eq 3 ]; then
			echo "fuzz.sh: $name: the coordinator's deadline race three times in a row" >&2
			exit 1
		fi
		echo "fuzz.sh: $name: deadline race in Go's fuzz coordinator, nothing found; retrying" >&2
	done
done
