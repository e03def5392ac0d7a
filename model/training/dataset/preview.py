"""Augmented copies of a few utterances as wavs, with the effects drawn for each
(`tinyasr data augment-preview`): what training makes of a corpus, to listen to."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from tinyasr.model.common.errors import warn
from tinyasr.model.data.synth import building, check_destination, check_not_inside, write_wav
from tinyasr.model.training.dataset import augment
from tinyasr.model.training.dataset.sources import BadUtterance, Corpus, Entry
from tinyasr.model.training.train import Recipe

EFFECTS_FILE = "effects.txt"
PREVIEW_AUGMENT = {"speeds": [0.9, 1.0, 1.1], "reverb_prob": 0.5, "noise_prob": 0.5,
                   "telephone_prob": 0.3, "gain_prob": 0.5}


def preview_config(recipe: Path | None) -> augment.AugmentConfig:
    """The "augment" section of the recipe JSON `recipe`; without one, every effect on."""
    if recipe is None:
        return augment.AugmentConfig.from_dict(dict(PREVIEW_AUGMENT))
    return Recipe.load(recipe).augment


def write_augment_preview(source: Path, out: Path, count: int, recipe: Path | None = None,
                          seed: int = 0, epoch: int = 0, force: bool = False) -> int:
    """Writes the first `count` usable utterances of the corpus `source`, in `epoch`'s order,
    augmented as `seed` and `epoch` draw them under `recipe`'s augment section (preview_config),
    as `out`/UTT.wav, with each one's effects in `out`/effects.txt; `out` is built beside it
    and renamed into place (an existing one only with `force`). Returns the wavs written."""
    config = preview_config(recipe)
    check_destination(out, force)
    check_not_inside(source, out)
    corpus = Corpus.open(source)
    noise = augment.noise_wavs(config)
    lines = []
    with building(out) as build:
        for entry in corpus.entries(seed, epoch):
            if len(lines) == count:
                break
            if isinstance(entry, BadUtterance):   # skipped, as training skips it
                warn(f"{entry}; skipped")
                continue
            assert isinstance(entry, Entry)
            try:
                samples = corpus.load(entry)
            except BadUtterance as bad:
                warn(f"{bad}; skipped")
                continue
            plan = augment.plan(config, seed, epoch, entry.uid, len(noise))
            write_wav(build / f"{entry.uid}.wav", np.rint(augment.apply(plan, samples, noise)))
            effects = {k: v for k, v in vars(plan).items()
                       if k not in ("seed", "noise_colour", "noise_file") and v not in (None, False)
                       and not (k == "speed" and v == 1.0)}
            if plan.noise_snr_db is not None:
                colours = {beta: name for name, beta in augment.COLOURS.items()}
                effects["noise"] = (str(noise[plan.noise_file].name) if plan.noise_file >= 0
                                    else colours[plan.noise_colour])
            lines.append(f"{entry.uid} {json.dumps(effects)}")
        (build / EFFECTS_FILE).write_text("".join(line + "\n" for line in lines))
    return len(lines)
