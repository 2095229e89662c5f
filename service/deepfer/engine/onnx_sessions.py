"""How both model wrappers open an ONNX Runtime session: providers, threads, spinning, readable load errors.

Shared by ``FaceDetector`` and ``EmotionClassifier`` so the two sessions are configured identically; neither the
API nor the pipeline touches onnxruntime directly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import onnxruntime as ort
from onnxruntime.capi import onnxruntime_pybind11_state as ort_state

from deepfer.errors import ModelLoadError

# What ORT raises for an unreadable, truncated or invalid file: its own classes, not subclasses of RuntimeError.
_LOAD_ERRORS = (
    RuntimeError,
    ValueError,
    ort_state.Fail,
    ort_state.InvalidArgument,
    ort_state.InvalidGraph,
    ort_state.InvalidProtobuf,
    ort_state.NoSuchFile,
    ort_state.NoModel,
    ort_state.NotImplemented,
    ort_state.RuntimeException,
)

Provider = Literal["auto", "cpu", "cuda"]


def providers_for(choice: Provider) -> list[str]:
    """ORT provider list for a setting; CUDA is used only when onnxruntime-gpu actually offers it.

    ``auto`` falls back to CPU silently (the common case); an explicit ``cuda`` without a CUDA build is a
    configuration mistake and fails startup instead of quietly running 10x slower.
    """
    available = ort.get_available_providers()
    has_cuda = "CUDAExecutionProvider" in available
    if choice == "cuda" and not has_cuda:
        raise ModelLoadError(f"execution_provider=cuda but this onnxruntime offers only {available}")
    if choice != "cpu" and has_cuda:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def open_session(path: Path, *, provider: Provider, intra_op_threads: int) -> ort.InferenceSession:
    """Load one model file, failing with a message that names the file and the reason.

    Spinning is turned off: with it on, idle ORT threads busy-wait between runs and steal the core that the
    decoder, the detector and the event loop need (83 vs 138 images/s served on the 2-core host of 2026-11).
    """
    if not path.is_file():
        raise ModelLoadError(f"model file not found: {path}")
    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(str(path), sess_options=options, providers=providers_for(provider))
    except _LOAD_ERRORS as error:
        raise ModelLoadError(f"cannot load model {path}: {error}") from None
    # onnxruntime-gpu lists CUDA as available even where no GPU or CUDA library is usable, then quietly falls
    # back to the CPU when the session is created: an explicit ``cuda`` must notice that and refuse.
    if provider == "cuda" and session.get_providers()[0] != "CUDAExecutionProvider":
        raise ModelLoadError(
            f"execution_provider=cuda but the CUDA provider failed to load for {path}; "
            f"the session fell back to {session.get_providers()}"
        )
    return session
