// The files of a deployable linked into the transcriber itself (`tinyasr compile --static`):
// compile/static_transcriber.py generates a source defining `tinyasr_embedded_files`, a table of
// them ended by an entry whose name is null. tinyasr-run declares the table weak: where no such
// source is linked in, its address is null and the program reads a deployable directory
// (deployable_io.h DeployableSource).
//
// Dependency-free, as the generated source includes it and nothing else.

#pragma once

#include <cstdint>

namespace tinyasr {

struct EmbeddedFile {
  const char* name;  // the deployable's file name: "manifest.json", "weights.bin", ...
  const char* data;
  uint64_t size;
};

}  // namespace tinyasr
