"""Which model family a deployable holds, read from its manifest without importing torch or TVM
(`tinyasr transcribe --lib` picks its runner, and how much it imports, by it)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SAN_M = "san-m"
WHISPER = "whisper"
FAMILY_NAMES = {SAN_M: "SAN-M", WHISPER: "Whisper"}   # as messages name them
MANIFEST_FILE = "manifest.json"


def family_of(manifest: dict[str, Any]) -> str:
    """The manifest's "family"; a manifest from before families holds SAN-M."""
    family = manifest.get("family", SAN_M) if isinstance(manifest, dict) else SAN_M
    return family if isinstance(family, str) else repr(family)


def deployable_family(deployable: Path) -> str | None:
    """The family a directory's manifest names, or None when it has no readable manifest (the
    family's own reader then says what is wrong)."""
    try:
        return family_of(json.loads((Path(deployable) / MANIFEST_FILE).read_text()))
    except (OSError, ValueError):
        return None
