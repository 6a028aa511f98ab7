# The house warning set (STYLE.md); -Werror when CONCUR_WERROR is on.
set(CONCUR_WARNINGS
  -Wall -Wextra -Wpedantic -Wshadow -Wstrict-prototypes -Wmissing-prototypes
  -Wold-style-definition -Wcast-qual -Wpointer-arith -Wformat=2 -Wundef -Wvla
  -Wnull-dereference -Wimplicit-fallthrough
  -Werror=implicit-function-declaration)

function(concur_apply_warnings target)
  target_compile_options(${target} PRIVATE ${CONCUR_WARNINGS})
  if(CONCUR_WERROR)
    target_compile_options(${target} PRIVATE -Werror)
  endif()
endfunction()
