"""A session factory that records every session it opens, in this process or in a worker or actor
(each open appends one JSON line to a file), so a test sees where every strategy's sessions come from."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from strategies import ThreadSettings
from strategies.runtime import SessionFactory


@dataclass(frozen=True)
class RecordingFactory(SessionFactory):
    log: str = ""  # the file each open appends its line to

    def open(self, model: Path | str | bytes, settings: ThreadSettings, **extra: str) -> Any:
        with open(self.log, "a", encoding="utf-8") as file:
            file.write(json.dumps({"provider": self.provider, "options": dict(self.options), "extra": extra,
                                   "pid": os.getpid()}) + "\n")
        return super().open(model, settings, **extra)

    def opened(self) -> list[dict[str, Any]]:
        path = Path(self.log)
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
