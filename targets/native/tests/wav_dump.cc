// wav_dump WAV: the samples tinyasr-run reads from WAV (wav.h), as raw float32 on stdout, or
// load_wav's one-line error on stderr and exit code 2. tests/test_native_twins.py compares it
// with tinyasr.model.data.datadir.load_wav over odd wavs.

#include <cstdio>
#include <iostream>

#include "wav.h"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: wav_dump WAV" << std::endl;
    return 1;
  }
  try {
    std::vector<float> samples = tinyasr::ReadWav(argv[1], 16000);
    std::fwrite(samples.data(), sizeof(float), samples.size(), stdout);
    return 0;
  } catch (const tinyasr::InputError& error) {
    std::cerr << "wav_dump: error: " << error.what() << std::endl;
    return 2;
  }
}
