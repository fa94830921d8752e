#!/bin/sh
# shellcheck disable=SC2086,SC2046 # flag and size lists are split into words on purpose
# run.sh — `make bench`: kdx next to raw OpenBLAS and PyTorch.
#
# usage: sh bench/run.sh [BUILD_DIR]       (default: build; `make bench` passes it)
#
# Builds the two helpers (bench/blas_raw.c, bench/clock.c) into BUILD_DIR/bench,
# runs the three implementations as separate processes for each thread count,
# ROUNDS times over, collects their machine-readable lines in
# BUILD_DIR/bench/results.txt, and prints the tables via bench/report.lua.
#
# Knobs (environment): KDX_BENCH_ROUNDS (3), KDX_BENCH_SECONDS (0.3 per cell),
# KDX_BENCH_THREADS ("1 2"), KDX_BENCH_SIZES (64,128,256,512,1024).
# OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE are left exactly as found.
set -eu

cd "$(dirname "$0")/.."
ROOT=$PWD
BUILD=${1:-build}
case $BUILD in /*) ;; *) BUILD=$ROOT/$BUILD ;; esac
OUT=$BUILD/bench
LUA=${LUA:-lua5.4}
PY=/usr/bin/python3
CC=${CC:-gcc}
ROUNDS=${KDX_BENCH_ROUNDS:-3}
SECS=${KDX_BENCH_SECONDS:-0.3}
THREADS=${KDX_BENCH_THREADS:-1 2}
SIZES=${KDX_BENCH_SIZES:-64,128,256,512,1024}
ADD_ITERS=100000

if [ ! -f "$BUILD/kdx/core.so" ]; then
    echo "bench: $BUILD/kdx/core.so is missing; run make first" >&2
    exit 1
fi
mkdir -p "$OUT"

WARN="-std=c11 -Wall -Wextra -pedantic -Wshadow -Wmissing-prototypes"
LUA_INC=$(pkg-config --cflags lua5.4 2>/dev/null || echo -I/usr/include/lua5.4)
$CC -O2 $WARN -o "$OUT/blas_raw" bench/blas_raw.c -lopenblas
$CC -O2 $WARN -shared -fPIC $LUA_INC -o "$OUT/benchclock.so" bench/clock.c

export LUA_PATH="$ROOT/lua/?.lua;$ROOT/lua/?/init.lua;;"
export LUA_CPATH="$BUILD/?.so;$OUT/?.so;;"

RES=$OUT/results.txt
: >"$RES"
info() { echo "info run $*" >>"$RES"; }
info date "$(date -u '+%Y-%m-%d %H:%M UTC')"
info cpu "$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)"
info nproc "$(nproc)"
info load_before "$(cut -d' ' -f1-3 /proc/loadavg)"
info env "OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE-unset} OPENBLAS_L2_SIZE=${OPENBLAS_L2_SIZE-unset}"
info rounds "$ROUNDS"
info seconds "$SECS"

# A failing implementation leaves its cells n/a; the others still run.
run() {
    name=$1
    shift
    "$@" >>"$RES" || echo "bench: $name exited with status $?; its cells will read n/a" >&2
}

# CPU time the rest of the machine took while we ran: all busy time (steal
# included) minus our own children's. On a shared box this says how far to
# trust the 2-thread cells.
busy() { awk '/^cpu /{print $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat; }
busy0=$(busy)
wall0=$(date +%s.%N)
times >"$OUT/times0"

[ -x "$PY" ] || echo "info torch unavailable no-$PY" >>"$RES"
round=1
while [ "$round" -le "$ROUNDS" ]; do
    for t in $THREADS; do
        echo "bench: round $round/$ROUNDS, $t thread(s)" >&2
        run OpenBLAS env OPENBLAS_NUM_THREADS="$t" "$OUT/blas_raw" "$SECS" $(echo "$SIZES" | tr , ' ')
        run kdx "$LUA" bench/bench.lua "$t" "$SECS" "$SIZES" "$ADD_ITERS"
        # PyTorch's BLAS is libblas.so.3 = the same OpenBLAS, which ignores
        # torch.set_num_threads, so it gets the variable too.
        if [ -x "$PY" ]; then
            run PyTorch env OPENBLAS_NUM_THREADS="$t" "$PY" bench/bench_torch.py "$t" "$SECS" "$SIZES" "$ADD_ITERS"
        fi
    done
    round=$((round + 1))
done
info load_after "$(cut -d' ' -f1-3 /proc/loadavg)"
times >"$OUT/times1"
busy1=$(busy)
wall1=$(date +%s.%N)
# `times` line 2 is the children's user and system time, as "1m2.5s 0m1.0s".
own() { awk 'NR == 2 { split($1, u, "m"); split($2, s, "m"); print u[1] * 60 + u[2] + s[1] * 60 + s[2] }' "$1"; }
info other_cpu "$(awk -v b0="$busy0" -v b1="$busy1" -v w0="$wall0" -v w1="$wall1" -v o0="$(own "$OUT/times0")" \
    -v o1="$(own "$OUT/times1")" -v hz="$(getconf CLK_TCK)" -v n="$(nproc)" \
    'BEGIN { o = (b1 - b0) / hz - (o1 - o0); if (o < 0) o = 0; printf "%.0f %.0f", 100 * o / ((w1 - w0) * n), w1 - w0 }')"

echo >&2
"$LUA" bench/report.lua "$RES"
