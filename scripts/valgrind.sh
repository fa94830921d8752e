#!/bin/sh
# Runs the C tests and the busted specs under valgrind (memcheck): a test
# fails on a memory error or on a leak of kind definite or indirect (still
# reachable and possibly lost blocks are OpenBLAS's, libgomp's and Lua's
# process-lifetime allocations, not leaks). Ends with one line
# "N passed, N failed" like scripts/run_tests.sh.
#   scripts/valgrind.sh BUILD_DIR [C test binaries...]
# VALGRIND_SPECS: the spec files to run under valgrind (default "spec", all
# of them; `make test-valgrind` passes a representative subset, see the
# Makefile; empty: the C tests only).
set -u
if ! command -v valgrind >/dev/null 2>&1; then
    echo "valgrind.sh: needs valgrind (apt-get install valgrind)" >&2
    exit 1
fi
build=$1
shift
specs=${VALGRIND_SPECS-spec}
vg="valgrind -q --leak-check=full --errors-for-leak-kinds=definite,indirect --error-exitcode=99"
vg="$vg --suppressions=$(pwd)/scripts/valgrind.supp --num-callers=30"
# One OpenBLAS thread: valgrind serialises threads anyway, and fewer threads
# keep its bookkeeping small.
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
export LUA_CPATH="$(pwd)/$build/?.so;;"

passed=0 failed=0
log=$(mktemp)
trap 'rm -f "$log"' EXIT

for t in "$@"; do
    # shellcheck disable=SC2086
    $vg "$t" >"$log" 2>&1
    status=$?
    line=$(grep -E '^[a-z_]+: [0-9]+ passed, [0-9]+ failed' "$log" | tail -n 1)
    if [ "$status" -eq 99 ]; then
        cat "$log"
        echo "$t: valgrind reported errors or leaks" >&2
        failed=$((failed + 1))
    elif [ -n "$line" ]; then
        echo "$line (valgrind)"
        p=$(echo "$line" | sed -E 's/.*: ([0-9]+) passed.*/\1/')
        f=$(echo "$line" | sed -E 's/.* ([0-9]+) failed.*/\1/')
        passed=$((passed + p)); failed=$((failed + f))
        [ "$status" -ne 0 ] && [ "$f" -eq 0 ] && failed=$((failed + 1))
    else
        cat "$log"
        echo "$t: crashed or printed no summary" >&2
        failed=$((failed + 1))
    fi
done

if [ -n "$specs" ]; then
    # shellcheck disable=SC2086
    $vg lua5.4 /usr/bin/busted -o utfTerminal $specs >"$log" 2>&1
    status=$?
    line=$(grep -E '[0-9]+ successes? / [0-9]+ failures? / [0-9]+ errors? / [0-9]+ pending' "$log" | tail -n 1)
    if [ "$status" -eq 99 ]; then
        cat "$log"
        echo "busted: valgrind reported errors or leaks" >&2
        failed=$((failed + 1))
    elif [ -n "$line" ]; then
        [ "$status" -ne 0 ] && cat "$log"
        echo "busted $specs: $line (valgrind)"
        s=$(echo "$line" | sed -E 's/.*([^0-9]|^)([0-9]+) success.*/\2/' | tr -dc 0-9)
        f=$(echo "$line" | sed -E 's/.* ([0-9]+) failures?.*/\1/')
        e=$(echo "$line" | sed -E 's/.* ([0-9]+) errors?.*/\1/')
        passed=$((passed + s)); failed=$((failed + f + e))
        [ "$status" -ne 0 ] && [ $((f + e)) -eq 0 ] && failed=$((failed + 1))
    else
        cat "$log"
        echo "busted crashed or printed no summary (exit $status)" >&2
        failed=$((failed + 1))
    fi
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
