"""Run a compiled deployable on a board behind a TVM tracker and check it against the host.

For every utterance: the board's CTC log-probs and transcript against the PyTorch reference
model the deployable was compiled from, by the rule of compile/parity.py (fp32: log-probs within
a tolerance and the same transcript; int8, whose per-row roundings may flip on another CPU: the
same most likely token on nearly every frame and transcripts at most a character in 20 apart),
and the on-board latency of the encoder (`time_evaluator`, median of repeats). A Whisper
deployable (the manifest's family) is held to PyTorch's greedy transcript by the same text rule
(fp32 equal, int8 within a character in 20); its first window's first-step logits are compared
and reported, not judged (the search's tokens are what the transcript checks), and its encoder
latency is the board's time for the one 30 s window encode (an emulated one takes minutes, too
long to repeat). With several boards
under the key, the utterances are spread across them (one session per board). Results are written to
JSON after every utterance, so a failure keeps them. A board that fails mid-utterance, or does not
answer within the utterance deadline (a hung board keeps its socket open, and TVM's RPC client has
no timeout of its own), is replaced by another board of the key once; then the test fails naming the
utterance.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast, overload

import numpy as np

from tinyasr.compile.parity import compare, rounds_activations_to_int8, whisper_texts_agree
from tinyasr.model.common.atomic import atomic_write_text
from tinyasr.model.common.errors import InputError
from tinyasr.targets.boards import Board
from tinyasr.targets.farm import check_tracker, parse_address, wait_for_boards
from tinyasr.targets.remote import load_library, request_session

if TYPE_CHECKING:   # model.decoding imports torch: loaded where the host reference runs
    from tinyasr.model.decoding.recognizer import Recognizer
    from tinyasr.model.whisper.recognizer import WhisperRecognizer

SESSION_TIMEOUT = 600.0   # s a board lets one session run, beyond its utterances' deadlines
REQUEST_WAIT = 120.0      # s to wait for a free board
UTTERANCE_DEADLINE = 300.0  # s one utterance may take on a board, upload and session included

Result = TypeVar("Result")


@dataclass
class UtteranceResult:
    uid: str
    reference: str          # the labelled transcript
    host_text: str          # the PyTorch reference model's transcript
    board_text: str
    max_abs_diff: float     # board vs host CTC log-probs (Whisper: first-step logits)
    frame_agreement: float | None  # share of frames with the same most likely token (SAN-M)
    latency_ms: float       # on-board encoder, median of repeats
    ok: bool


class _RemoteVM:
    """The board's VirtualMachine as CompiledModelRunner calls it. Shapes are made on the board
    (RPC cannot send ffi.Shape objects), and each function's last arguments are kept so the
    call can be timed on the board."""

    def __init__(self, vm, remote):
        self.vm, self.last_args = vm, {}
        self._make_shape = remote.get_function("ffi.Shape")
        self._array_size = remote.get_function("ffi.ArraySize")
        self._array_item = remote.get_function("ffi.ArrayGetItem")

    def __getitem__(self, name: str):
        import tvm_ffi

        def call(*args):
            args = tuple(self._make_shape(*arg) if isinstance(arg, tvm_ffi.Shape) else arg
                         for arg in args)
            self.last_args[name] = args
            result = self.vm[name](*args)
            if not isinstance(result, tvm_ffi.Tensor):  # a tuple, left on the board
                return _RemoteTuple(result, self._array_size(result), self._array_item)
            return result
        return call


class _RemoteTuple(Sequence):
    """A function's tuple result, left on the board; an item is fetched when it is read. Only
    what the caller reads crosses the RPC link, and an item that is one of the call's own
    arguments (Whisper's self-attention caches, written in place and returned) is never
    fetched: TVM's RPC cannot send back a tensor it received as an argument."""

    def __init__(self, handle, size: int, fetch: Callable):
        self.handle, self.size, self.fetch = handle, size, fetch

    def __len__(self) -> int:
        return self.size

    @overload
    def __getitem__(self, index: int) -> Any: ...
    @overload
    def __getitem__(self, index: slice) -> list[Any]: ...

    def __getitem__(self, index: int | slice) -> Any:
        if isinstance(index, slice):
            return [self.fetch(self.handle, i) for i in range(*index.indices(self.size))]
        if not -self.size <= index < self.size:
            raise IndexError(index)
        return self.fetch(self.handle, index % self.size)


def remote_runner(deployable: Path, remote, board: Board):
    """A CompiledModelRunner whose VM and weights live on the board."""
    from tvm import relax

    from tinyasr.compile.deployable import LIBRARY_FILE
    from tinyasr.targets.host.runner import CompiledModelRunner

    device = remote.cpu()
    library = load_library(remote, deployable / LIBRARY_FILE, board)
    return CompiledModelRunner(deployable, device,
                               _RemoteVM(relax.VirtualMachine(library, device), remote))


def encoder_latency_ms(runner, repeat: int) -> float:
    """On-board time of the last `encode` call, median over `repeat` runs."""
    vm = runner.vm.vm
    vm.set_input("encode", *runner.vm.last_args["encode"])
    timing = vm.time_evaluator("invoke_stateful", runner.device, number=1, repeat=repeat)("encode")
    return float(timing.median * 1000)


def within(seconds: float, work: Callable[[], Result]) -> Result:
    """`work()`, or TimeoutError when it has not returned after `seconds`: it runs in a daemon
    thread, which a hung board leaves blocked while the caller moves on."""
    outcome: dict[str, Any] = {}   # "value": what work() returned, or "error": what it raised

    def run() -> None:
        try:
            outcome["value"] = work()
        except BaseException as error:   # noqa: BLE001 - re-raised in the caller's thread
            outcome["error"] = error

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        raise TimeoutError(f"no answer from the board within {seconds:g} s")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


class _BoardWorker:
    """One board session working through the shared queue of utterances."""

    def __init__(self, test: _RpcTest):
        self.test, self.remote = test, None
        self.runner: Any = None   # CompiledModelRunner, or for Whisper a WhisperRecognizer

    def run(self) -> None:
        while (item := self.test.next_utterance()) is not None:
            index, utterance = item
            try:
                self.test.record(index, self.check(utterance))
            except InputError as error:
                self.test.fail(error)
                return
            except Exception as error:  # noqa: BLE001 - a lost utterance must fail the test
                self.test.fail(InputError(f"utterance {utterance.uid!r}: "
                                          f"{type(error).__name__}: {error}"))
                return

    def check(self, utterance) -> UtteranceResult:
        """The utterance on the board vs the host; one retry on a fresh board after an RPC error
        or a missed deadline."""
        from tinyasr.model.data.datadir import load_wav

        test = self.test
        samples = load_wav(utterance.wav)
        host_log_probs, host_text = test.host_reference(samples)
        for attempt in (1, 2):
            try:
                board_log_probs, board_text, latency = within(
                    test.deadline, lambda: self.on_board(samples))
                break
            except Exception as error:  # an RPC failure: the board died, hung up or hangs
                if isinstance(error, InputError) or attempt == 2:
                    raise InputError(f"utterance {utterance.uid!r} failed on a {test.key!r} "
                                     f"board: {str(error).splitlines()[-1]}") from None
                self.remote = self.runner = None  # frees the session for the retry
        else:
            raise AssertionError("unreachable: the second attempt returns or raises")
        if test.whisper:   # the transcript rule alone; the logits are reported
            ok = whisper_texts_agree(board_text, host_text, test.int8)
            diff = (float(np.abs(board_log_probs - host_log_probs).max())
                    if board_log_probs.size and host_log_probs.size else 0.0)
            return UtteranceResult(utterance.uid, utterance.text, host_text, board_text, diff,
                                   None, latency, ok)
        parity = compare(board_log_probs, host_log_probs, board_text, host_text, test.int8,
                         test.tolerance)
        return UtteranceResult(utterance.uid, utterance.text, host_text, board_text,
                               parity.max_abs_diff, parity.frame_agreement, latency, parity.ok)

    def on_board(self, samples: np.ndarray) -> tuple[np.ndarray, str, float]:
        """CTC log-probs (Whisper: first-step logits), transcript and encoder latency of one
        utterance on this worker's board (a session is requested and the deployable loaded on
        first use)."""
        from tinyasr.targets.host.runner import CompiledRecognizer

        test = self.test
        if self.runner is None:
            self.remote = request_session(test.tracker, test.key, test.request_wait,
                                          test.session_timeout)
            self.runner = (remote_whisper(test.deployable, self.remote, test.board)
                           if test.whisper else
                           remote_runner(test.deployable, self.remote, test.board))
        if test.whisper:
            return whisper_transcript(self.runner, samples)
        log_probs, _ = self.runner.ctc_log_probs(samples)
        text = CompiledRecognizer(self.runner, test.options).transcribe(samples)
        return log_probs, text, encoder_latency_ms(self.runner, test.repeat)


@dataclass
class _RpcTest:
    """What the workers share: the job, the queue of utterances and the results so far."""

    deployable: Path
    board: Board
    tracker: str
    key: str
    json_path: Path | None
    tolerance: float       # max |log-prob difference| of an fp32 deployable
    repeat: int
    request_wait: float    # s to wait for a free board
    deadline: float        # s one utterance may take on a board
    host: Recognizer | WhisperRecognizer   # the PyTorch one
    int8: bool             # SAN-M: the reference rounds activations to int8 (compile/parity.py);
    #                        Whisper: the deployable's weights are int8
    whisper: bool          # the deployable's family is Whisper
    pending: queue.Queue
    results: dict[int, UtteranceResult] = field(default_factory=dict)
    errors: list[InputError] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    # a worker's session may hold every utterance, each within its deadline (an emulated k230
    # encodes one Whisper window in ~1000 s: a fixed 600 s session ended it mid-utterance)
    session_timeout: float = SESSION_TIMEOUT

    @property
    def options(self):
        return cast("Recognizer", self.host).options   # SAN-M's DecodeOptions

    def next_utterance(self):
        try:
            return None if self.errors else self.pending.get_nowait()
        except queue.Empty:
            return None

    def host_reference(self, samples: np.ndarray) -> tuple[np.ndarray, str]:
        import torch

        if self.whisper:
            logits, text, _ = whisper_transcript(cast("WhisperRecognizer", self.host), samples)
            return logits, text
        host = cast("Recognizer", self.host)
        with torch.no_grad():
            log_probs, _ = host.model.ctc_log_probs(torch.from_numpy(samples)[None])
        return log_probs[0].numpy(), host.transcribe(samples)

    def record(self, index: int, result: UtteranceResult) -> None:
        """Keep a result and rewrite the JSON, so partial results survive a later failure."""
        with self.lock:
            self.results[index] = result
            if self.json_path is not None:
                rows = [asdict(self.results[i]) for i in sorted(self.results)]
                atomic_write_text(self.json_path, json.dumps(rows, indent=2) + "\n")

    def fail(self, error: InputError) -> None:
        with self.lock:
            self.errors.append(error)


def run_rpc_test(deployable: Path, board: Board, tracker: str, key: str, data_dir: Path,
                 json_path: Path | None, tolerance: float = 1e-3, repeat: int = 3,
                 boards: int | None = None, request_wait: float = REQUEST_WAIT,
                 deadline: float = UTTERANCE_DEADLINE) -> list[UtteranceResult]:
    """Every utterance of `data_dir` on boards of `key`, spread over `boards` sessions at once
    (default: as many as the tracker lists for the key); results also go to `json_path`."""
    from tinyasr.compile.family import WHISPER, deployable_family
    from tinyasr.model.data.datadir import read_data_dir
    pending: queue.Queue = queue.Queue()
    utterances = read_data_dir(data_dir)
    for item in enumerate(utterances):
        pending.put(item)
    whisper = deployable_family(deployable) == WHISPER
    reference, int8 = (_whisper_reference(deployable) if whisper
                       else _san_m_reference(deployable))
    test = _RpcTest(deployable, board, tracker, key, json_path, tolerance, repeat, request_wait,
                    deadline, reference, int8, whisper, pending,
                    session_timeout=SESSION_TIMEOUT + deadline * len(utterances))
    if boards is None:
        address = parse_address(tracker, "--tracker")
        check_tracker(*address)
        boards = len(wait_for_boards(*address, key, request_wait))
    workers = [threading.Thread(target=_BoardWorker(test).run) for _ in range(boards)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    if test.errors:
        raise test.errors[0]
    missing = [u.uid for i, u in enumerate(utterances) if i not in test.results]
    if missing:   # never a pass over fewer utterances than asked
        raise InputError(f"{len(missing)} utterance(s) got no result, first {missing[0]!r}")
    return [test.results[i] for i in sorted(test.results)]



def _san_m_reference(deployable: Path) -> tuple[Recognizer, bool]:
    """The PyTorch model a SAN-M deployable was compiled from, and whether it is int8."""
    from tinyasr.compile.deployable import read_manifest
    from tinyasr.model.decoding.recognizer import Recognizer

    reference = Recognizer.load(Path(read_manifest(deployable)["model"]["path"]))
    return reference, rounds_activations_to_int8(reference.model)


def _whisper_reference(deployable: Path) -> tuple[WhisperRecognizer, bool]:
    """The PyTorch greedy Whisper a Whisper deployable was compiled from, and whether the
    deployable's weights are int8."""
    from tinyasr.compile.whisper_manifest import read_whisper_manifest
    from tinyasr.model.whisper.recognizer import WhisperRecognizer

    manifest = read_whisper_manifest(deployable)
    reference = WhisperRecognizer.load(Path(manifest["model"]["path"]))
    return reference, manifest["weights_encoding"] == "int8"


def remote_whisper(deployable: Path, remote, board: Board) -> WhisperRecognizer:
    """A greedy Whisper recognizer whose VM and weights live on the board."""
    from tvm import relax

    from tinyasr.compile.deployable import LIBRARY_FILE
    from tinyasr.targets.host.whisper_runner import CompiledWhisper, load_compiled_whisper

    device = remote.cpu()
    library = load_library(remote, deployable / LIBRARY_FILE, board)
    model = CompiledWhisper(deployable, device,
                            _RemoteVM(relax.VirtualMachine(library, device), remote))
    return load_compiled_whisper(deployable, model=model)


class _Recorded:
    """A Whisper model (PyTorch or compiled) that keeps its first window's encode time and the
    logits after its prompt, while the recognizer's own search decodes through it."""

    def __init__(self, model):
        self.model, self.encode_ms, self.logits = model, 0.0, np.zeros(0, np.float32)
        self.windows = 0

    def __getattr__(self, name: str):
        return getattr(self.model, name)

    def encoder(self, window):
        started = time.perf_counter()
        encoded = self.model.encoder(window)
        if self.windows == 0:
            self.encode_ms = (time.perf_counter() - started) * 1000
        self.windows += 1
        return encoded

    def open_window(self, encoded):
        state, recorder, first = self.model.open_window(encoded), self, self.windows == 1
        step = state.step

        def recording_step(tokens):
            logits = step(tokens)
            if first and not recorder.logits.size:
                recorder.logits = logits[0, -1]
            return logits

        state.step = recording_step
        return state


def whisper_transcript(recognizer: WhisperRecognizer, samples: np.ndarray
                       ) -> tuple[np.ndarray, str, float]:
    """The first speech window's logits after the prompt (empty when every window is silent),
    the transcript and that window's encode time in ms, in one pass of the recognizer (a
    board's encode outputs stay on the board, so the call's wall time is the board's)."""
    recorded = _Recorded(recognizer.model)
    recognizer.model = recorded  # pyright: ignore[reportAttributeAccessIssue]  # duck-typed
    try:
        text = recognizer.transcribe(samples)
    finally:
        recognizer.model = recorded.model
    return recorded.logits, text, recorded.encode_ms


def _scored_text(text: str, whisper: bool) -> str:
    """The board's text as CER is scored: Whisper's normalized as `tinyasr evaluate` does."""
    if not whisper:
        return text
    from tinyasr.model.whisper.recognizer import plain_text

    return plain_text(text)


def format_table(results: list[UtteranceResult], whisper: bool = False) -> str:
    """One row per utterance, then the CER of the board's transcripts (Whisper's scored as
    `tinyasr evaluate` scores them: lowercase, no punctuation)."""
    from tinyasr.model.decoding.metrics import ErrorCounts, char_errors

    rows = [f"{'utterance':24s} {'ok':3s} {'max|diff|':>10s} {'frames':>7s} {'ms':>9s}  "
            "board transcript"]
    for r in results:
        frames = "-" if r.frame_agreement is None else f"{r.frame_agreement:.1%}"
        rows.append(f"{r.uid:24s} {'yes' if r.ok else 'NO':3s} {r.max_abs_diff:10.2e} "
                    f"{frames:>7s} {r.latency_ms:9.2f}  {r.board_text}")
    total = sum((char_errors(r.reference, _scored_text(r.board_text, whisper)) for r in results),
                ErrorCounts())
    rows.append(f"CER on board: {total.summary()}")
    return "\n".join(rows)
