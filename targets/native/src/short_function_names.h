// Included first into every file of tinyasr-run-static (CMakeLists.txt): tvm-ffi records the
// function each error was raised in by its full signature (__PRETTY_FUNCTION__, template
// arguments spelled out), a string kept in the program for every throw site. Those strings were
// 145 KB of the static transcriber, and the code that loads them more; the short name
// (__func__) keeps the file and line of each error and costs a few bytes. The shared runtime
// (libtvm_runtime, libtvm_ffi) keeps tvm-ffi's default.
#pragma once
#include <tvm/ffi/base_details.h>  // defines TVM_FFI_FUNC_SIG once (include guard)

#undef TVM_FFI_FUNC_SIG
#define TVM_FFI_FUNC_SIG __func__
