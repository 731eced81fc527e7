"""All-or-nothing outputs: every file is first written into a hidden staging folder inside its
destination folder, and only moved into place (each with its provenance sidecar, in the order
staged, so the summary staged last lands last) once every one has been produced.  A failure
leaves no partial outputs, and removes the destination folders it had to create."""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator


class Staging:
    def __init__(self) -> None:
        self._dirs: dict[Path, Path] = {}
        self._created: list[Path] = []
        self.staged: list[tuple[Path, Path]] = []  # (staged artifact, final artifact)

    def path_for(self, final: Path) -> Path:
        """Where to write `final` (and its sidecar beside it) until the commit."""
        final = Path(final)
        dest = final.parent
        if dest not in self._dirs:
            missing = [p for p in [dest, *dest.parents] if not p.exists()]
            dest.mkdir(parents=True, exist_ok=True)
            self._created += missing
            self._dirs[dest] = Path(tempfile.mkdtemp(prefix=".report-staging-", dir=dest))
        staged = self._dirs[dest] / final.name
        self.staged.append((staged, final))
        return staged

    def commit(self) -> None:
        for staged, final in self.staged:
            sidecar = staged.with_name(staged.name + ".provenance.json")
            if sidecar.exists():
                os.replace(sidecar, final.with_name(final.name + ".provenance.json"))
            os.replace(staged, final)

    def cleanup(self, failed: bool) -> None:
        for tmp in self._dirs.values():
            shutil.rmtree(tmp, ignore_errors=True)
        if failed:
            for path in sorted(set(self._created), key=lambda q: len(q.parts), reverse=True):
                try:
                    path.rmdir()
                except OSError:
                    pass


@contextlib.contextmanager
def staged() -> Iterator[Staging]:
    """A Staging committed when the block succeeds, cleaned up either way."""
    staging = Staging()
    ok = False
    try:
        yield staging
        staging.commit()
        ok = True
    finally:
        staging.cleanup(failed=not ok)
