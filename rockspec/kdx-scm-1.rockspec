rockspec_format = "3.0"
package = "kdx"
version = "scm-1"
source = {
   url = "git+https://example.invalid/kdx.git",
}
description = {
   summary = "Knowledge distillation fused with model explanation: a C engine with a Lua 5.4 front end",
   detailed = [[
      kdx trains a teacher, distills it into a smaller or interpretable student,
      explains both, and measures whether the student keeps the teacher's
      accuracy and its reasons. The tensor engine is C (OpenBLAS); the
      experiment language is Lua.
   ]],
   license = "MIT",
}
dependencies = {
   "lua >= 5.4, < 5.5",
}
-- A missing library or header stops the build with LuaRocks' own message
-- ("Could not find header file for STB ... You may have to install STB in
-- your system and/or pass STB_DIR or STB_INCDIR to the luarocks command").
-- Debian: libopenblas-dev, libstb-dev, zlib1g-dev (scripts/deps.sh).
-- OpenBLAS is checked by its library only: Debian puts cblas.h in
-- /usr/include/<multiarch>/, where LuaRocks does not look for headers (and
-- the compiler does); give OPENBLAS_INCDIR to the build where it is elsewhere.
external_dependencies = {
   OPENBLAS = { library = "openblas" },
   STB = { header = "stb/stb_image.h", library = "stb" },
   ZLIB = { header = "zlib.h", library = "z" },
}
build = {
   type = "make",
   -- The project's own Makefile builds the engine and the module; warnings
   -- are not fatal here, since the user's compiler may differ from CI's.
   build_variables = {
      CFLAGS = "$(CFLAGS)",
      LUA_INC = "-I$(LUA_INCDIR)",
      DEPS_INC = "-I$(OPENBLAS_INCDIR) -I$(STB_INCDIR) -I$(ZLIB_INCDIR)",
      DEPS_LIB = "-L$(OPENBLAS_LIBDIR) -L$(STB_LIBDIR) -L$(ZLIB_LIBDIR)",
      WERROR = "",
   },
   install_target = "install-rock",
   install_variables = {
      INST_LIBDIR = "$(LIBDIR)",
      INST_LUADIR = "$(LUADIR)",
      WERROR = "",
   },
   install = {
      bin = { kdx = "bin/kdx" },
   },
}
-- `luarocks test`: the specs, as `make test` runs them (scripts/rock_test.sh
-- puts this tree's lua/ and build/ on the paths). LuaRocks' busted driver
-- first needs the busted *rock*; offline, with Debian's lua-busted (not a
-- rock), use `luarocks --lua-version=5.4 test --test-type command`, which
-- runs the same script (docs/packaging.md).
test = {
   type = "busted",
   busted_executable = "scripts/rock_test.sh",
   command = "sh scripts/rock_test.sh",
}
