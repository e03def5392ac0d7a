"""Character-level tokenizer built from the training transcripts (WeNet's layout).

Ids: 0 `<blank>` (CTC), 1 `<unk>`, then every character seen in training sorted, and last
`<sos/eos>`. Any Unicode text works, Chinese characters included. Transcripts are normalized the
same way for training and scoring: NFKC, lower case, runs of white space folded to one space, and
white space next to a Chinese or Japanese character dropped: AISHELL-1's transcripts put spaces
between words ("而 对 楼市 成交"), which are word segmentation, not characters the model should
predict or CER should count; between two Latin words a space stays (it is a character of English).
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterable
from pathlib import Path

from tinyasr.model.common.errors import InputError

BLANK = "<blank>"
UNK = "<unk>"
SOS_EOS = "<sos/eos>"


# CJK punctuation, kana, CJK ideographs (with extension A and the compatibility block) and the
# supplementary ideograph planes; not Hangul, which writes spaces between words.
_CJK = "\u3000-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f"
_SPACE_BY_CJK = re.compile(f"(?<=[{_CJK}]) | (?=[{_CJK}])")


def normalize_text(text: str) -> str:
    folded = re.sub(r"\s+", " ", unicodedata.normalize("NFKC", text).lower()).strip()
    return _SPACE_BY_CJK.sub("", folded)


def _check_tokens(tokens: object) -> None:
    """ValueError unless `tokens` is a list of distinct non-empty strings that starts with
    <blank>, <unk> and ends with <sos/eos> (each special token once)."""
    if not isinstance(tokens, list):
        raise ValueError(f"expected a list of token strings, got a {type(tokens).__name__}")
    for index, token in enumerate(tokens):
        if not isinstance(token, str) or not token:
            raise ValueError(f"token {index} is {token!r}, expected a non-empty string")
    if len(tokens) < 3 or tokens[:2] != [BLANK, UNK] or tokens[-1] != SOS_EOS:
        raise ValueError("token list must start with <blank>, <unk> and end with <sos/eos>")
    if len(set(tokens)) != len(tokens):
        seen: set[str] = set()
        duplicate = next(token for token in tokens if token in seen or seen.add(token))
        raise ValueError(f"token {duplicate!r} appears more than once")


class Tokenizer:
    def __init__(self, tokens: list[str]):
        _check_tokens(tokens)
        self.tokens = tokens
        self.ids = {token: i for i, token in enumerate(tokens)}

    @classmethod
    def from_texts(cls, texts: Iterable[str]) -> Tokenizer:
        characters = sorted({c for text in texts for c in normalize_text(text)})
        return cls([BLANK, UNK, *characters, SOS_EOS])

    @classmethod
    def load(cls, path: Path) -> Tokenizer:
        try:
            return cls(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError) as error:
            raise InputError(f"{path}: not a tinyasr token list ({error})") from None

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.tokens, ensure_ascii=False, indent=0), encoding="utf-8")

    @property
    def blank(self) -> int:
        return 0

    @property
    def sos_eos(self) -> int:
        return len(self.tokens) - 1

    def __len__(self) -> int:
        return len(self.tokens)

    def encode(self, text: str) -> list[int]:
        unk = self.ids[UNK]
        return [self.ids.get(c, unk) for c in normalize_text(text)]

    def decode(self, ids: Iterable[int]) -> str:
        return "".join(self.tokens[i] for i in ids if 0 < i < self.sos_eos)
