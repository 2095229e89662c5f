"""Where ``deepfer video``'s files are made: each in a temporary file beside its target, all put in place at the end.

A run that fails (a video that stops decoding, a server gone, a full disk, Ctrl-C) leaves no half-written CSV, plot
or annotated copy behind to be mistaken for a result: the temporary files are deleted and any older file of that
name is kept. The temporary file sits in the target's own folder, so the final ``os.replace`` is a rename on one
file system (atomic) rather than a copy, and it keeps the target's extension, which picks the CSV or JSON writer,
OpenCV's image encoder and the video container alike.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from deepfer.video.frames import VideoError


def check_writable(path: Path) -> None:
    """Refuse an output whose folder is missing or not writable, before any work is done for it."""
    folder = path.parent
    if not folder.is_dir():
        raise VideoError(f"cannot write {path}: the folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise VideoError(f"cannot write {path}: the folder {folder} is not writable")
    if path.is_dir():
        raise VideoError(f"cannot write {path}: it is a folder")


class StagedOutputs:
    """The temporary file of each output of one run, and the target each one replaces on success."""

    def __init__(self) -> None:
        self._staged: list[tuple[Path, Path]] = []

    def stage(self, target: Path) -> Path:
        """A new empty file beside ``target`` with its extension (``.NAME.partial-XXXXXXXX.EXT``) to write into."""
        check_writable(target)
        temporary = target.with_name(f".{target.stem}.partial-{secrets.token_hex(4)}{target.suffix}")
        try:
            temporary.touch(exist_ok=False)
        except OSError as error:
            raise VideoError(f"cannot write {target}: {error}") from None
        self._staged.append((temporary, target))
        return temporary

    def commit(self) -> None:
        for temporary, target in self._staged:
            try:
                os.replace(temporary, target)
            except OSError as error:
                raise VideoError(f"cannot write {target}: {error}") from None
        self._staged.clear()

    def discard(self) -> None:
        for temporary, _ in self._staged:
            temporary.unlink(missing_ok=True)
        self._staged.clear()


@contextmanager
def staged_outputs() -> Iterator[StagedOutputs]:
    """Outputs put in place when the block ends normally, deleted when it raises (whatever it raises)."""
    outputs = StagedOutputs()
    try:
        yield outputs
        outputs.commit()
    finally:
        outputs.discard()
