# Build against an older Debian's C and C++ runtime, so the board runtime runs on the boards'
# older images: TINYASR_SYSROOT names the tree targets/setup_sysroot.sh unpacks (Debian 11's
# cross packages: glibc 2.31, libstdc++ 10), while this machine's cross g++ stays the compiler.
# Included by the toolchain files after they set CMAKE_SYSTEM_PROCESSOR and CMAKE_CXX_COMPILER.
#
# Debian's cross g++ finds its headers and libraries relative to its own install, not under
# --sysroot, so the system paths are replaced here one by one: the old libstdc++'s headers and
# glibc's headers instead of the compiler's (-nostdinc; the compiler's own builtin headers stay,
# they belong to the compiler), the old start files, libc, libstdc++ and libgcc_s at link time.
# What the programs then require is at most what Debian 11 ships (GLIBC_2.31, GLIBCXX_3.4.28);
# newer images run them too.
set(TINYASR_SYSROOT "" CACHE PATH "an older C/C++ runtime to build against (targets/setup_sysroot.sh)")
list(APPEND CMAKE_TRY_COMPILE_PLATFORM_VARIABLES TINYASR_SYSROOT)
if(NOT TINYASR_SYSROOT)
  return()
endif()

set(_triple ${CMAKE_SYSTEM_PROCESSOR}-linux-gnu)
set(_usr ${TINYASR_SYSROOT}/usr/${_triple})
file(GLOB _cxx_headers LIST_DIRECTORIES true ${_usr}/include/c++/*)
file(GLOB _gcc_libs LIST_DIRECTORIES true ${TINYASR_SYSROOT}/usr/lib/gcc-cross/${_triple}/*)
list(LENGTH _cxx_headers _n_headers)
list(LENGTH _gcc_libs _n_libs)
if(NOT _n_headers EQUAL 1 OR NOT _n_libs EQUAL 1 OR NOT EXISTS ${_usr}/lib/libc.so)
  message(FATAL_ERROR "TINYASR_SYSROOT (${TINYASR_SYSROOT}) holds no single ${_triple} C/C++ "
                      "runtime; run targets/setup_sysroot.sh")
endif()
execute_process(COMMAND ${CMAKE_CXX_COMPILER} -print-file-name=include
                OUTPUT_VARIABLE _builtin_headers OUTPUT_STRIP_TRAILING_WHITESPACE
                COMMAND_ERROR_IS_FATAL ANY)

set(CMAKE_FIND_ROOT_PATH ${_usr})
string(JOIN " " CMAKE_CXX_FLAGS_INIT -nostdinc
       -isystem ${_cxx_headers} -isystem ${_cxx_headers}/${_triple}
       -isystem ${_cxx_headers}/backward -isystem ${_builtin_headers} -isystem ${_usr}/include)
# -B: the start files (crt1.o, crtbegin.o) are the old ones; --sysroot: libc.so's linker script
# names its libraries by absolute paths, which ld then looks up in the sysroot.
string(JOIN " " _link --sysroot=${TINYASR_SYSROOT} -B${_gcc_libs} -B${_usr}/lib
       -L${_gcc_libs} -L${_usr}/lib -Wl,-rpath-link,${_usr}/lib)
set(CMAKE_EXE_LINKER_FLAGS_INIT ${_link})
set(CMAKE_SHARED_LINKER_FLAGS_INIT ${_link})
set(CMAKE_MODULE_LINKER_FLAGS_INIT ${_link})
