"""``Client`` (sync) and ``AsyncClient``: the REST calls of ``deepfer.client.core`` sent with httpx, and a door
to the stream (``deepfer.client.stream``)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import httpx

from deepfer.client.core import (
    MODEL_CALL,
    READY_CALL,
    Answer,
    AsyncClosing,
    Call,
    Closing,
    ImageInput,
    PredictOptions,
    RetryPolicy,
    ServiceUnreachableError,
    auth_headers,
    batch_call,
    predict_call,
    retrying,
)
from deepfer.client.stream import AsyncStream, Stream, open_async_stream, open_stream
from deepfer.wire import BatchResponse, ModelResponse, PredictResponse, Readiness


class Client(Closing):
    """Synchronous client; one connection pool per instance, so reuse it (or use it as a context manager)."""

    def __init__(
        self,
        url: str,
        api_key: str | None = None,
        *,
        timeout_s: float = 30.0,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.url = url
        self.retry = retry or RetryPolicy()
        self._api_key = api_key
        self._timeout_s = timeout_s
        self._http = httpx.Client(base_url=url, headers=auth_headers(api_key), timeout=timeout_s)

    def predict(
        self,
        image: ImageInput,
        *,
        detect: bool = True,
        max_faces: int | None = None,
        min_face_size: int | None = None,
        min_score: float | None = None,
        min_sharpness: float | None = None,
    ) -> PredictResponse:
        """Faces, boxes and seven probabilities for one image (``POST /predict``)."""
        return self._send(
            predict_call(image, PredictOptions(detect, max_faces, min_face_size, min_score, min_sharpness))
        )

    def predict_batch(
        self,
        images: Sequence[ImageInput],
        *,
        detect: bool = True,
        max_faces: int | None = None,
        min_face_size: int | None = None,
        min_score: float | None = None,
        min_sharpness: float | None = None,
    ) -> BatchResponse:
        """Several images in one request (``POST /predict/batch``): one entry per image, in order; a file the
        server refuses is an entry with ``error`` set, not an exception."""
        return self._send(
            batch_call(images, PredictOptions(detect, max_faces, min_face_size, min_score, min_sharpness))
        )

    def model(self) -> ModelResponse:
        """The served model file, its own accuracy, labels and training record (``GET /model``)."""
        return self._send(MODEL_CALL)

    def ready(self) -> Readiness:
        """Whether the service takes traffic (``GET /readyz``); not ready (warming up, draining) is an answer."""
        return self._send(READY_CALL)

    def stream(self) -> Stream:
        """Open ``WS /stream``: the key sent (when this client has one) and the server's ready message read.

        Use it as a context manager, which closes the stream; ``StreamClosedError`` if the server refuses it.
        """
        return open_stream(self.url, self._api_key, self._timeout_s)

    def _send(self, call: Call[Answer]) -> Answer:
        steps = retrying(call, self.retry)
        wait = next(steps)
        while True:
            time.sleep(wait)
            try:
                wait = steps.send(self._request(call))
            except StopIteration as done:
                # The generator's return value: typed Answer by ``retrying``, Any on StopIteration itself.
                return done.value  # type: ignore[no-any-return]

    def _request(self, call: Call[Answer]) -> httpx.Response:
        try:
            return self._http.request(call.method, call.path, params=call.params, files=call.files)
        except httpx.TransportError as error:
            raise ServiceUnreachableError(self.url, error) from error

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()


class AsyncClient(AsyncClosing):
    """The same client for asyncio code: ``await client.predict(...)``; retries sleep without blocking the loop."""

    def __init__(
        self,
        url: str,
        api_key: str | None = None,
        *,
        timeout_s: float = 30.0,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.url = url
        self.retry = retry or RetryPolicy()
        self._api_key = api_key
        self._timeout_s = timeout_s
        self._http = httpx.AsyncClient(base_url=url, headers=auth_headers(api_key), timeout=timeout_s)

    async def predict(
        self,
        image: ImageInput,
        *,
        detect: bool = True,
        max_faces: int | None = None,
        min_face_size: int | None = None,
        min_score: float | None = None,
        min_sharpness: float | None = None,
    ) -> PredictResponse:
        """Faces, boxes and seven probabilities for one image (``POST /predict``)."""
        return await self._send(
            predict_call(image, PredictOptions(detect, max_faces, min_face_size, min_score, min_sharpness))
        )

    async def predict_batch(
        self,
        images: Sequence[ImageInput],
        *,
        detect: bool = True,
        max_faces: int | None = None,
        min_face_size: int | None = None,
        min_score: float | None = None,
        min_sharpness: float | None = None,
    ) -> BatchResponse:
        """Several images in one request (``POST /predict/batch``); see ``Client.predict_batch``."""
        return await self._send(
            batch_call(images, PredictOptions(detect, max_faces, min_face_size, min_score, min_sharpness))
        )

    async def model(self) -> ModelResponse:
        """The served model file, its own accuracy, labels and training record (``GET /model``)."""
        return await self._send(MODEL_CALL)

    async def ready(self) -> Readiness:
        """Whether the service takes traffic (``GET /readyz``); not ready (warming up, draining) is an answer."""
        return await self._send(READY_CALL)

    async def stream(self) -> AsyncStream:
        """Open ``WS /stream`` (see ``Client.stream``): ``async with await client.stream() as stream:``."""
        return await open_async_stream(self.url, self._api_key, self._timeout_s)

    async def _send(self, call: Call[Answer]) -> Answer:
        steps = retrying(call, self.retry)
        wait = next(steps)
        while True:
            await asyncio.sleep(wait)
            try:
                wait = steps.send(await self._request(call))
            except StopIteration as done:
                # As in Client._send: the generator's return value, typed by ``retrying``.
                return done.value  # type: ignore[no-any-return]

    async def _request(self, call: Call[Answer]) -> httpx.Response:
        try:
            return await self._http.request(call.method, call.path, params=call.params, files=call.files)
        except httpx.TransportError as error:
            raise ServiceUnreachableError(self.url, error) from error

    async def close(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()
