"""Where the shared public datasets are: ``../shared/data`` beside the checkout (or SSA_SHARED_DATA)."""

from __future__ import annotations

import os
from pathlib import Path

SHARED_DATA = Path(os.environ.get("SSA_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
