// Live mode: the camera's frames over WS /stream, drawn with their tracks.
//
// One frame in flight: the next is captured when the previous one's answer arrives (the server answers every
// frame: a result, an error, or "dropped"), and no sooner than 1/rate (nor the server's max_fps) after the
// previous send, so a slow server lowers the frame rate instead of growing a queue. A dropped connection (a
// server restart) is retried with backoff and sending resumes; a refused key or a protocol error is shown and
// not retried, since retrying cannot fix it.

import { render, trackView } from "./demo-results.js";
import { setStatus, ui } from "./demo-ui.js";

// Live frames are downscaled to this width before upload: a smaller JPEG keeps the round trip short, and the
// service detects on a 512 px copy anyway while it crops faces from the full 640 px frame.
const LIVE_MAX_WIDTH = 640;
const FPS_WINDOW_MS = 3000;

const BACKOFF_MS = [500, 1000, 2000, 4000, 8000];
// Close codes after which a reconnect would fail the same way (see service/deepfer/server/stream.py).
const FINAL_CLOSES = {
  4401: "The service refused the API key",
  1003: "The service refused what the page sent",
  1007: "The service refused what the page sent",
  1008: "The service refused what the page sent",
  1009: "The frame was too large for the service",
};

// Close codes that come without a reason of their own (RFC 6455); the service's own codes carry one.
const CLOSE_NAMES = { 1001: "going away", 1006: "connection lost", 1011: "server error", 1012: "service restart" };

// `session` numbers each start of live mode. Whatever resumes after an await (a granted camera, the key check before
// a connection) goes on only while its session is the current one: after a stop, or a stop and a new start, it does
// nothing, and a camera it was granted is closed.
const live = { camera: null, running: false, session: 0, socket: null, timer: 0, attempt: 0, doneAt: [] };
const isCurrent = (session) => live.running && live.session === session;
const grabber = document.createElement("canvas");

function setStreamState(state, message, isError = false) {
  ui.liveState.textContent = state;
  ui.liveState.dataset.state = state;
  setStatus(message, isError);
}

function captureFrame() {
  const scale = Math.min(1, LIVE_MAX_WIDTH / ui.camera.videoWidth);
  grabber.width = Math.round(ui.camera.videoWidth * scale);
  grabber.height = Math.round(ui.camera.videoHeight * scale);
  grabber.getContext("2d").drawImage(ui.camera, 0, 0, grabber.width, grabber.height);
  const size = { width: grabber.width, height: grabber.height };
  return new Promise((resolve) => grabber.toBlob((blob) => resolve({ blob, size }), "image/jpeg", 0.85));
}

function recordFrameDone() {
  const now = performance.now();
  live.doneAt.push(now);
  while (live.doneAt[0] < now - FPS_WINDOW_MS) live.doneAt.shift();
  const span = now - live.doneAt[0];
  if (live.doneAt.length >= 2 && span > 0) {
    const fps = ((live.doneAt.length - 1) * 1000) / span;
    ui.fps.value = fps.toFixed(1);
    ui.fps.dataset.value = fps.toFixed(2);
  }
}

/** Whether the service has API keys: /model is behind the key check, so it answers 401 without one. */
async function serviceNeedsKey() {
  const response = await fetch("model");
  return response.status === 401;
}

function streamUrl() {
  const url = new URL("stream", location.href);
  url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  return url.href;
}

/** Send one frame once the gap (1/rate, or the server's 1/max_fps) has passed. */
function scheduleFrame(stream) {
  clearTimeout(live.timer);
  const gapMs = Math.max(1000 / Number(ui.liveRate.value), stream.minGapMs);
  const wait = Math.max(0, stream.lastSentAt + gapMs - performance.now());
  live.timer = setTimeout(async () => {
    if (live.socket !== stream.socket || stream.socket.readyState !== WebSocket.OPEN) return;
    const { blob, size } = await captureFrame();
    if (!blob || live.socket !== stream.socket || stream.socket.readyState !== WebSocket.OPEN) return;
    stream.sizes.set(stream.sent, size);
    stream.sent += 1;
    stream.lastSentAt = performance.now();
    stream.socket.send(blob);
  }, wait);
}

function onStreamMessage(stream, event) {
  const message = JSON.parse(event.data);
  if (message.type === "ready") {
    live.attempt = 0;
    stream.minGapMs = 1000 / message.limits.max_fps;
    setStreamState("live", "Live: analysing the camera on the stream.");
  } else if (message.type === "result") {
    const size = stream.sizes.get(message.seq);
    for (const seq of stream.sizes.keys()) if (seq <= message.seq) stream.sizes.delete(seq);
    const views = message.faces
      .map(trackView)
      .sort((a, b) => (Number(a.data.trackId) || Infinity) - (Number(b.data.trackId) || Infinity));
    render(views, size.width, size.height);
    ui.overlay.dataset.seq = String(message.seq);
    recordFrameDone();
  } else if (message.type === "error") {
    stream.sizes.delete(message.seq);
    setStatus(`Frame ${message.seq}: ${message.error.message}`, true);
  } else if (message.type === "dropped") {
    stream.sizes.delete(message.seq);
  } else {
    return;
  }
  scheduleFrame(stream);
}

function onStreamClose(stream, event) {
  if (live.socket !== stream.socket) return;
  live.socket = null;
  clearTimeout(live.timer);
  if (!live.running) return;
  const why = event.reason || CLOSE_NAMES[event.code];
  const reason = why ? `${event.code} ${why}` : String(event.code);
  const final = FINAL_CLOSES[event.code];
  if (final) {
    stopLive();
    const badKey = event.code === 4401;
    const advice = badKey ? " Enter the right key above, then start the camera again." : "";
    setStreamState("error", `${final} (${reason}).${advice}`, true);
    if (badKey) ui.apiKey.focus();
    return;
  }
  reconnectLater(`The stream closed (${reason})`, stream.session);
}

function reconnectLater(why, session) {
  const delay = BACKOFF_MS[Math.min(live.attempt, BACKOFF_MS.length - 1)];
  live.attempt += 1;
  setStreamState("reconnecting", `${why}; reconnecting in ${(delay / 1000).toFixed(1)} s…`, true);
  live.timer = setTimeout(() => connectStream(session), delay);
}

async function connectStream(session) {
  if (!isCurrent(session)) return;
  setStreamState("connecting", "Connecting to the stream…");
  let needsKey;
  try {
    needsKey = await serviceNeedsKey();
  } catch (error) {
    if (isCurrent(session)) reconnectLater(`Could not reach the service (${error.message})`, session);
    return;
  }
  if (!isCurrent(session)) return;
  const key = ui.apiKey.value.trim();
  if (needsKey && !key) {
    stopLive();
    setStreamState("error", "This service needs an API key: enter it above, then start the camera again.", true);
    ui.apiKey.focus();
    return;
  }
  const socket = new WebSocket(streamUrl());
  const stream = { session, socket, sent: 0, sizes: new Map(), lastSentAt: -Infinity, minGapMs: 0 };
  live.socket = socket;
  socket.addEventListener("open", () => {
    if (needsKey) socket.send(JSON.stringify({ api_key: key }));
  });
  socket.addEventListener("message", (event) => onStreamMessage(stream, event));
  socket.addEventListener("close", (event) => onStreamClose(stream, event));
}

/** Live mode is on from the click, not from when the browser grants the camera: a permission prompt can take
 * seconds, and a second click (or the image tab) in that time must stop it rather than open a second camera. */
async function startLive() {
  if (!navigator.mediaDevices?.getUserMedia) {
    setStatus("This browser offers no camera access (it needs https or localhost).", true);
    return;
  }
  live.running = true;
  live.session += 1;
  const session = live.session;
  ui.liveToggle.textContent = "Stop camera";
  ui.liveToggle.setAttribute("aria-pressed", "true");
  setStreamState("starting", "Opening the camera…");
  let camera;
  try {
    camera = await navigator.mediaDevices.getUserMedia({
      video: { width: { ideal: 640 }, height: { ideal: 480 } },
      audio: false,
    });
  } catch (error) {
    if (isCurrent(session)) failToStart(`The camera could not be opened: ${error.message}`);
    return;
  }
  if (!isCurrent(session)) {
    camera.getTracks().forEach((track) => track.stop());
    return;
  }
  live.camera = camera;
  ui.camera.srcObject = camera;
  try {
    await ui.camera.play();
  } catch (error) {
    // Stopping while the video starts aborts play(); only a play that fails on its own is reported.
    if (isCurrent(session)) failToStart(`The camera could not be shown: ${error.message}`);
    return;
  }
  if (!isCurrent(session)) return;
  ui.photo.hidden = true;
  ui.camera.hidden = false;
  ui.stage.hidden = false;
  ui.overlay.replaceChildren();
  ui.faceList.replaceChildren();
  live.attempt = 0;
  live.doneAt = [];
  connectStream(session);
}

function failToStart(message) {
  stopLive();
  setStreamState("error", message, true);
}

export function stopLive() {
  live.running = false;
  clearTimeout(live.timer);
  const socket = live.socket;
  live.socket = null;
  socket?.close(1000, "camera stopped");
  live.camera?.getTracks().forEach((track) => track.stop());
  live.camera = null;
  ui.camera.srcObject = null;
  ui.liveToggle.textContent = "Start camera";
  ui.liveToggle.setAttribute("aria-pressed", "false");
  ui.liveState.textContent = "stopped";
  ui.liveState.dataset.state = "stopped";
  ui.fps.value = "–";
  delete ui.fps.dataset.value;
}

/** Whether live mode is on, from the click (the camera may still be opening); the image tab stops it. */
export const isLive = () => live.running;

export function wireLiveMode() {
  ui.liveToggle.addEventListener("click", () => {
    if (live.running) {
      stopLive();
      setStatus("Live stopped.");
    } else {
      startLive();
    }
  });
}
