"""tinyasr's compiler: a trained AsrModel -> one VM executable for a board plus its weights.

Phases, in order (`--dump-ir DIR` writes the module after each as DIR/NN-phase.py):

    import     torch.export of the encode and decode graphs (front end included; Whisper's
               are compile/whisper_graphs.py's log_mel, encode and step), Relax import
               with every weight kept as a function input (nothing bound into the code), the
               dynamic sizes named after what they count (frames, tree nodes), gathers made
               to clip their (caller's) indices
    layout     convolutions channels-last (conv2d NHWC / OHWI, the FSMN's conv1d NWC / WIO, TVM's
               ConvertLayout), the permutes it leaves around ops without a layout rule sunk
               and cancelled
    sparse     linear layers on BSR weights -> BSR kernels taking the BSR arrays as weights; a
               layer too dense for sparse to be faster stays dense (bsr_matmul.MAX_DENSITY)
    quantize   matmuls on int8 weights -> int8 x int8 -> int32 kernels of the board's dot ISA
               (VNNI, sdot, RVV), their inputs rounded to int8 per row by one kernel each;
               int8 convs -> im2col + the same kernels; a no-op for fp32
    dense      the decoder FSMN's gather of each tree node's window and its depthwise conv ->
               one kernel reading through the index; an fp32 conv only rounded to int8 at one
               scale -> two kernels computing it twice instead of storing it; the fbank's
               cutting and windowing of frames, two-stage DFT and power -> one kernel, its
               floored log and CMVN -> another; a
               matmul on a weight that is also gathered from (Whisper's tied embedding) -> a
               kernel reading it as stored (with VNNI, interleaved for the gather and the
               logits alike); other fp32 matmuls on weights (the fbank's mel,
               fp32 linear layers) -> register-tiled fp32 kernels of the board's vector width;
               fp32 convs (2-d, and 1-d as Whisper's) -> im2col + the same kernels; multi-head
               attention (scores, mask, softmax, context) -> one fused kernel; a decoder
               step's attention over its cache, masked past each query's position -> one
               kernel reading only the slots written; other matmuls of two activations -> a
               batched kernel;
               then every weight matmul kernel's bias add and ReLU move into its store
    weights    weight-only work (transposes, int8 packing, densifying the BSR weights of dense
               fallback layers) lifted out and run once, here: the result is the weights
               file, each distinct (shared) weight stored once; the weights made of tables a
               kernel computes (the fbank's) are not stored: `<function>_tables` computes
               them when the deployable is loaded (passes/load_time_tables.py)
    legalize   Relax ops -> TIR (a softmax left as fast_softmax); elementwise epilogues fused into
               their producers
    schedule   TIR functions take their tuned schedules from the device's tuning database
               (`tinyasr tune`), symbolic loops padded to the tuned tiles where they do not
               divide (passes/tile_padding.py); the others keep TVM's default schedule, with
               each fused intermediate computed inside its consumer
               (passes/inline_intermediates.py)
    lower      dataflow lowering, static memory planning (each bounded size at its bound, so
               storage is planned once and shared: passes/bound_shape_vars.py), VM shape
               lowering
    build      TVM's TIR lowering, the kernels' argument checks dropped (only the VM calls
               them, with what the compiler planned; passes/kernel_arg_checks.py), LLVM code
               generation for the board's target

Weights stay VM function inputs all the way: binding them as constants before fusion would copy
a shared block's weights into every fused function that uses them (measured: 2.5x).
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import torch
import tvm
from tvm import relax
from tvm.relax.frontend.torch import from_exported_program
from tvm.target import Target

from tinyasr.compile.graphs import SHAPE_BOUNDS, SHAPE_VARIABLES, export_graphs
from tinyasr.compile.kernels.fbank_tables import FBANK_TABLES
from tinyasr.compile.kernels.tunable import KernelChoices
from tinyasr.compile.passes.apply_tuned_schedules import ApplyTunedSchedules
from tinyasr.compile.passes.batched_matmul import BatchedMatmul
from tinyasr.compile.passes.bound_shape_vars import BoundShapeVars
from tinyasr.compile.passes.bsr_matmul import BsrMatmul, import_bsr_to_dense
from tinyasr.compile.passes.cache_write import CacheWrite
from tinyasr.compile.passes.cached_attention import CachedAttention
from tinyasr.compile.passes.clip_take_indices import ClipTakeIndices
from tinyasr.compile.passes.conv_rounding import ConvRounding
from tinyasr.compile.passes.expose_shape_vars import ExposeShapeVars
from tinyasr.compile.passes.fp32_conv2d import Fp32Conv2d
from tinyasr.compile.passes.fp32_matmul import Fp32Matmul
from tinyasr.compile.passes.fuse_epilogues import FuseEpilogues
from tinyasr.compile.passes.fused_attention import FusedAttention
from tinyasr.compile.passes.fused_power_spectrum import FusedPowerSpectrum
from tinyasr.compile.passes.gelu_erf import GeluAsErf
from tinyasr.compile.passes.identity_broadcast import IdentityBroadcast
from tinyasr.compile.passes.inline_intermediates import InlineIntermediates
from tinyasr.compile.passes.int8_conv1d import Int8Conv1d
from tinyasr.compile.passes.int8_conv2d import Int8Conv2d
from tinyasr.compile.passes.int8_matmul import Int8Matmul
from tinyasr.compile.passes.kernel_arg_checks import TIR_PIPELINE
from tinyasr.compile.passes.lift_weight_transforms import TRANSFORM_SUFFIX, LiftWeightTransforms
from tinyasr.compile.passes.load_time_tables import (
    OUTPUTS_ATTR,
    TABLES_SUFFIX,
    FoldConstantOutsideTables,
    LoadTimeTables,
)
from tinyasr.compile.passes.log_cmvn import LogCmvn
from tinyasr.compile.passes.name_shape_vars import name_shape_vars
from tinyasr.compile.passes.rewriting import provable_for_sizes
from tinyasr.compile.passes.sink_permutes import SinkPermutes
from tinyasr.compile.passes.split_heads import SplitHeads
from tinyasr.compile.passes.tied_matmul import TiedMatmul
from tinyasr.compile.passes.tree_fsmn import TreeFsmn
from tinyasr.compile.schedule_database import AppliedDatabase
from tinyasr.model.common import atomic
from tinyasr.model.common.progress import progress
from tinyasr.model.network.san_m import AsrModel
from tinyasr.targets.boards import host_target


@dataclass
class Signature:
    """How to call one VM function: its runtime inputs, then the weights (file keys) in order;
    `tables`: the VM function that computes some of those weights when the deployable is
    loaded (passes/load_time_tables.py) and their keys, in its outputs' order."""
    inputs: list[str]
    weights: list[str]
    tables: tuple[str, list[str]] | None = None


@dataclass
class ImportedModel:
    """The target-independent part: the imported module, each function's raw weights and the
    largest value of each symbolic size the deployable's callers pass (passes/bound_shape_vars)."""
    mod: tvm.IRModule
    raw_weights: dict[str, list[tvm.runtime.Tensor]]
    bounds: dict[str, int] = field(default_factory=dict)
    # long unmasked attentions on int8 dot products (passes/fused_attention.py): for models
    # compiled with int8 activations whose accuracy was measured with it (Whisper --int8)
    int8_attention: bool = False


@dataclass
class ScheduleReport:
    """Which TIR functions took a tuned schedule from the database, which records failed to
    replay (those functions keep TVM's default schedule), and which hand-written kernels were
    built with tuned parameters (kernel -> parameters)."""
    database: AppliedDatabase
    applied: list[str]
    failed: list[str]
    kernels: dict[str, dict[str, int]]

    @property
    def amx_tiles(self) -> bool:
        """Whether a kernel was built as an AMX tile kernel (compile/kernels/int8_amx.py)."""
        return any(params.get("amx") for params in self.kernels.values())


@dataclass
class BuiltModel:
    executable: tvm.runtime.Executable   # what tvm.compile returns (a VMExecutable here)
    weights: dict[str, tvm.runtime.Tensor]   # key -> tensor (all, the tables' included)
    signatures: dict[str, Signature]         # VM function name -> how to call it
    schedules: ScheduleReport | None         # None: built untuned
    # the same code as TVM's system library (its functions register themselves when the program
    # they are linked into starts: ffi.SystemLib), for a static transcriber; None unless asked
    system_library: tvm.runtime.Executable | None = None


class IRDumper:
    """Writes the module after each phase as DIR/NN-phase.py; does nothing without a DIR.

    A compile killed midway leaves no dump that looks whole: the phases are written into a
    hidden staging dir inside DIR (named with this pid; one that a killed compile left is
    deleted by the next dump into DIR), and `publish` (build() calls it once the last phase is
    dumped, or on an error with the phases that ran) deletes the previous dump's phase files,
    then moves the new ones up. Other files in DIR are left alone."""

    def __init__(self, directory: Path | None):
        self.directory, self.count = directory, 0
        self._staging: Path | None = None
        self._started = time.monotonic()   # for the progress line each phase prints
        if directory is not None:
            Path(directory).mkdir(parents=True, exist_ok=True)

    def __call__(self, phase: str, mod: tvm.IRModule) -> None:
        self.count += 1
        progress(f"compile: {phase} done ({time.monotonic() - self._started:.1f} s)")
        if self.directory is not None:
            path = self._staging_dir() / f"{self.count:02d}-{phase}.py"
            path.write_text(mod.script(show_meta=False))

    def _staging_dir(self) -> Path:
        if self._staging is None:
            assert self.directory is not None
            parent = Path(self.directory)
            self._staging = Path(tempfile.mkdtemp(
                prefix=atomic.scratch_prefix(DUMP_STAGING_PREFIX, parent), dir=parent))
            atexit.register(shutil.rmtree, self._staging, ignore_errors=True)  # unpublished
        return self._staging

    def publish(self) -> None:
        """The phases dumped so far replace the previous dump in DIR."""
        staging, self._staging = self._staging, None
        if staging is None or self.directory is None:
            return
        directory = Path(self.directory)
        for old in directory.iterdir():
            if PHASE_FILE.fullmatch(old.name) and old.is_file():
                old.unlink()
        for new in sorted(staging.iterdir()):
            os.replace(new, directory / new.name)
        staging.rmdir()


DUMP_STAGING_PREFIX = ".tinyasr-ir-"
PHASE_FILE = re.compile(r"\d\d-[a-z_]+\.py")   # what IRDumper writes


def _amax(node: torch.fx.Node, importer: Any) -> relax.Var:
    """torch.amax (the reference's int8 input rounding uses it), which TVM's importer lacks."""
    x, dims, keepdim = [*importer.retrieve_args(node), [], False][:3]
    return importer.block_builder.emit(relax.op.max(x, dims or None, keepdims=keepdim))


def _slice(node: torch.fx.Node, importer: Any) -> relax.Var:
    """A slice whose bounds are provably inside the tensor (the fbank's frame cutting) is
    imported as in-bounds: TVM's default clamping of symbolic bounds legalizes to an
    if_then_else inside shapes that the Relax normalizer rejects. Other slices import as TVM
    does."""
    x, axis, begin, end, *rest = [*importer.retrieve_args(node), None, None, None][:5]
    begin, step = begin or 0, rest[0] or 1
    shape = importer.shape_of(x)
    axis = axis if axis >= 0 else axis + len(shape)
    in_bounds = (isinstance(begin, int) and begin >= 0 and step == 1
                 and tvm.ir.is_prim_expr(end) and not isinstance(end, tvm.tirx.IntImm)
                 and provable_for_sizes(end <= shape[axis], shape[axis]))
    if not in_bounds:
        return importer._slice(node)
    return importer.block_builder.emit(relax.op.strided_slice(  # lists: converted by the FFI
        x, [axis], [begin], [end], [step], assume_inbound=True))  # pyright: ignore[reportArgumentType]


def _index_copy(node: torch.fx.Node, importer: Any) -> relax.Var:
    """data.index_copy(axis, index (t,), source): source's slices written at `index` along
    `axis` (Whisper's KV-cache write), as scatter_elements with the index broadcast to the
    source's shape; TVM's importer turns index_copy into an index_put it cannot type."""
    data, axis, index, source = importer.retrieve_args(node)
    ndim = len(importer.shape_of(data))
    axis = axis if axis >= 0 else axis + ndim
    shape = [1] * ndim
    shape[axis] = importer.shape_of(index)[0]
    reshaped = relax.op.reshape(index, shape)  # pyright: ignore[reportArgumentType]  # list: FFI
    indices = relax.op.broadcast_to(reshaped, importer.shape_of(source))
    return importer.block_builder.emit(relax.op.scatter_elements(data, indices, source, axis))


TORCH_OPS = {"amax.default": _amax, "bsr_to_dense.default": import_bsr_to_dense,
             "slice.Tensor": _slice, "index_copy.default": _index_copy}


KEPT_OPS = (torch.ops.aten.index_copy.default,)   # imported by TORCH_OPS, not decomposed


def import_program(program: torch.export.ExportedProgram) -> tvm.IRModule:
    """One exported graph as a Relax module ("main"), parameters kept as inputs, with
    tinyasr's converters (TORCH_OPS) for what TVM's importer lacks or gets wrong; torch's
    core-ATen decompositions run first, but for KEPT_OPS (their decomposition does not
    import)."""
    table = torch.export.default_decompositions()
    for op in KEPT_OPS:
        table.pop(op, None)
    with warnings.catch_warnings():  # torch's own decomposition code trips its deprecation
        warnings.filterwarnings("ignore", ".*LeafSpec.*", FutureWarning)
        return from_exported_program(program.run_decompositions(table),
                                     keep_params_as_input=True, custom_convert_map=TORCH_OPS,
                                     run_ep_decomposition=False)


def import_graphs(model: AsrModel) -> tuple[tvm.IRModule, dict[str, list[tvm.runtime.Tensor]]]:
    """Relax module with functions "encode" and "decode", and each function's raw weights."""
    return import_exported(export_graphs(model), SHAPE_VARIABLES)


def import_exported(programs: dict[str, torch.export.ExportedProgram],
                    shape_variables: dict[str, dict]
                    ) -> tuple[tvm.IRModule, dict[str, list[tvm.runtime.Tensor]]]:
    """One Relax function per exported program (named by its key), weights kept as inputs, out
    of bounds gathers clipped, and each function's symbolic sizes named by `shape_variables`
    (function -> (input, axis) -> name); with each function's raw weights."""
    functions, weights = {}, {}
    for name, program in programs.items():
        imported, params = relax.frontend.detach_params(import_program(program))
        functions[name] = imported["main"].with_attr("global_symbol", name)
        weights[name] = params["main"]
    mod = tvm.transform.Sequential([ExposeShapeVars(), ClipTakeIndices()])(
        tvm.IRModule(functions))
    return tvm.IRModule({gvar: name_shape_vars(function, shape_variables[gvar.name_hint])
                         for gvar, function in mod.functions.items()}), weights


def weight_keys(function: str, names: list[str]) -> list[str]:
    """The weights file's key of each weight parameter: "function/name", a repeated name
    (two lifted transforms both called lv3) numbered apart, so no weight overwrites another."""
    keys: list[str] = []
    for name in names:
        key, number = f"{function}/{name}", 0
        while key in keys:
            number += 1
            key = f"{function}/{name}_{number}"
        keys.append(key)
    return keys


def run_weight_transforms(mod: tvm.IRModule, raw_weights: dict[str, list[tvm.runtime.Tensor]]
                          ) -> tuple[tvm.IRModule, dict[str, tvm.runtime.Tensor],
                                     dict[str, Signature]]:
    """Runs the lifted `*_transform_params` on the host; returns the module without them, the
    transformed weights by key ("function/param") and each function's signature (with the
    keys its `*_tables` function computes at load, whose values here are only a reference)."""
    transforms = tvm.IRModule({name + TRANSFORM_SUFFIX: mod[name + TRANSFORM_SUFFIX]
                               for name in raw_weights})
    # tvm.cpu() is a tvm_ffi Device, TVM declares tvm.runtime's Device
    vm = relax.VirtualMachine(tvm.compile(transforms, Target(host_target())),
                              tvm.cpu())  # pyright: ignore[reportArgumentType]
    # IRModule.functions and .attrs are reflected from C++, not declared in Python
    functions = mod.functions.items()  # pyright: ignore[reportAttributeAccessIssue]
    by_name = {gvar.name_hint: function for gvar, function in functions}
    weights, signatures = {}, {}
    for name, raw in raw_weights.items():
        function = mod[name]
        num_input = int(function.attrs["num_input"])
        keys = weight_keys(name, [param.name for param in function.params[num_input:]])
        weights.update(zip(keys, vm[name + TRANSFORM_SUFFIX](raw), strict=True))
        tables = by_name.get(name + TABLES_SUFFIX)
        signatures[name] = Signature(
            [param.name for param in function.params[:num_input]], keys,
            None if tables is None else
            (name + TABLES_SUFFIX, [keys[int(index)] for index in tables.attrs[OUTPUTS_ATTR]]))
    runtime = tvm.IRModule({gvar: function for gvar, function in functions
                            if not gvar.name_hint.endswith(TRANSFORM_SUFFIX)},
                           attrs=mod.attrs)  # pyright: ignore[reportAttributeAccessIssue]
    return runtime, weights, signatures


LEGALIZE_PASSES = [
    GeluAsErf(),   # gelu's erf as an op of its own, for FastMathTransform
    # softmax -> fast_softmax: exp as a polynomial LLVM can vectorize instead of a libm call per
    # element (the attention softmax 2.2x faster untuned; probabilities within 1e-6 of float64);
    # erf -> fast_erf likewise
    relax.transform.FastMathTransform(),
    relax.transform.LegalizeOps(),
    relax.transform.AnnotateTIROpPattern(),
    FoldConstantOutsideTables(),
    relax.transform.FuseOps(),
    relax.transform.FuseTIR(),
]


def lower_passes(bounds: dict[str, int]) -> list[tvm.transform.Pass]:
    """Phase lower; `bounds` (size name -> largest value) let the memory planner size every
    intermediate for the longest input and share storage between all of them."""
    return [
        relax.transform.RewriteDataflowReshape(),
        relax.transform.ToNonDataflow(),
        relax.transform.RemovePurityChecking(),
        cast(tvm.transform.Pass, BoundShapeVars(bounds)),   # a module_pass instance
        *PLANNING_PASSES,
    ]


PLANNING_PASSES = [
    relax.transform.CallTIRRewrite(),
    relax.transform.StaticPlanBlockMemory(),
    relax.transform.LowerAllocTensor(),
    relax.transform.KillAfterLastUse(),
    relax.transform.LowerRuntimeBuiltin(),
    relax.transform.ComputePrimValue(),
    relax.transform.VMShapeLower(),
    relax.transform.AttachGlobalSymbol(),
]


def import_model(model: AsrModel, dump: IRDumper) -> ImportedModel:
    """Phase import: the same for every board."""
    mod, raw_weights = import_graphs(model)
    dump("import", mod)
    return ImportedModel(mod, raw_weights, dict(SHAPE_BOUNDS))


def legalize(imported: ImportedModel, target: Target, dump: IRDumper,
             choices: KernelChoices | None = None
             ) -> tuple[tvm.IRModule, dict[str, tvm.runtime.Tensor], dict[str, Signature]]:
    """Phases layout to legalize: the TIR-level module (what MetaSchedule tunes), the
    weights and the signatures; the tunable kernels built with `choices` (which records
    them; default parameters without it)."""
    with target:
        mod = tvm.transform.Sequential([
            relax.transform.ConvertLayout({"relax.nn.conv2d": ["NHWC", "OHWI"],
                                           "relax.nn.conv1d": ["NWC", "WIO"]}),
            SinkPermutes(), IdentityBroadcast(),
            relax.transform.DeadCodeElimination()])(imported.mod)
        dump("layout", mod)

        # module_pass classes: TVM's decorator makes their instances callable passes
        mod = BsrMatmul(target, choices)(mod)  # pyright: ignore[reportCallIssue]
        dump("sparse", mod)

        mod = tvm.transform.Sequential([Int8Matmul(target, choices), Int8Conv2d(target, choices),
                                        Int8Conv1d(target, choices),
                                        relax.transform.DeadCodeElimination()])(mod)
        dump("quantize", mod)

        mod = tvm.transform.Sequential([
            TreeFsmn(target, choices), ConvRounding(target, choices),
            Fp32Conv2d(target, choices), FusedPowerSpectrum(target, choices),
            LogCmvn(target, choices),
            TiedMatmul(target, choices), Fp32Matmul(target, choices),
            FusedAttention(target, choices, imported.int8_attention),
            CachedAttention(target, choices), BatchedMatmul(target, choices),
            SplitHeads(), FuseEpilogues(),
            CacheWrite(target, choices),
            relax.transform.DeadCodeElimination()])(mod)
        dump("dense", mod)

        mod = LiftWeightTransforms()(mod)
        mod = LoadTimeTables(FBANK_TABLES)(mod)  # pyright: ignore[reportCallIssue]  # a module_pass
        dump("weights", mod)
        mod, weights, signatures = run_weight_transforms(mod, imported.raw_weights)

        mod = tvm.transform.Sequential(LEGALIZE_PASSES)(mod)
        dump("legalize", mod)
    return mod, weights, signatures


def apply_schedules(mod: tvm.IRModule, database: AppliedDatabase | None, target: Target,
                    dump: IRDumper, kernels: dict[str, dict[str, int]] | None = None
                    ) -> tuple[tvm.IRModule, ScheduleReport | None]:
    """Phase schedule: the tuned schedules the database has for the module's functions (none
    without a database), then the default schedule's intermediates inlined in the others.
    `kernels`: the hand-written kernels legalize built with the database's parameters, for
    the report."""
    report = None
    if database is not None:
        schedules = ApplyTunedSchedules(database.database, target,
                                        database.slower_than_default)
        mod = schedules(mod)  # pyright: ignore[reportCallIssue]  # a module_pass
        report = ScheduleReport(database, list(schedules.applied), list(schedules.failed),
                                dict(kernels or {}))
    mod = InlineIntermediates()(mod)  # pyright: ignore[reportCallIssue]  # a module_pass
    dump("schedule", mod)
    return mod, report


def build(imported: ImportedModel, target: dict[str, Any], dump: IRDumper,
          database: AppliedDatabase | None = None, system_library: bool = False) -> BuiltModel:
    """Phases layout to build for one LLVM target dict (see tinyasr.targets.boards), with
    the schedules of a tuning database for it when given; `system_library`: the code generated
    a second time as TVM's system library (BuiltModel.system_library)."""
    llvm = Target(target)
    try:
        choices = KernelChoices(None if database is None else database.kernel_timings)
        mod, weights, signatures = legalize(imported, llvm, dump, choices)
        mod, report = apply_schedules(mod, database, llvm, dump, choices.applied)
        with llvm:
            mod = tvm.transform.Sequential(lower_passes(imported.bounds))(mod)
            dump("lower", mod)
    finally:
        dump.publish()   # every phase; on an error, those that ran (a kill: none)
    progress("compile: build (LLVM code generation, the longest phase)")
    built = BuiltModel(tvm.compile(mod, llvm, relax_pipeline=None, tir_pipeline=TIR_PIPELINE),
                       weights, signatures, report)
    if system_library:
        progress("compile: build the system library (LLVM code generation again)")
        built.system_library = relax.build(mod, llvm, relax_pipeline=None,
                                           tir_pipeline=TIR_PIPELINE, system_lib=True)
    return built
