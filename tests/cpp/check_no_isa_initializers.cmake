# Fails when an object compiled for an instruction set beyond the baseline
# (the *_avx2*, *_vnni*, *_avx512*, *_amx* sources, built with -mavx2 ... -mamx-*)
# has a static initializer. Such an initializer runs at program start on every
# CPU, before any dispatch, and uses the file's instructions: a namespace-scope
# `const __m512i k = _mm512_setr_epi32(...)` made every binary die with SIGILL
# on AVX2-only machines. A CPU that has every instruction set cannot catch it
# by running tests, so this reads the symbol tables instead.
#   cmake -DNM=<nm> -DOBJECTS=<a;b;...> -P check_no_isa_initializers.cmake
set(checked 0)
foreach(object IN LISTS OBJECTS)
  get_filename_component(name "${object}" NAME)
  if(NOT name MATCHES "_(avx2|avx512|vnni|amx)")
    continue()
  endif()
  execute_process(COMMAND "${NM}" "${object}" OUTPUT_VARIABLE symbols RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${NM} failed on ${object}")
  endif()
  if(symbols MATCHES "_GLOBAL__sub_I_")
    message(FATAL_ERROR "${name} has a static initializer: it would run ${name}'s instruction set at "
                        "program start on CPUs without it. Build vector constants inside functions.")
  endif()
  math(EXPR checked "${checked} + 1")
endforeach()
if(checked LESS 7)
  message(FATAL_ERROR "only ${checked} instruction-set objects found (expected at least 7): the name filter is stale")
endif()
message(STATUS "${checked} instruction-set objects, no static initializers")
