"""`tinyasr bench`: the same utterances through every runtime, side by side, on this machine.

Rows: PyTorch eager fp32 and dynamic int8, ONNX Runtime fp32 and int8, and the TVM deployables
of the fp32, int8 and (when given) sparse+int8 models, built with the host's tuning database
when one applies; then an untuned build of the fp32 model is the TVM baseline row. Every row
runs the same computation: 16 kHz PCM -> CTC log-probs (the fbank front end included, as in
the compiled encode graph), then CTC prefix beam search with attention rescoring, the decoder
being the row's own.

Each row is measured in its own freshly spawned process, so its peak RSS (VmHWM) is that of
one interpreter holding one runtime and one model; it includes the Python interpreter and the
PyTorch library, which every row imports (decoding uses it). Artifacts (ONNX files, deployables)
are made beforehand in the parent, so no row's memory or time includes an export or a build.

Per length, every row gets the same waveform: the bundled sample utterances concatenated and
cut to exactly the samples the encoder reads for that many seconds. The rows are measured in
`rounds` rounds, every row once per round (a fresh process each time), so a slow spell of a
shared machine falls on every row rather than on one; a row's latency is the median over its
rounds of its median over `repeats` runs after one warm-up run. The encoder time is the encode
call, the pipeline time is encode plus decoding, both from the same runs.

FLOPs are counted once per length with torch.utils.flop_counter.FlopCounterMode on the fp32
PyTorch encode graph (it counts matmuls and convolutions: the multiply-adds, 2 FLOPs each, not
the elementwise ops), and every row's GFLOP/s is that count over its encoder latency: the same
work, so int8 rows are compared on the operations they replace, against the fp32 peak.

TVM rows also list their top kernels: after the timed runs, the row's child process encodes the
reference utterance, and rescores its n-best, a few more times with every VM call timed
(CompiledModelRunner.profile_encode, profile_rescoring), which shows the kernels that dominate
the encoder and the decoder after tuning. The VM's builtins (allocation, shape bookkeeping) are
left out of those lists and summed separately.

Modules, each one concept: `cpu` (the core's fp32 peak, the CPU's name), `workload` (the
waveforms, FLOPs and reference n-best every row shares), `artifacts` (the peers' int8 variants,
a deployable's weight bytes), `rows` (RowSpec, RowResult; `prepare_rows` makes the artifacts),
`engines` (one Engine per runtime), `harness` (one row measured in a fresh process), `results`
(a measurement as a RowResult, speedups over the fastest peer), `report` (bench.json, bench.md,
bench.png) and `run` (BenchSettings, the rounds, `run_bench`; `write_bench`, which `tinyasr
bench` calls, checks the inputs first). Beside the bench, `realspeech` scores WER and CER on the
real-speech set (`python -m tinyasr.schedules.bench.realspeech`).
"""
