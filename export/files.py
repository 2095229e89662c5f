"""Writing the exported files so that a reader (the service may be loading the model at any moment) sees the
previous file or the complete new one, never something in between: temporary file beside, fsync, rename."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from export.metadata import sha256_file


@contextmanager
def replacing(destination: Path) -> Iterator[Path]:
    """A temporary path beside ``destination`` that is renamed over it only when the block succeeds.

    Same folder, so the rename is atomic; same suffix, so writers that check extensions (Keras) accept it.
    """
    destination.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(
        dir=destination.parent, prefix=f".{destination.stem}.", suffix=destination.suffix
    )
    os.close(handle)
    # mkstemp makes the file private (0600); a model must stay readable by the service's own user (the
    # container runs as uid 10001), so give it the permissions a plain open() would have.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(temporary, 0o666 & ~umask)
    try:
        yield Path(temporary)
        os.replace(temporary, destination)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def atomic_write(data: bytes, destination: Path) -> None:
    """Write, fsync, then rename over the destination: readers see the old file or the whole new one."""
    with replacing(destination) as temporary, temporary.open("wb") as stream:
        stream.write(data)
        stream.flush()
        os.fsync(stream.fileno())


def write_model(onnx_bytes: bytes, path: Path, metadata: dict[str, str], **extra: object) -> None:
    """The ONNX file and its JSON record beside it (metadata, SHA-256, how it was made), each written atomically."""
    atomic_write(onnx_bytes, path)
    sidecar = {**{k: _maybe_json(v) for k, v in metadata.items()}, "sha256": sha256_file(path), **extra}
    atomic_write((json.dumps(sidecar, indent=2) + "\n").encode(), path.with_suffix(".json"))
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")


def save_keras_copy(model: Any, destination: Path) -> Path:
    """The float32 network beside the ONNX file, without optimizer state: the start point for ``--init``
    fine-tuning on a customer's own faces, kept in step with the ONNX file it was exported to."""
    with replacing(destination) as temporary:
        model.save(temporary)
    return destination


def _maybe_json(value: str) -> object:
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value
