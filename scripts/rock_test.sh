#!/bin/sh
# `luarocks test` (see the rockspec): runs the specs against this tree's lua/
# and build/, as `make test` does. Without arguments: `make test` (C tests
# and every spec). With arguments (spec files or busted options, as LuaRocks'
# busted driver passes them): builds, then busted with those arguments.
set -eu
cd "$(dirname "$0")/.."
if [ "$#" -eq 0 ]; then
    exec make --no-print-directory test
fi
make --no-print-directory all >&2
LUA_PATH="$PWD/lua/?.lua;$PWD/lua/?/init.lua;$PWD/spec/?.lua;;" \
LUA_CPATH="$PWD/build/?.so;;" \
    exec lua5.4 /usr/bin/busted "$@"
