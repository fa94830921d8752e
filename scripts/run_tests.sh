#!/bin/sh
# Runs the C-only engine tests and/or the busted specs and ends with one line
# "N passed, N failed" (", N skipped" when specs are pending).
#   scripts/run_tests.sh ctest|spec|all BUILD_DIR [C test binaries...]
# Under a sanitizer build (BUILD_DIR=build-san) the Lua interpreter gets the
# ASan runtime preloaded, since lua5.4 itself is not instrumented.
set -u
mode=$1 build=$2
shift 2

passed=0 failed=0 skipped=0
log=$(mktemp)
trap 'rm -f "$log"' EXIT

if [ "$build" = build-san ]; then
    # allocator_may_return_null: the tests ask for absurd sizes on purpose and
    # expect a clean KDX_ENOMEM, not an ASan abort.
    export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=1:halt_on_error=1}"
    export LSAN_OPTIONS="suppressions=$(pwd)/scripts/lsan.supp:print_suppressions=0"
    export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
    preload="$(gcc -print-file-name=libasan.so)"
else
    preload=""
fi

if [ "$mode" = ctest ] || [ "$mode" = all ]; then
    for t in "$@"; do
        if "$t" >"$log" 2>&1; then status=0; else status=1; fi
        cat "$log"
        line=$(grep -E '^[a-z_]+: [0-9]+ passed, [0-9]+ failed' "$log" | tail -n 1)
        if [ -n "$line" ]; then
            p=$(echo "$line" | sed -E 's/.*: ([0-9]+) passed.*/\1/')
            f=$(echo "$line" | sed -E 's/.* ([0-9]+) failed.*/\1/')
            passed=$((passed + p)); failed=$((failed + f))
            [ "$status" -ne 0 ] && [ "$f" -eq 0 ] && failed=$((failed + 1))
        else
            echo "$t: crashed or printed no summary" >&2
            failed=$((failed + 1))
        fi
    done
fi

if [ "$mode" = spec ] || [ "$mode" = all ]; then
    LD_PRELOAD="$preload" lua5.4 /usr/bin/busted -o utfTerminal spec >"$log" 2>&1
    status=$?
    cat "$log"
    line=$(grep -E '[0-9]+ successes? / [0-9]+ failures? / [0-9]+ errors? / [0-9]+ pending' "$log" | tail -n 1)
    if [ -n "$line" ]; then
        s=$(echo "$line" | sed -E 's/.*([^0-9]|^)([0-9]+) success.*/\2/')
        f=$(echo "$line" | sed -E 's/.* ([0-9]+) failures?.*/\1/')
        e=$(echo "$line" | sed -E 's/.* ([0-9]+) errors?.*/\1/')
        pnd=$(echo "$line" | sed -E 's/.* ([0-9]+) pending.*/\1/')
        s=$(echo "$s" | tr -dc 0-9)
        passed=$((passed + s)); failed=$((failed + f + e)); skipped=$((skipped + pnd))
        [ "$status" -ne 0 ] && [ $((f + e)) -eq 0 ] && failed=$((failed + 1))
    else
        echo "busted crashed or printed no summary (exit $status)" >&2
        failed=$((failed + 1))
    fi
fi

if [ "$skipped" -gt 0 ]; then
    echo "$passed passed, $failed failed, $skipped skipped"
else
    echo "$passed passed, $failed failed"
fi
[ "$failed" -eq 0 ]
