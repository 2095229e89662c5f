"""A small typed client for the DeepFER HTTP API: ``Client`` (sync) and ``AsyncClient``, both on httpx.

    with Client("http://127.0.0.1:8000", api_key="...") as client:
        result = client.predict("photo.jpg")          # or bytes, or an H x W x 3 BGR uint8 array
        for face in result.faces:
            print(face.box, face.emotion, face.probabilities.happy)
        batch = client.predict_batch(["a.jpg", "b.png"])   # one request; a bad file is its own error entry
        client.model().version, client.ready().ready

        with client.stream() as stream:                  # WS /stream: one camera, results with track ids
            stream.ready.limits.max_fps
            for message in stream.results(frames):       # frames: any iterable of images, sent at most max_fps
                ...                                      # one answer per frame: a StreamResult, a StreamError
                                                         # for a bad frame, or a StreamFrameDropped

The package, by module: ``core`` (errors, retry policy, image encoding, every endpoint described once as a
``Call``), ``rest`` (``Client`` and ``AsyncClient``: how a call is sent), ``stream`` (``WS /stream``).

Answers are the service's own response models (``deepfer.wire``), so a field renamed on the server breaks
here at once instead of silently. A 503 (the server's bounded queue is full) is retried after the
``Retry-After`` it names, a bounded number of times and never longer than ``max_retry_wait_s`` per wait;
every other failure raises ``DeepFERClientError`` with the server's error code and message, and a service that
cannot be reached raises ``ServiceUnreachableError`` (a ``DeepFERClientError``) naming the URL. The retry policy is
written once (``core.retrying``); each client only sends and sleeps its own way.

A stream (``WS /stream``, protocol in ``deepfer.server.stream``) speaks through ``websockets``, whose sync and
asyncio clients mirror each other as httpx's do. The server's close codes become ``StreamClosedError`` (``status``
the close code, ``code`` its name, ``message`` the server's reason). The server answers every frame, in order: a
frame it cannot read is a ``StreamError``, one it did not analyse a ``StreamFrameDropped`` (with why), and the
stream goes on; so a loop waiting for answers always gets one.

Needs only httpx, websockets, pydantic and numpy (``pip install deepfer``): OpenCV is imported only to send a
numpy array.
"""

from __future__ import annotations

from deepfer.client.core import DeepFERClientError, ImageInput, RetryPolicy, ServiceUnreachableError, encode_image
from deepfer.client.rest import AsyncClient, Client
from deepfer.client.stream import AsyncStream, Stream, StreamAnswer, StreamClosedError, stream_url
from deepfer.wire import StreamError, StreamFrameDropped, StreamReady, StreamResult  # what a stream answers

__all__ = [
    "AsyncClient",
    "AsyncStream",
    "Client",
    "DeepFERClientError",
    "ImageInput",
    "RetryPolicy",
    "ServiceUnreachableError",
    "Stream",
    "StreamAnswer",
    "StreamClosedError",
    "StreamError",
    "StreamFrameDropped",
    "StreamReady",
    "StreamResult",
    "encode_image",
    "stream_url",
]
