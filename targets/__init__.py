"""tinyasr.targets: named boards, their LLVM targets, cross compilers and emulators."""
