"""One text normalization for references and hypotheses of every system, so that systems that
write numbers as digits (Whisper) and those that spell them (our models, our transcripts) are
scored alike: `normalize`. Used by the real-speech bench (schedules/bench/realspeech.py) and by
`tinyasr evaluate --peer` for the peers' hypotheses."""

from __future__ import annotations

import re
import unicodedata

_ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen "
         "fourteen fifteen sixteen seventeen eighteen nineteen").split()
_TENS = "- - twenty thirty forty fifty sixty seventy eighty ninety".split()
_SCALES = ((10**12, "trillion"), (10**9, "billion"), (10**6, "million"), (1000, "thousand"))


def number_words(n: int) -> str:
    """A non-negative integer in English words, American style: 2024 -> 'two thousand
    twenty four' (no 'and', no hyphens)."""
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("" if n % 10 == 0 else " " + _ONES[n % 10])
    if n < 1000:
        rest = n % 100
        return _ONES[n // 100] + " hundred" + ("" if rest == 0 else " " + number_words(rest))
    for value, name in _SCALES:
        if n >= value:
            head, rest = divmod(n, value)
            return number_words(head) + " " + name + ("" if rest == 0 else " " + number_words(rest))
    raise AssertionError("unreachable")


def _digits_to_words(match: re.Match[str]) -> str:
    whole, fraction = match.group(1), match.group(2)
    if len(whole) > 1 and whole.startswith("0"):      # 007: read digit by digit
        words = " ".join(_ONES[int(d)] for d in whole)
    else:
        words = number_words(int(whole))
    if fraction:
        words += " point " + " ".join(_ONES[int(d)] for d in fraction)
    return f" {words} "


def normalize(text: str) -> str:
    """The one normalization for references and hypotheses of every system:

    1. Unicode NFKC, lowercase; typographic apostrophes become '.
    2. Annotation tags in <>, [] or {} (MFA's <unk>, [laughter]) are dropped.
    3. Numbers become words: thousands commas go (1,000), integers are said as cardinals
       (number_words: 1000 -> one thousand, 2024 -> two thousand twenty four), a decimal
       part digit by digit (3.5 -> three point five), '%' -> percent.
    4. Every character that is not a letter, digit or apostrophe becomes a space (so
       'self-substantial' -> 'self substantial'); an apostrophe stays only between two
       letters (i'm, beauty's, feed'st).
    5. Whitespace collapses to single spaces.
    Words are otherwise left as written: fillers (um, uh) count, and spellings are not mapped
    (the reference's 'yknow' is not 'you know', 'fire fox' is not 'firefox').
    """
    text = unicodedata.normalize("NFKC", text).lower()
    text = re.sub(r"[\u2018\u2019\u02bc`]", "'", text)
    text = re.sub(r"<[^<>]*>|\[[^\[\]]*\]|\{[^{}]*\}", " ", text)
    text = re.sub(r"(?<=\d),(?=\d{3}(?!\d))", "", text)
    text = text.replace("%", " percent ")
    text = re.sub(r"(\d+)(?:\.(\d+))?", _digits_to_words, text)
    text = re.sub(r"[^\w']|_", " ", text)
    text = re.sub(r"(?<![^\W\d_])'|'(?![^\W\d_])", " ", text)
    return re.sub(r"\s+", " ", text).strip()
