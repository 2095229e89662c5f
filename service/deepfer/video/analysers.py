"""Where a frame is analysed: in this process (the service's own pipeline) or by a running service (``--url``).

Both return the API's own ``PredictResponse``, so a row is the same whichever way the frame went, and both see
the frame's exact pixels: the local one hands the decoded array straight to ``Pipeline.analyze_image``, the
remote one uploads it losslessly (PNG).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import numpy as np
from numpy.typing import NDArray

from deepfer.client import AsyncClient
from deepfer.engine.answers import predict_response
from deepfer.engine.pipeline import Options, open_pipeline
from deepfer.metrics import Metrics
from deepfer.settings import Settings
from deepfer.wire import PredictResponse

#: One BGR frame (H x W x 3 uint8) -> the API's answer for it (faces largest first), locally or over HTTP.
FrameAnalyser = Callable[[NDArray[np.uint8]], Awaitable[PredictResponse]]


@asynccontextmanager
async def local_analyser(settings: Settings) -> AsyncIterator[FrameAnalyser]:
    """Frames through the service's own pipeline in this process: the models, batcher and code of ``/predict``."""
    async with open_pipeline(settings, Metrics()) as pipeline:

        async def analyse(frame: NDArray[np.uint8]) -> PredictResponse:
            return predict_response(await pipeline.analyze_image(frame, Options()))

        yield analyse


@asynccontextmanager
async def remote_analyser(url: str, api_key: str | None = None) -> AsyncIterator[FrameAnalyser]:
    """Frames sent to a running service (``--url``), one request each, 503s retried after their Retry-After by the
    client; ``analyse_video`` keeps several requests in flight, so they meet in the server's batches."""
    async with AsyncClient(url, api_key) as client:
        yield client.predict
