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
# Then the training benchmark (bench/train.lua, bench/train_torch.py): each
# model trained once per framework and thread count, in its own process, and
# the load time of each framework in a few fresh processes.
#
# Knobs (environment): KDX_BENCH_ROUNDS (3), KDX_BENCH_SECONDS (0.3 per cell),
# KDX_BENCH_THREADS ("1 2"), KDX_BENCH_SIZES (64,128,256,512,1024),
# KDX_BENCH_EPOCHS (5; 0 skips training), KDX_BENCH_MODELS ("mlp cnn"),
# KDX_BENCH_SEED (1; read by train.lua and train_torch.py), KDX_BENCH_EXPLAIN (1;
# 0 skips the attribution table), KDX_BENCH_DIST_EPOCHS (20; 0 skips the
# data-parallel table, which also needs mpirun and build/kdx/dist_mpi.so).
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
EPOCHS=${KDX_BENCH_EPOCHS:-5}
MODELS=${KDX_BENCH_MODELS:-mlp cnn}
IMPORT_RUNS=7
FMNIST=/usr/share/datasets/fashion-mnist

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
info epochs "$EPOCHS"

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
# `times` line 2 is the children's user and system time, as "1m2.5s 0m1.0s".
own() { awk 'NR == 2 { split($1, u, "m"); split($2, s, "m"); print u[1] * 60 + u[2] + s[1] * 60 + s[2] }' "$1"; }
# mark NAME: remember the machine's busy time, the wall clock and our own CPU.
mark() {
    busy >"$OUT/busy.$1"
    date +%s.%N >"$OUT/wall.$1"
    times >"$OUT/times.$1"
}
# share FROM TO: "<percent of the machine other processes used> <seconds>".
share() {
    awk -v b0="$(cat "$OUT/busy.$1")" -v b1="$(cat "$OUT/busy.$2")" -v w0="$(cat "$OUT/wall.$1")" \
        -v w1="$(cat "$OUT/wall.$2")" -v o0="$(own "$OUT/times.$1")" -v o1="$(own "$OUT/times.$2")" \
        -v hz="$(getconf CLK_TCK)" -v n="$(nproc)" \
        'BEGIN { o = (b1 - b0) / hz - (o1 - o0); if (o < 0) o = 0; printf "%.0f %.0f", 100 * o / ((w1 - w0) * n), w1 - w0 }'
}
mark start

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
mark kernels

# 5. Attribution methods on a CNN (bench/explain.lua, bench/explain_torch.py),
# once per thread count and round, kdx and PyTorch back to back.
if [ "${KDX_BENCH_EXPLAIN:-1}" != 0 ]; then
    round=1
    while [ "$round" -le "$ROUNDS" ]; do
        for t in $THREADS; do
            echo "bench: attributions, round $round/$ROUNDS, $t thread(s)" >&2
            run kdx-explain "$LUA" bench/explain.lua "$t"
            if [ -x "$PY" ]; then
                run PyTorch-explain env OPENBLAS_NUM_THREADS="$t" OMP_WAIT_POLICY=passive \
                    "$PY" bench/explain_torch.py "$t"
            fi
        done
        round=$((round + 1))
    done
fi

# 4. Training on Fashion-MNIST. Each (model, thread count) trains once per
# framework, kdx and PyTorch back to back so that both see the same load.
# PyTorch also gets OMP_WAIT_POLICY=passive: its OpenMP workers otherwise spin
# between parallel regions and starve OpenBLAS's own threads of the 2 cores
# (2-thread MLP epochs 4-21x slower); kdx does not use OpenMP.
if [ "$EPOCHS" -gt 0 ] && [ -n "$MODELS" ]; then
    if [ ! -f "$FMNIST/train-images-idx3-ubyte.gz" ] && [ ! -f "$FMNIST/train-images-idx3-ubyte" ]; then
        echo "bench: $FMNIST is missing (apt-get install dataset-fashion-mnist); no training benchmark" >&2
        info train_unavailable "no-dataset"
    else
        i=1
        while [ "$i" -le "$IMPORT_RUNS" ]; do
            run kdx-import "$LUA" bench/train.lua import
            if [ -x "$PY" ]; then run PyTorch-import "$PY" bench/train_torch.py import; fi
            i=$((i + 1))
        done
        for t in $THREADS; do
            for m in $MODELS; do
                echo "bench: training $m, $EPOCHS epoch(s), $t thread(s)" >&2
                run kdx-train "$LUA" bench/train.lua "$t" "$m" "$EPOCHS"
                if [ -x "$PY" ]; then
                    run PyTorch-train env OPENBLAS_NUM_THREADS="$t" OMP_WAIT_POLICY=passive \
                        "$PY" bench/train_torch.py "$t" "$m" "$EPOCHS"
                fi
            done
        done
    fi
fi
# 6. Data-parallel training on 1 and 2 processes: kdx over Open MPI
# (bench/dist_train.lua under mpirun) and PyTorch's DistributedDataParallel
# over gloo (bench/dist_train_torch.py), one thread per process, back to back.
DIST_EPOCHS=${KDX_BENCH_DIST_EPOCHS:-20}
if [ "$DIST_EPOCHS" -gt 0 ]; then
    if ! command -v mpirun >/dev/null 2>&1 || [ ! -f "$BUILD/kdx/dist_mpi.so" ]; then
        echo "bench: no mpirun or no $BUILD/kdx/dist_mpi.so (scripts/deps.sh --mpi); no distributed table" >&2
        info dist_unavailable "no-mpi"
    else
        ROOTFLAG=
        [ "$(id -u)" = 0 ] && ROOTFLAG=--allow-run-as-root
        round=1
        while [ "$round" -le "$ROUNDS" ]; do
            echo "bench: data-parallel training, round $round/$ROUNDS" >&2
            run kdx-dist "$LUA" bench/dist_train.lua --epochs "$DIST_EPOCHS" --emit 1
            run kdx-dist mpirun --oversubscribe $ROOTFLAG -np 2 -x LUA_PATH -x LUA_CPATH \
                "$LUA" bench/dist_train.lua --epochs "$DIST_EPOCHS" --emit 1
            if [ -x "$PY" ]; then
                for np in 1 2; do
                    run PyTorch-dist env OPENBLAS_NUM_THREADS=1 OMP_WAIT_POLICY=passive \
                        "$PY" bench/dist_train_torch.py "$np" "$DIST_EPOCHS"
                done
            fi
            round=$((round + 1))
        done
        info dist_epochs "$DIST_EPOCHS"
    fi
fi
mark end

info load_after "$(cut -d' ' -f1-3 /proc/loadavg)"
info other_cpu "$(share start kernels)"
info train_other_cpu "$(share kernels end)"

echo >&2
"$LUA" bench/report.lua "$RES"
