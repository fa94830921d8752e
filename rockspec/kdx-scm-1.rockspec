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
external_dependencies = {
   OPENBLAS = { library = "openblas" },
   ZLIB = { library = "z" },
   STB = { library = "stb" },
}
build = {
   type = "make",
   -- The project's own Makefile builds the engine and the module; warnings
   -- are not fatal here, since the user's compiler may differ from CI's.
   build_variables = {
      CFLAGS = "$(CFLAGS)",
      LUA_INC = "-I$(LUA_INCDIR)",
      WERROR = "",
   },
   install_target = "install-rock",
   install_variables = {
      INST_LIBDIR = "$(LIBDIR)",
      INST_LUADIR = "$(LUADIR)",
      WERROR = "",
   },
}
test = {
   type = "busted",
}
