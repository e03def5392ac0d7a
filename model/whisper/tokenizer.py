"""Whisper's byte-level BPE (GPT-2's 50257 tokens for the English-only models) and its specials.

Text is UTF-8 bytes; each byte is shown as one printable character (the printable Latin-1
bytes as themselves, the other 68 bytes as U+0100 onwards, in byte order), so every token of the
vocabulary is a string of such characters and decoding is: token strings -> characters ->
bytes -> UTF-8. Encoding splits text into pre-tokens (contractions, a space plus letters, a
space plus digits, a space plus other symbols, runs of spaces) and merges each pre-token's
characters by the ranked merge list until no ranked pair is left.

Vocabulary: `vocabulary.txt` (id = line number, as CTranslate2 reads it), whose last 1607
lines are the special tokens `<|endoftext|>`, `<|startoftranscript|>`, languages, tasks,
`<|nocaptions|>`, `<|notimestamps|>` and the timestamps `<|0.00|>` .. `<|30.00|>`. Merges:
`merges.txt`, one `a b` pair per line, best rank first (from the shipped tokenizer.json).

The pre-tokenizer uses Python's `re` where GPT-2 uses Unicode letter/number classes
(`\\p{L}`, `\\p{N}`): `[^\\W\\d_]` and `\\d` agree on English text; they can differ on rare
scripts (combining marks), which only changes how such text is split, never what a token
sequence decodes to.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tinyasr.model.common.errors import InputError

VOCABULARY_FILE = "vocabulary.txt"
MERGES_FILE = "merges.txt"

Merges = list[tuple[str, str]]
_PRETOKEN = re.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?[^\W\d_]+| ?\d+| ?[^\s\w]+|_+|\s+(?!\S)|\s+""")


@functools.cache
def byte_to_char() -> dict[int, str]:
    """GPT-2's byte -> printable character table."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
                 *range(ord("®"), ord("ÿ") + 1)]
    table, extra = {}, 0
    for byte in range(256):
        if byte in printable:
            table[byte] = chr(byte)
        else:
            table[byte] = chr(256 + extra)
            extra += 1
    return table


@functools.cache
def char_to_byte() -> dict[str, int]:
    return {char: byte for byte, char in byte_to_char().items()}


@dataclass(frozen=True)
class SpecialTokens:
    """Ids of the special tokens the decoder needs, looked up by their text."""

    eot: int
    sot: int
    no_speech: int
    no_timestamps: int
    timestamp_begin: int
    task_and_lm: tuple[int, ...]     # <|translate|> <|transcribe|> <|startoflm|> <|startofprev|>


class WhisperTokenizer:
    """Byte-level BPE over a Whisper vocabulary; see the module docstring."""

    def __init__(self, vocabulary: list[str], merges: Merges | Callable[[], Merges]):
        """merges: best first, or a function that gives them when encoding first needs them
        (decoding never does: `load` parses the 50000 lines only then)."""
        self.vocabulary = vocabulary
        self.ids = {token: i for i, token in enumerate(vocabulary)}
        self._merges = merges
        self.specials = self._find_specials()

    @functools.cached_property
    def ranks(self) -> dict[tuple[str, str], int]:
        merges = self._merges() if callable(self._merges) else self._merges
        return {pair: rank for rank, pair in enumerate(merges)}

    @classmethod
    def load(cls, directory: Path) -> WhisperTokenizer:
        """From `vocabulary.txt` and `merges.txt` in a directory; both are read now, the merges
        parsed on first use (a bad line is then one InputError naming the file)."""
        directory = Path(directory)
        try:
            vocabulary = (directory / VOCABULARY_FILE).read_text(encoding="utf-8").split("\n")
            merge_text = (directory / MERGES_FILE).read_text(encoding="utf-8")
        except OSError as error:
            raise InputError(f"{directory}: cannot read the Whisper tokenizer ({error})") from None
        if vocabulary and vocabulary[-1] == "":
            vocabulary.pop()
        return cls(vocabulary, functools.partial(_parse_merges, merge_text,
                                                 directory / MERGES_FILE))

    def save(self, directory: Path) -> None:
        directory = Path(directory)
        (directory / VOCABULARY_FILE).write_text("\n".join(self.vocabulary) + "\n",
                                                  encoding="utf-8")
        ordered = sorted(self.ranks, key=self.ranks.__getitem__)
        (directory / MERGES_FILE).write_text("".join(f"{a} {b}\n" for a, b in ordered),
                                              encoding="utf-8")

    def __len__(self) -> int:
        return len(self.vocabulary)

    def _find_specials(self) -> SpecialTokens:
        def need(text: str) -> int:
            if text not in self.ids:
                raise InputError(f"Whisper vocabulary has no {text}")
            return self.ids[text]

        no_speech = self.ids.get("<|nospeech|>", self.ids.get("<|nocaptions|>"))
        if no_speech is None:
            raise InputError("Whisper vocabulary has neither <|nospeech|> nor <|nocaptions|>")
        return SpecialTokens(
            eot=need("<|endoftext|>"), sot=need("<|startoftranscript|>"), no_speech=no_speech,
            no_timestamps=need("<|notimestamps|>"), timestamp_begin=need("<|0.00|>"),
            task_and_lm=tuple(need(t) for t in ("<|translate|>", "<|transcribe|>",
                                                "<|startoflm|>", "<|startofprev|>")))

    def is_special(self, token: int) -> bool:
        """Every id from <|endoftext|> up is a control or timestamp token, not text."""
        return token >= self.specials.eot

    def decode(self, tokens: list[int]) -> str:
        """Text of the text tokens (special tokens are skipped); invalid UTF-8 becomes U+FFFD."""
        table = char_to_byte()
        data = bytes(table[char] for token in tokens if not self.is_special(token)
                     for char in self.vocabulary[token])
        return data.decode("utf-8", errors="replace")

    def encode(self, text: str) -> list[int]:
        """Token ids of plain text (no special tokens)."""
        table = byte_to_char()
        ids = []
        for pretoken in _PRETOKEN.findall(text):
            chars = "".join(table[b] for b in pretoken.encode("utf-8"))
            ids.extend(self.ids[part] for part in self._merge(chars))
        return ids

    def _rank(self, pair: tuple[str, str]) -> int:
        return self.ranks.get(pair, len(self.ranks))

    def _merge(self, chars: str) -> list[str]:
        """Merges every occurrence of the best-ranked adjacent pair, until no pair is ranked."""
        parts = list(chars)
        while len(parts) > 1:
            best = min(zip(parts, parts[1:], strict=False), key=self._rank)
            if best not in self.ranks:
                break
            merged, i = [], 0
            while i < len(parts):
                if i + 1 < len(parts) and (parts[i], parts[i + 1]) == best:
                    merged.append(parts[i] + parts[i + 1])
                    i += 2
                else:
                    merged.append(parts[i])
                    i += 1
            parts = merged
        return parts


def _parse_merges(text: str, path: Path) -> Merges:
    """merges.txt's `a b` lines, in order."""
    split = [line.split(" ") for line in text.split("\n") if line]
    if any(len(pair) != 2 for pair in split):
        raise InputError(f"{path}: a line is not two tokens")
    return [(first, second) for first, second in split]
