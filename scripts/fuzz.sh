#!/bin/sh
# Builds the libFuzzer harnesses of spec/fuzz/ and runs each for a while on a
# scratch copy of its seed corpus. Prints one line per harness and ends with
# "fuzz: N harnesses, N crashes"; exits non-zero when any harness crashed,
# leaked, hit a sanitizer report, ran out of memory or timed out. Crashing
# inputs are kept under spec/fuzz/crashes/ (not committed), full logs under
# build/fuzz/logs/.
#   scripts/fuzz.sh [SECONDS [HARNESS...]]    defaults: 60, all four
# Environment: FUZZ_JOBS (harnesses run at once; default: the core count),
# FUZZ_RSS_MB (memory limit, 2048), FUZZ_TIMEOUT (seconds per input, 10),
# FUZZ_FLAGS (more libFuzzer flags), FUZZ_CC (clang).
set -u
cd "$(dirname "$0")/.." || exit 1

seconds=${1:-60}
[ $# -gt 0 ] && shift
harnesses=${*:-idx csv image safetensors}
cc=${FUZZ_CC:-clang}
jobs=${FUZZ_JOBS:-$(nproc 2>/dev/null || echo 2)}
rss=${FUZZ_RSS_MB:-2048}
timeout=${FUZZ_TIMEOUT:-10}
out=build/fuzz
crashes=spec/fuzz/crashes

if ! command -v "$cc" >/dev/null 2>&1 ||
   [ ! -f "$("$cc" -print-file-name="libclang_rt.fuzzer-$(uname -m).a" 2>/dev/null)" ]; then
    echo "fuzz: needs clang with libFuzzer; install them with: sh scripts/deps.sh --fuzz" >&2
    exit 1
fi

# The engine is built as the Makefile builds it, with clang's sanitizers and
# libFuzzer's coverage instrumentation; without -Werror, since clang's
# warnings are not gcc's and the gcc build is the one that enforces them.
san="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
cflags="-std=c11 -O1 -g -fPIC -pthread -Wall -Wextra -pedantic -Wshadow -Wmissing-prototypes $san"
libs="-lopenblas -lstb -lz -lm"

# ---- build ----

mkdir -p "$out/obj" "$out/logs"
# shellcheck disable=SC2012
newest_header=$(ls -t csrc/*.h | head -n 1)
stale=""
for src in csrc/*.c; do
    obj="$out/obj/$(basename "$src" .c).o"
    if [ ! -f "$obj" ] || [ "$src" -nt "$obj" ] || [ "$newest_header" -nt "$obj" ]; then
        stale="$stale $src"
    fi
done
# Objects of engine files that no longer exist would be linked in: drop them.
for obj in "$out"/obj/*.o; do
    [ -f "$obj" ] && [ ! -f "csrc/$(basename "$obj" .o).c" ] && rm -f "$obj"
done
if [ -n "$stale" ]; then
    echo "fuzz: compiling $(echo "$stale" | wc -w | tr -d ' ') engine files with $cc"
    # shellcheck disable=SC2086,SC2016
    if ! printf '%s\n' $stale | xargs -P "$jobs" -I{} sh -c \
        'o="$1/obj/$(basename "$2" .c).o"; '"$cc"' '"$cflags"' -fsanitize=fuzzer-no-link -c "$2" -o "$o" || { rm -f "$o"; exit 255; }' \
        sh "$out" {}; then
        echo "fuzz: the engine does not build with $cc" >&2
        exit 1
    fi
fi
# stb_image from Debian's header, instrumented (ASan and coverage; not UBSan:
# stb's own undefined behaviour is not ours to report) for the image harness.
stb=$out/stb_image_fuzz.o
if [ ! -f "$stb" ] || [ spec/fuzz/stb_image_fuzz.c -nt "$stb" ] || [ /usr/include/stb/stb_image.h -nt "$stb" ]; then
    $cc -O1 -g -fno-omit-frame-pointer -fsanitize=address,fuzzer-no-link -w -c spec/fuzz/stb_image_fuzz.c -o "$stb" || {
        echo "fuzz: cannot build $stb" >&2
        exit 1
    }
fi
for h in $harnesses; do
    src=spec/fuzz/fuzz_$h.c bin=$out/fuzz_$h extra=""
    [ "$h" = image ] && extra=$stb
    if [ ! -f "$src" ]; then
        echo "fuzz: no harness $src" >&2
        exit 2
    fi
    # shellcheck disable=SC2086
    $cc $cflags -fsanitize=fuzzer -Icsrc "$src" $extra "$out"/obj/*.o -o "$bin" $libs || {
        echo "fuzz: cannot build $bin" >&2
        exit 1
    }
done

# ---- run ----

scratch=$(mktemp -d "${TMPDIR:-/tmp}/kdx-fuzz.XXXXXX")
trap 'rm -rf "$scratch"' EXIT
trap 'exit 130' INT TERM
mkdir -p "$crashes"

# allocator_may_return_null: a header may declare an absurd size, and the
# engine must answer KDX_ENOMEM rather than ASan abort. Allocations above
# FUZZ_RSS_MB that do succeed are reported by libFuzzer as out-of-memory.
export ASAN_OPTIONS="${ASAN_OPTIONS:-allocator_may_return_null=1:detect_leaks=1}"
LSAN_OPTIONS="suppressions=$(pwd)/scripts/lsan.supp:print_suppressions=0"
export LSAN_OPTIONS
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
export OPENBLAS_NUM_THREADS=1

run_one() {
    h=$1
    mkdir -p "$scratch/$h"
    cp spec/fuzz/corpus/"$h"/* "$scratch/$h/" 2>/dev/null
    # shellcheck disable=SC2086
    "$out/fuzz_$h" -max_total_time="$seconds" -rss_limit_mb="$rss" -timeout="$timeout" \
        -artifact_prefix="$crashes/$h-" -print_final_stats=1 ${FUZZ_FLAGS:-} "$scratch/$h" \
        >"$out/logs/$h.log" 2>&1
    echo $? >"$scratch/$h.rc"
}

running=0
for h in $harnesses; do
    run_one "$h" &
    running=$((running + 1))
    if [ "$running" -ge "$jobs" ]; then
        wait
        running=0
    fi
done
wait

n=0 failed=0
for h in $harnesses; do
    n=$((n + 1))
    log=$out/logs/$h.log
    rc=$(cat "$scratch/$h.rc" 2>/dev/null || echo 1)
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    last=$(grep -a -E '^#[0-9]+' "$log" | grep -a 'cov:' | tail -n 1)
    cov=$(printf '%s\n' "$last" | sed -n 's/.* cov: \([0-9]*\).*/\1/p')
    ft=$(printf '%s\n' "$last" | sed -n 's/.* ft: \([0-9]*\).*/\1/p')
    corp=$(printf '%s\n' "$last" | sed -n 's/.* corp: \([0-9]*\).*/\1/p')
    rssmb=$(sed -n 's/^stat::peak_rss_mb: *//p' "$log" | tail -n 1)
    stats="${execs:-?} execs, cov ${cov:-?}, ft ${ft:-?}, corpus ${corp:-?}, peak rss ${rssmb:-?} MB"
    if [ "$rc" -eq 0 ]; then
        echo "fuzz_$h: $stats: ok"
    else
        failed=$((failed + 1))
        what=$(grep -a -m 1 -E '^(==[0-9]+== ?ERROR|kdx fuzz:|.*runtime error:)' "$log" | sed 's/^==[0-9]*== *//')
        art=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -n 1)
        echo "fuzz_$h: $stats: FAILED (exit $rc): ${what:-see the log}"
        [ -n "$art" ] && echo "  input: $art  (replay: $out/fuzz_$h $art)"
        echo "  log: $log"
        grep -a -A 30 -m 1 -E '^(==[0-9]+== ?ERROR|kdx fuzz:|.*runtime error:|ALARM)' "$log" | sed 's/^/    /' | head -n 30
    fi
done
rmdir "$crashes" 2>/dev/null
[ "$failed" -eq 1 ] && noun=crash || noun=crashes
echo "fuzz: $n harnesses, $failed $noun"
[ "$failed" -eq 0 ]
