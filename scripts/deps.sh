#!/bin/sh
# Installs the Debian packages kdx needs, when any is missing. Idempotent and
# non-interactive; runs 'apt-get update' at most once. Not root: prints the
# exact command instead.
#   scripts/deps.sh          build dependencies (enough for make and make demo)
#   scripts/deps.sh --test   also what the specs use besides the data: chromium
#                            (spec/report_spec.lua renders a report headless)
#   scripts/deps.sh --data   also Fashion-MNIST (dataset-fashion-mnist) and the word lists of
#                            kdx.data.words (wamerican wngerman wfrench wspanish witalian)
#   scripts/deps.sh --bench  also PyTorch for the side-by-side benchmarks
#   scripts/deps.sh --fuzz   also clang and its libFuzzer runtime (make fuzz)
#   scripts/deps.sh --docs   also LDoc (make docs)
#   scripts/deps.sh --mpi    also Open MPI (mpicc, mpirun): kdx.dist over MPI, docs/distributed.md
set -eu

PKGS="lua5.4 liblua5.4-dev libopenblas-dev libstb-dev zlib1g-dev lua-busted luarocks pkg-config gcc make"
for arg in "$@"; do
    case "$arg" in
        --data) PKGS="$PKGS dataset-fashion-mnist wamerican wngerman wfrench wspanish witalian" ;;
        --test) PKGS="$PKGS chromium" ;;
        --bench) PKGS="$PKGS python3-torch" ;;
        --fuzz) PKGS="$PKGS clang libclang-rt-14-dev" ;;
        --docs) PKGS="$PKGS lua-ldoc" ;;
        --mpi) PKGS="$PKGS libopenmpi-dev openmpi-bin" ;;
        --fixtures) PKGS="$PKGS python3-torch python3-numpy python3-sklearn python3-pil" ;;
        *) echo "deps.sh: unknown option $arg" >&2; exit 2 ;;
    esac
done

missing=""
for p in $PKGS; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
    echo "kdx needs these Debian packages:$missing" >&2
    echo "install them with:  sudo apt-get update && sudo apt-get install -y$missing" >&2
    exit 1
fi

echo "deps.sh: installing$missing" >&2
export DEBIAN_FRONTEND=noninteractive
# Update the package lists only when an install fails for lack of them.
if ! apt-get install -y -q --no-install-recommends $missing >/dev/null 2>&1; then
    apt-get update -q >/dev/null
    apt-get install -y -q --no-install-recommends $missing >/dev/null
fi
