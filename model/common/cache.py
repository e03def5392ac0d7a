"""Where tinyasr keeps what it makes once and reuses: ~/.cache/tinyasr, or $TINYASR_CACHE."""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ROOT = Path(os.environ.get("TINYASR_CACHE", Path.home() / ".cache" / "tinyasr"))
