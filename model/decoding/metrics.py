"""Error rates with the substitution / deletion / insertion breakdown.

CER aligns characters, spaces included (so a lost word boundary counts in English). Scored text
is normalize_text's, which drops the spaces next to Chinese characters (AISHELL-1's word
segmentation), so Mandarin CER counts characters without spaces, as AISHELL reports it. WER
aligns space-separated words (meaningless for Mandarin, whose normalized text has no spaces).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass
class ErrorCounts:
    substitutions: int = 0
    deletions: int = 0
    insertions: int = 0
    reference_length: int = 0

    @property
    def errors(self) -> int:
        return self.substitutions + self.deletions + self.insertions

    @property
    def rate(self) -> float:
        """Errors per reference unit, in percent."""
        return 100.0 * self.errors / max(1, self.reference_length)

    def __add__(self, other: ErrorCounts) -> ErrorCounts:
        return ErrorCounts(self.substitutions + other.substitutions,
                           self.deletions + other.deletions,
                           self.insertions + other.insertions,
                           self.reference_length + other.reference_length)

    def summary(self) -> str:
        return (f"{self.rate:.2f}% (sub {self.substitutions}, del {self.deletions}, "
                f"ins {self.insertions}, of {self.reference_length})")


def align(reference: Sequence[str], hypothesis: Sequence[str]) -> ErrorCounts:
    """Levenshtein alignment; ties prefer substitution, then deletion, then insertion."""
    # cost[j] = (total, sub, del, ins) for aligning reference[:i] with hypothesis[:j]
    previous = [(j, 0, 0, j) for j in range(len(hypothesis) + 1)]
    for i, ref_unit in enumerate(reference, start=1):
        current = [(i, 0, i, 0)]
        for j, hyp_unit in enumerate(hypothesis, start=1):
            diagonal = previous[j - 1]
            same = ref_unit == hyp_unit
            candidates = [
                (diagonal[0] + (not same), diagonal[1] + (not same), diagonal[2], diagonal[3]),
                (previous[j][0] + 1, previous[j][1], previous[j][2] + 1, previous[j][3]),
                (current[j - 1][0] + 1, current[j - 1][1], current[j - 1][2],
                 current[j - 1][3] + 1),
            ]
            current.append(min(candidates, key=lambda c: c[0]))
        previous = current
    _, sub, dele, ins = previous[-1]
    return ErrorCounts(sub, dele, ins, len(reference))


def char_errors(reference: str, hypothesis: str) -> ErrorCounts:
    return align(reference, hypothesis)


def word_errors(reference: str, hypothesis: str) -> ErrorCounts:
    return align(reference.split(), hypothesis.split())
