# CONCUR_SANITIZE=address: ASan + UBSan (UB is fatal); =thread: TSan alone.
if(CONCUR_SANITIZE STREQUAL "address")
  set(CONCUR_SANITIZER_FLAGS -fsanitize=address,undefined
      -fno-sanitize-recover=all -fno-omit-frame-pointer)
elseif(CONCUR_SANITIZE STREQUAL "thread")
  set(CONCUR_SANITIZER_FLAGS -fsanitize=thread -fno-omit-frame-pointer)
elseif(NOT CONCUR_SANITIZE STREQUAL "")
  message(FATAL_ERROR "CONCUR_SANITIZE must be empty, address or thread")
endif()

function(concur_apply_sanitizers target)
  if(CONCUR_SANITIZER_FLAGS)
    target_compile_options(${target} PRIVATE ${CONCUR_SANITIZER_FLAGS})
    target_link_options(${target} PUBLIC ${CONCUR_SANITIZER_FLAGS})
  endif()
endfunction()
