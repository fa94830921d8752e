#!/bin/sh
# Runs the API fuzzer (spec/fuzz/api_fuzz.lua) against the ASan + UBSan build
# (build-san/, made by `make SAN=1`), with the ASan runtime preloaded into
# lua5.4 as scripts/run_tests.sh does. Ends with the fuzzer's line
# "api_fuzz: seed S, N calls ... 0 crashes"; exits non-zero on a crash, a
# sanitizer report or a leak, after printing the call and how to replay it.
#   scripts/api_fuzz.sh [CALLS [SEED]]    defaults: 20000 calls, a random seed
set -u
cd "$(dirname "$0")/.." || exit 1
calls=${1:-20000}
seed=${2:-}
if [ ! -f build-san/kdx/core.so ]; then
    echo "api_fuzz: build-san/kdx/core.so is missing; run make SAN=1 first" >&2
    exit 1
fi
export LUA_PATH="$PWD/lua/?.lua;$PWD/lua/?/init.lua;$PWD/spec/?.lua;;"
export LUA_CPATH="$PWD/build-san/?.so;;"
# allocator_may_return_null: the fuzzer asks for absurd sizes on purpose and
# expects a clean Lua error; api_fuzz.lua adds max_allocation_size_mb.
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=1:halt_on_error=1}"
export LSAN_OPTIONS="suppressions=$PWD/scripts/lsan.supp:print_suppressions=0"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
LD_PRELOAD="$(gcc -print-file-name=libasan.so)" exec lua5.4 spec/fuzz/api_fuzz.lua --calls "$calls" ${seed:+--seed "$seed"}
