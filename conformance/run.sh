#!/usr/bin/env bash
# conformance/run.sh — run the OCI runtime-tools validation suite (v0.9.0)
# against several runtimes side by side and write the table to
# docs/conformance.md.  `make conformance` runs it after `make all`.
#
# Needs root (the suite creates real containers), go, tar and the runtimes.
#
# Environment:
#   RUNTIMES  "name=path ..." (default: "runc=runc runvirt=$REPO/bin/runvirt").
#             A path without a slash is looked up in $PATH.
#   TESTS     validation programs to run (default: all of them), e.g.
#             TESTS="default linux_uid_mappings" conformance/run.sh
#   WORK      work dir (default: build/conformance): programs, rootfs, logs.
#   TIMEOUT   seconds per (test, runtime) before it is killed (default: 180).
#   DOC       the document to write (default: docs/conformance.md); DOC= to skip.
#   RUNVIRT_CONFIG  runvirt's config file. When unset and build/guest holds a
#             guest image, a config pointing at it is written to the work dir.
#
# Results are kept per (test, runtime) under $WORK/results, so a run of a
# subset (TESTS=..., or RUNTIMES=just one) replaces only those rows; the
# document is always written from every result in the work dir.
#
# Classification of one program's run (its TAP output needs care):
#   timeout  killed after $TIMEOUT s.
#   fail     non-zero exit; or any `not ok` line (a `not ok # TODO` is not
#            counted); or fewer test points than the plan; or a `1..0` plan
#            with an "error" diagnostic (how the hook tests report failure);
#            or no TAP plan at all (except for a *_fail test, which passes
#            by exiting 0 without printing anything).
#   skip     every test point is `ok # SKIP`.
#   pass     otherwise.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"

RUNTIME_TOOLS=github.com/opencontainers/runtime-tools
GO=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
WORK=${WORK:-build/conformance}
TIMEOUT=${TIMEOUT:-180}
DOC=${DOC-docs/conformance.md}
RUNTIMES=${RUNTIMES:-"runc=runc runvirt=$REPO/bin/runvirt"}
TESTS=${TESTS:-}

say() { printf '%s\n' "$*" >&2; }
die() { say "conformance: $*"; exit 1; }

[ "$(id -u)" -eq 0 ] || die "must run as root (the suite creates real containers)"
for tool in tar timeout "$GO"; do
	command -v "$tool" >/dev/null || die "$tool is not installed"
done

mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)
export GOWORK=off

# --- runtimes --------------------------------------------------------------
declare -a RT_NAMES=()
declare -A RT_PATH=()
for spec in $RUNTIMES; do
	name=${spec%%=*} path=${spec#*=}
	[ -n "$name" ] && [ "$name" != "$spec" ] && [ -n "$path" ] ||
		die "bad RUNTIMES entry '$spec' (want name=path)"
	[[ $name =~ ^[A-Za-z0-9._-]+$ ]] || die "bad runtime name '$name'"
	if [[ $path != */* ]]; then
		path=$(command -v "$path") || die "runtime $name: '${spec#*=}' is not in \$PATH"
	fi
	[ -x "$path" ] || die "runtime $name: $path is not executable (run: make all)"
	RT_NAMES+=("$name")
	RT_PATH[$name]=$path
done
[ ${#RT_NAMES[@]} -gt 0 ] || die "RUNTIMES is empty"

# runvirt: use the guest image built in this checkout unless told otherwise.
if [ -z "${RUNVIRT_CONFIG:-}" ] && [ -f build/guest/initrd.img ]; then
	kernel=build/guest/vmlinuz
	[ -f build/guest/vmlinux ] && kernel=build/guest/vmlinux
	cat >"$WORK/runvirt-config.toml" <<-TOML
		# Written by conformance/run.sh: the guest image of this checkout.
		kernel = "$REPO/$kernel"
		initrd = "$REPO/build/guest/initrd.img"
		boot_timeout = "90s"
	TOML
	export RUNVIRT_CONFIG=$WORK/runvirt-config.toml
fi

# --- build the suite ---------------------------------------------------------
say "conformance: building $RUNTIME_TOOLS validation programs into $WORK"
MODDIR=$(cd conformance && "$GO" mod download -json "$RUNTIME_TOOLS" |
	sed -n 's/^[[:space:]]*"Dir": "\(.*\)",*$/\1/p')
[ -d "$MODDIR/validation" ] || die "cannot find $RUNTIME_TOOLS in the module cache"
RT_TOOLS_VERSION=$(cd conformance && "$GO" list -m -f '{{.Version}}' "$RUNTIME_TOOLS")

ALL_TESTS=()
for d in "$MODDIR"/validation/*/; do
	t=$(basename "$d")
	[ "$t" = util ] && continue
	ALL_TESTS+=("$t")
done
if [ -n "$TESTS" ]; then
	SELECTED=()
	for t in $TESTS; do
		[ -d "$MODDIR/validation/$t" ] && [ "$t" != util ] ||
			die "no validation program '$t' (have: ${ALL_TESTS[*]})"
		SELECTED+=("$t")
	done
else
	SELECTED=("${ALL_TESTS[@]}")
fi

mkdir -p "$WORK/bin"
(
	cd conformance
	"$GO" mod download
	CGO_ENABLED=0 "$GO" build -trimpath -tags 'netgo osusergo' -o "$WORK/runtimetest" \
		"$RUNTIME_TOOLS/cmd/runtimetest"
	pkgs=()
	for t in "${SELECTED[@]}"; do pkgs+=("$RUNTIME_TOOLS/validation/$t"); done
	"$GO" build -trimpath -o "$WORK/bin/" "${pkgs[@]}"
) || die "building the suite failed"
install -m 0644 "$MODDIR/rootfs-amd64.tar.gz" "$WORK/rootfs-amd64.tar.gz"

# --- run ---------------------------------------------------------------------

# classify TEST RC TAPFILE -> prints "RESULT<TAB>DETAIL"
classify() {
	local test=$1 rc=$2 tap=$3 plan notok ok skip todo msg
	if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
		printf 'timeout\tkilled after %ss\n' "$TIMEOUT"
		return
	fi
	notok=$(grep -Ec '^not ok' "$tap" || true)
	todo=$(grep -Eic '^not ok [0-9]+ # TODO' "$tap" || true)
	notok=$((notok - todo))
	ok=$(grep -Ec '^ok' "$tap" || true)
	skip=$(grep -Eic '^ok [0-9]+ # SKIP' "$tap" || true)
	plan=$(sed -n 's/^1\.\.\([0-9][0-9]*\).*/\1/p' "$tap" | tail -n 1)
	if [ "$rc" -ne 0 ]; then
		printf 'fail\texit status %s\n' "$rc"
	elif [ "$notok" -gt 0 ]; then
		msg=$(grep -E '^not ok' "$tap" | grep -Eiv '^not ok [0-9]+ # TODO' | head -n 1 |
			sed 's/^not ok [0-9]* *-* *//')
		printf 'fail\t%s of %s not ok, first: %s\n' "$notok" "$((ok + notok + todo))" "$msg"
	elif [ -z "$plan" ]; then
		if [[ $test == *_fail ]] && ! grep -q '[^[:space:]]' "$tap"; then
			printf 'pass\texit 0, silent\n'
		else
			printf 'fail\tno TAP plan\n'
		fi
	elif [ "$plan" -eq 0 ]; then
		if grep -q '"error":' "$tap"; then
			msg=$(sed -n 's/^ *"error": "\(.*\)",*$/\1/p' "$tap" | head -n 1 | sed 's/\\n.*//')
			printf 'fail\terror: %s\n' "${msg:-see log}"
		else
			printf 'pass\t1..0, no error\n'
		fi
	elif [ $((ok + notok + todo)) -lt "$plan" ]; then
		printf 'fail\tonly %s of %s test points ran\n' "$((ok + notok + todo))" "$plan"
	elif [ "$skip" -eq "$ok" ]; then
		msg=$(grep -Ei '^ok [0-9]+ # SKIP' "$tap" | head -n 1 | sed 's/^ok [0-9]* # [Ss][Kk][Ii][Pp] *//')
		printf 'skip\t%s\n' "$msg"
	else
		printf 'pass\t%s ok%s\n' "$ok" "$([ "$skip" -gt 0 ] && echo " ($skip skipped)")"
	fi
}

# cleanup_tmp: empty the tests' TMPDIR (where their bundles live). A test
# that shares the host's mount namespace (linux_ns_itype) leaves the
# container's /proc, /sys and /dev mounted in its bundle: unmount whatever is
# mounted under it first (deepest first) and never cross a mount while
# removing. Prints how many mounts it took down.
cleanup_tmp() {
	local m n=0
	while read -r m; do
		umount -l "$m" 2>/dev/null && n=$((n + 1))
	done < <(awk -v p="$WORK/tmp/" 'index($5, p) == 1 { print $5 }' /proc/self/mountinfo | sort -r)
	rm -rf --one-file-system "$WORK/tmp" 2>/dev/null || true
	echo "$n"
}

# Container ids the runtime lists (best effort: not every runtime has `list`).
list_ids() { "$1" list -q 2>/dev/null </dev/null | sort || true; }

# binary_id NAME: the runtime's version line and a hash of its binary.
binary_id() {
	local path=${RT_PATH[$1]} v
	v=$("$path" --version 2>/dev/null </dev/null | head -n 1 || true)
	printf '%s, sha256 %s' "${v:-version unknown}" "$(sha256sum "$path" | cut -c1-12)"
}

# run_one TEST RUNTIME-NAME
run_one() {
	local test=$1 name=$2 path=${RT_PATH[$2]} log rc=0 start end secs result detail
	local before after id msg n left=0
	log=$WORK/logs/$name
	mkdir -p "$log" "$WORK/results/$name"
	cleanup_tmp >/dev/null
	[ ! -e "$WORK/tmp" ] || die "cannot empty $WORK/tmp"
	mkdir -p "$WORK/tmp"
	before=$(list_ids "$path")
	start=$(date +%s.%N)
	(
		cd "$WORK"
		export RUNTIME=$path TMPDIR=$WORK/tmp
		exec timeout -k 10 "$TIMEOUT" "$WORK/bin/$test"
	) </dev/null >"$log/$test.tap" 2>"$log/$test.stderr" || rc=$?
	end=$(date +%s.%N)
	secs=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }')
	# Containers the test left behind would skew the next tests: delete them.
	after=$(list_ids "$path")
	for id in $(comm -13 <(printf '%s\n' "$before") <(printf '%s\n' "$after")); do
		# Only the suite's own: their bundles are under our TMPDIR.
		"$path" state "$id" 2>/dev/null </dev/null | grep -q "\"bundle\": *\"$WORK/tmp/" || continue
		left=$((left + 1))
		printf 'conformance/run.sh: deleting leftover container %s\n' "$id" >>"$log/$test.stderr"
		"$path" delete --force "$id" >>"$log/$test.stderr" 2>&1 </dev/null || true
	done
	n=$(cleanup_tmp)
	[ "$n" -eq 0 ] || printf 'conformance/run.sh: unmounted %s mounts the test left in its bundle\n' "$n" >>"$log/$test.stderr"
	IFS=$'\t' read -r result detail < <(classify "$test" "$rc" "$log/$test.tap")
	if [ "$result" != pass ] && [ "$result" != skip ]; then
		# Add the runtime's own complaint (a log line's msg="..."), or else
		# the first thing the program said on stderr.
		msg=$(cat "$log/$test.tap" "$log/$test.stderr" |
			sed -n 's/.*msg=\\*"\([^"\\]*\).*/\1/p' | tail -n 1)
		if [ -z "$msg" ] && [ "$rc" -ne 0 ]; then
			msg=$(grep -v '^conformance/run.sh:' "$log/$test.stderr" | grep -m 1 '[^[:space:]]' || true)
		fi
		msg=$(cut -c1-160 <<<"$msg")
		[ -n "$msg" ] && [[ $detail != *"$msg"* ]] && detail="$detail; runtime: $msg"
	fi
	[ "$left" -eq 0 ] || detail="$detail; left $left container(s) behind (deleted)"
	# The binary can change between rows (a subset re-run, a rebuild during a
	# run): record which one produced this row.
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$result" "$rc" "$secs" "$(date -u +%FT%TZ)" \
		"$(binary_id "$name")" "$detail" "$path" >"$WORK/results/$name/$test"
	printf '%-8s %6ss' "$result" "$secs" >&2
}

run_start=$(date +%s)
say "conformance: running ${#SELECTED[@]} programs against: ${RT_NAMES[*]} (timeout ${TIMEOUT}s each)"
i=0
for test in "${SELECTED[@]}"; do
	i=$((i + 1))
	printf '[%2d/%d] %-34s' "$i" "${#SELECTED[@]}" "$test" >&2
	for name in "${RT_NAMES[@]}"; do
		printf '  %s: ' "$name" >&2
		run_one "$test" "$name"
	done
	printf '\n' >&2
done
run_secs=$(($(date +%s) - run_start))
say "conformance: ran in ${run_secs}s; logs in $WORK/logs/<runtime>/<test>.{tap,stderr}"
printf '%s\t%s\t%s\t%s\n' "$(date -u +%FT%TZ)" "$run_secs" "${#SELECTED[@]}" "${RT_NAMES[*]}" >>"$WORK/runs.tsv"

# --- write the document -------------------------------------------------------
[ -n "$DOC" ] || exit 0

# Columns: the runtimes of this run, then any others with stored results.
COLS=("${RT_NAMES[@]}")
for d in "$WORK"/results/*/; do
	[ -d "$d" ] || continue
	n=$(basename "$d")
	[[ " ${COLS[*]} " == *" $n "* ]] || COLS+=("$n")
done

field() { cut -f "$2" "$1" 2>/dev/null || true; } # field FILE N
mdcell() { sed 's/|/\\|/g' <<<"$1"; }

# Hand-written sections survive a rewrite: the text between
# <!-- keep:NAME --> and <!-- /keep:NAME --> in the old document.
kept_block() { # kept_block NAME DEFAULT-TEXT
	local text=""
	if [ -f "$DOC" ] && grep -qF "<!-- keep:$1 -->" "$DOC"; then
		text=$(sed -n "\|<!-- keep:$1 -->|,\|<!-- /keep:$1 -->|p" "$DOC" | sed '1d;$d')
	fi
	echo "<!-- keep:$1 -->"
	printf '%s\n' "${text:-$2}"
	echo "<!-- /keep:$1 -->"
}

runvirt_check=""
for n in "${COLS[@]}"; do
	p=${RT_PATH[$n]:-}
	if [ -z "$p" ]; then # not in this run: the binary its stored rows name
		for f in "$WORK/results/$n"/*; do [ -f "$f" ] && p=$(field "$f" 7) && break; done
		[ -x "$p" ] || p=""
	fi
	if [ "$n" = runvirt ] && [ -n "$p" ]; then
		runvirt_check=$("$p" check 2>/dev/null | sed -n 's/^will use: *//p' | head -n 1 || true)
	fi
done

tmpdoc=$(mktemp)
{
	echo "# OCI runtime conformance: ${COLS[*]}"
	echo
	echo "Generated by \`make conformance\` (\`conformance/run.sh\`) on $(date -u '+%F %T UTC'). The suite is"
	echo "the [OCI runtime-tools](https://github.com/opencontainers/runtime-tools) $RT_TOOLS_VERSION validation"
	echo "programs (\`validation/<test>\`), built in the separate module \`conformance/\` and run once per"
	echo "runtime with \`RUNTIME=<path>\`, as root, from a directory holding \`runtimetest\` and the suite's"
	echo "\`rootfs-amd64.tar.gz\`, with a ${TIMEOUT} s timeout per program."
	echo
	echo "Machine:"
	echo
	echo "- CPUs (\`nproc\`): $(nproc) ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1))"
	if ! grep -Eqw 'vmx|svm' /proc/cpuinfo; then kvm="not usable (no vmx/svm CPU flag), so runvirt uses TCG"
	elif [ ! -e /dev/kvm ]; then kvm="not usable (no /dev/kvm)"
	else kvm="available"; fi
	echo "- kernel: $(uname -r); KVM: $kvm"
	for n in "${COLS[@]}"; do
		vers=$(for f in "$WORK/results/$n"/*; do [ -f "$f" ] && field "$f" 5; done | sort | uniq -c |
			awk '{ c = $1; $1 = ""; sub(/^ /, ""); printf "%s%s (%d %s)", (NR > 1 ? ", " : ""), $0, c, (c == 1 ? "row" : "rows") }')
		echo "- $n: ${vers:-no results}"
	done
	[ -n "$runvirt_check" ] && echo "- runvirt \`check\` will use: $runvirt_check"
	[ -n "${RUNVIRT_CONFIG:-}" ] && echo "- runvirt config: \`${RUNVIRT_CONFIG#"$REPO"/}\`"
	full=$(awk -F'\t' -v n="${#ALL_TESTS[@]}" '$3 == n' "$WORK/runs.tsv" | tail -n 1)
	[ -z "$full" ] || echo "- last full run: $(cut -f3 <<<"$full") programs × ($(cut -f4 <<<"$full")) on $(cut -f1 <<<"$full") took $(cut -f2 <<<"$full") s"
	echo "- last run: ${#SELECTED[@]} programs × ${#RT_NAMES[@]} runtimes (${RT_NAMES[*]}) in ${run_secs} s"
	echo
	echo "Raw logs: \`${WORK#"$REPO"/}/logs/<runtime>/<test>.tap\` (TAP, stdout) and \`.stderr\`;"
	echo "one result line per (test, runtime) in \`${WORK#"$REPO"/}/results/<runtime>/<test>\`."
	echo
	echo "Results: **pass**; **fail** (non-zero exit, a \`not ok\` line, fewer test points than planned, or a"
	echo "\`1..0\` plan with an \`\"error\"\` diagnostic — how the hook tests fail; a \`*_fail\` test passes by"
	echo "exiting 0 silently); **skip** (every test point skipped); **timeout**; **—** not run."
	echo
	printf '| test |'; for n in "${COLS[@]}"; do printf ' %s |' "$n"; done; printf ' note |\n'
	printf '|---|'; for n in "${COLS[@]}"; do printf -- '---|'; done; printf -- '---|\n'
	for t in "${ALL_TESTS[@]}"; do
		have=0
		for n in "${COLS[@]}"; do [ -f "$WORK/results/$n/$t" ] && have=1; done
		[ $have -eq 1 ] || continue
		printf '| %s |' "$t"
		note=""
		for n in "${COLS[@]}"; do
			f=$WORK/results/$n/$t
			if [ -f "$f" ]; then
				r=$(field "$f" 1)
				printf ' %s |' "$r"
				if [ "$r" != pass ]; then
					d=$(field "$f" 6 | cut -c1-140)
					note="${note:+$note; }$n: $d"
				fi
			else
				printf ' — |'
			fi
		done
		printf ' %s |\n' "$(mdcell "$note")"
	done
	echo
	echo "Totals:"
	echo
	printf '| runtime | pass | fail | timeout | skip | run | time (s) |\n|---|---|---|---|---|---|---|\n'
	for n in "${COLS[@]}"; do
		files=("$WORK/results/$n"/*)
		[ -f "${files[0]}" ] || continue
		cat "${files[@]}" | awk -F'\t' -v n="$n" '
			{ c[$1]++; total++; secs += $3 }
			END { printf "| %s | %d | %d | %d | %d | %d | %.0f |\n", n, c["pass"], c["fail"], c["timeout"], c["skip"], total, secs }'
	done
	echo
	echo "## Why runvirt differs"
	echo
	if [ ${#COLS[@]} -ge 2 ]; then
		a=${COLS[0]} b=${COLS[1]}
		echo "Tests where $a and $b differ (this list is regenerated on every run):"
		echo
		nd=0
		for t in "${ALL_TESTS[@]}"; do
			fa=$WORK/results/$a/$t fb=$WORK/results/$b/$t
			[ -f "$fa" ] && [ -f "$fb" ] || continue
			ra=$(field "$fa" 1) rb=$(field "$fb" 1)
			[ "$ra" = "$rb" ] && continue
			echo "- \`$t\`: $a $ra, $b $rb"
			nd=$((nd + 1))
		done
		[ $nd -gt 0 ] || echo "- (none)"
		echo
	fi
	kept_block why-differs "_To be written: for each test above, why runvirt's result differs from runc's (not
implemented yet, a VM cannot do it, the test assumes a runtime sharing the host's kernel, ...)._"
	echo
	echo "## Why runc fails here"
	echo
	kept_block runc-failures "_To be written: why the tests runc fails on this machine fail (host, suite or runc)._"
} >"$tmpdoc"
mkdir -p "$(dirname "$DOC")"
mv "$tmpdoc" "$DOC"
chmod 0644 "$DOC"
say "conformance: wrote $DOC"
