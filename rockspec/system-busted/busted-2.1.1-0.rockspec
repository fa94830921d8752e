-- Registers Debian's busted (package lua-busted, /usr/bin/busted) as the
-- "busted" rock of a LuaRocks tree, offline, so that `luarocks test` with
-- kdx's rockspec (test.type = "busted") finds its test dependency without
-- downloading busted from luarocks.org. It installs no file: kdx's rockspec
-- names its own runner (test.busted_executable = scripts/rock_test.sh),
-- which runs Debian's busted. Version 2.1.1 is Debian 12's lua-busted.
--   luarocks --lua-version=5.4 make rockspec/system-busted/busted-2.1.1-0.rockspec
-- Do not install it in a tree that should hold the real busted rock.
rockspec_format = "3.0"
package = "busted"
version = "2.1.1-0"
source = { url = "file:///usr/bin/busted" }
description = {
   summary = "Debian's busted (lua-busted), registered for luarocks test",
   license = "MIT",
}
dependencies = { "lua >= 5.1" }
build = { type = "builtin", modules = {} }
