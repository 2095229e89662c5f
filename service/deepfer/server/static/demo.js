// DeepFER browser demo: plain JavaScript, no build step, no third-party code.
//
// Why the overlay is made of positioned elements rather than canvas drawing: boxes placed in percent of the
// analysed image stay aligned however the page is resized, screen readers can read them, and the browser
// tests can compare what is drawn with the API's answer through the data-* attributes set here.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const ui = {
    apiKey: $("api-key"),
    tabs: [$("tab-image"), $("tab-live")],
    choose: $("choose"),
    fileInput: $("file-input"),
    dropZone: $("drop-zone"),
    liveToggle: $("live-toggle"),
    liveRate: $("live-rate"),
    fps: $("fps"),
    liveState: $("live-state"),
    status: $("status"),
    stage: $("stage"),
    photo: $("photo"),
    camera: $("camera"),
    overlay: $("overlay"),
    caption: $("caption"),
    faceList: $("face-list"),
    modelInfo: $("model-info"),
  };
  const KEY_STORAGE = "deepfer-api-key";
  // Live frames are downscaled to this width before upload: a smaller JPEG keeps the round trip short, and the
  // service detects on a 512 px copy anyway while it crops faces from the full 640 px frame.
  const LIVE_MAX_WIDTH = 640;
  const FPS_WINDOW_MS = 3000;

  // ---- talking to the service ---------------------------------------------------------------------------

  function authHeaders() {
    const key = ui.apiKey.value.trim();
    return key ? { "X-API-Key": key } : {};
  }

  /** POST one image to /predict; resolves to {ok, status, data, message}, never rejects. */
  async function predict(blob, name) {
    const form = new FormData();
    form.append("file", blob, name);
    let response;
    try {
      response = await fetch("predict", { method: "POST", body: form, headers: authHeaders() });
    } catch (error) {
      return { ok: false, status: 0, message: `Could not reach the service (${error.message}).` };
    }
    let body = null;
    try {
      body = await response.json();
    } catch {
      body = null;
    }
    if (response.ok && body) {
      return { ok: true, status: response.status, data: body };
    }
    const message = body?.error?.message ?? body?.detail ?? `The service answered ${response.status}.`;
    return { ok: false, status: response.status, message };
  }

  async function showModelInfo() {
    try {
      const response = await fetch("model", { headers: authHeaders() });
      if (!response.ok) return;
      const model = await response.json();
      const name = model.name ?? model.model?.name;
      const version = model.version ?? model.model?.version;
      if (name) ui.modelInfo.textContent = `Model: ${name}${version ? ` ${version}` : ""}`;
    } catch {
      // The footer is a courtesy; the demo works without it.
    }
  }

  // ---- drawing results ----------------------------------------------------------------------------------

  const percent = (value) => `${(value * 100).toFixed(1)}%`;

  // What is drawn for one face, from /predict's answer (numbered in the API's order) or from a stream result
  // (named by track, with the track's smoothed probabilities: they change smoothly, the raw ones flicker).
  const photoView = (face, index) => ({
    name: `Face ${index + 1}`,
    tag: String(index + 1),
    emotion: face.emotion,
    probabilities: face.probabilities,
    box: face.box,
    data: { index: String(index) },
  });

  const trackView = (face) =>
    face.track_id === null
      ? { name: "New face", tag: "new", emotion: face.emotion, box: face.box, data: {} }
      : {
          name: `Track ${face.track_id}`,
          tag: `#${face.track_id}`,
          emotion: face.smoothed_emotion,
          probabilities: face.smoothed,
          box: face.box,
          data: { trackId: String(face.track_id) },
        };

  const viewLabel = (view) =>
    view.probabilities
      ? `${view.name}: ${view.emotion} (${percent(view.probabilities[view.emotion])})`
      : `${view.name}: ${view.emotion}`;

  function drawBoxes(views, width, height) {
    const boxes = views.map((view) => {
      const { x, y, width: w, height: h } = view.box;
      const box = document.createElement("div");
      box.className = "box";
      Object.assign(box.dataset, view.data, { emotion: view.emotion, x, y, width: w, height: h });
      box.style.left = `${(100 * x) / width}%`;
      box.style.top = `${(100 * y) / height}%`;
      box.style.width = `${(100 * w) / width}%`;
      box.style.height = `${(100 * h) / height}%`;
      box.setAttribute("role", "img");
      box.setAttribute("aria-label", viewLabel(view));
      const tag = document.createElement("span");
      tag.className = "tag";
      tag.textContent = `${view.tag} ${view.emotion}`;
      box.append(tag);
      return box;
    });
    ui.overlay.replaceChildren(...boxes);
    ui.overlay.dataset.imageWidth = String(width);
    ui.overlay.dataset.imageHeight = String(height);
  }

  function probabilityRow(emotion, probability, isTop) {
    const row = document.createElement("li");
    row.className = isTop ? "prob top" : "prob";
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = emotion;
    const bar = document.createElement("div");
    bar.className = "bar";
    bar.dataset.emotion = emotion;
    bar.dataset.probability = String(probability);
    bar.setAttribute("role", "meter");
    bar.setAttribute("aria-label", emotion);
    bar.setAttribute("aria-valuemin", "0");
    bar.setAttribute("aria-valuemax", "100");
    bar.setAttribute("aria-valuenow", (probability * 100).toFixed(1));
    const fill = document.createElement("div");
    fill.className = "fill";
    fill.style.width = `${probability * 100}%`;
    bar.append(fill);
    const value = document.createElement("span");
    value.className = "value";
    value.textContent = percent(probability);
    row.append(name, bar, value);
    return row;
  }

  function listFaces(views) {
    const items = views.map((view) => {
      const item = document.createElement("li");
      item.className = "face";
      Object.assign(item.dataset, view.data, { emotion: view.emotion });
      const heading = document.createElement("h3");
      heading.textContent = viewLabel(view);
      const bars = document.createElement("ol");
      bars.className = "probs";
      // The service sends the seven probabilities in the model's label order; keep that order.
      for (const [emotion, probability] of Object.entries(view.probabilities)) {
        bars.append(probabilityRow(emotion, probability, emotion === view.emotion));
      }
      item.append(heading, bars);
      return item;
    });
    ui.faceList.replaceChildren(...items);
  }

  let renderCount = 0;

  /** Boxes for every face; bars for those with probabilities to show (all but a stream's not-yet-tracked). */
  function render(views, width, height) {
    drawBoxes(views, width, height);
    listFaces(views.filter((view) => view.probabilities));
    renderCount += 1;
    ui.overlay.dataset.faces = String(views.length);
    ui.overlay.dataset.renders = String(renderCount);
    const n = views.length;
    ui.caption.textContent = n === 0 ? "No face found." : `${n} face${n === 1 ? "" : "s"} found.`;
  }

  function setStatus(message, isError = false) {
    ui.status.textContent = message;
    ui.status.classList.toggle("error", isError);
  }

  // ---- image mode ---------------------------------------------------------------------------------------

  let photoUrl = null;

  async function analyseFile(file) {
    if (!file || !file.type.startsWith("image/")) {
      setStatus("Please choose an image file (JPEG, PNG, WebP or BMP).", true);
      return;
    }
    selectTab(ui.tabs[0]);
    if (photoUrl) URL.revokeObjectURL(photoUrl);
    photoUrl = URL.createObjectURL(file);
    ui.photo.src = photoUrl;
    ui.photo.alt = `The analysed image: ${file.name}`;
    ui.photo.hidden = false;
    ui.camera.hidden = true;
    ui.stage.hidden = false;
    ui.overlay.replaceChildren();
    ui.faceList.replaceChildren();
    ui.stage.setAttribute("aria-busy", "true");
    setStatus(`Analysing ${file.name}…`);
    const started = performance.now();
    const outcome = await predict(file, file.name);
    ui.stage.removeAttribute("aria-busy");
    if (!outcome.ok) {
      ui.caption.textContent = "";
      reportFailure(outcome);
      return;
    }
    render(outcome.data.faces.map(photoView), outcome.data.image.width, outcome.data.image.height);
    const n = outcome.data.faces.length;
    const ms = Math.round(performance.now() - started);
    setStatus(`${n} face${n === 1 ? "" : "s"} found in ${file.name} (${ms} ms).`);
  }

  function reportFailure(outcome) {
    if (outcome.status === 401 || outcome.status === 403) {
      setStatus("This service needs a valid API key: enter it above, then try again.", true);
      ui.apiKey.focus();
    } else {
      setStatus(outcome.message, true);
    }
  }

  ui.choose.addEventListener("click", () => ui.fileInput.click());
  ui.fileInput.addEventListener("change", () => {
    const file = ui.fileInput.files[0];
    // Cleared so that picking the same file again (say, after entering the API key) analyses it again.
    ui.fileInput.value = "";
    analyseFile(file);
  });
  // Dropping anywhere on the page works: the drop zone is only the visible hint.
  document.addEventListener("dragover", (event) => {
    event.preventDefault();
    ui.dropZone.classList.add("dragging");
  });
  document.addEventListener("dragleave", (event) => {
    if (event.relatedTarget === null) ui.dropZone.classList.remove("dragging");
  });
  document.addEventListener("drop", (event) => {
    event.preventDefault();
    ui.dropZone.classList.remove("dragging");
    analyseFile(event.dataTransfer?.files[0]);
  });
  document.addEventListener("paste", (event) => {
    const file = [...(event.clipboardData?.files ?? [])].find((f) => f.type.startsWith("image/"));
    if (file) analyseFile(file);
  });

  // ---- live mode: WS /stream ----------------------------------------------------------------------------
  //
  // One frame in flight: the next is captured when the previous one's answer arrives (the server answers every
  // frame: a result, an error, or "dropped"), and no sooner than 1/rate (nor the server's max_fps) after the
  // previous send, so a slow server lowers the frame rate instead of growing a queue. A dropped connection (a
  // server restart) is retried with backoff and sending resumes; a refused key or a protocol error is shown and
  // not retried, since retrying cannot fix it.

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

  const live = { camera: null, running: false, socket: null, timer: 0, attempt: 0, doneAt: [] };
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
    reconnectLater(`The stream closed (${reason})`);
  }

  function reconnectLater(why) {
    const delay = BACKOFF_MS[Math.min(live.attempt, BACKOFF_MS.length - 1)];
    live.attempt += 1;
    setStreamState("reconnecting", `${why}; reconnecting in ${(delay / 1000).toFixed(1)} s…`, true);
    live.timer = setTimeout(connectStream, delay);
  }

  async function connectStream() {
    if (!live.running) return;
    setStreamState("connecting", "Connecting to the stream…");
    let needsKey;
    try {
      needsKey = await serviceNeedsKey();
    } catch (error) {
      if (live.running) reconnectLater(`Could not reach the service (${error.message})`);
      return;
    }
    if (!live.running) return;
    const key = ui.apiKey.value.trim();
    if (needsKey && !key) {
      stopLive();
      setStreamState("error", "This service needs an API key: enter it above, then start the camera again.", true);
      ui.apiKey.focus();
      return;
    }
    const socket = new WebSocket(streamUrl());
    const stream = { socket, sent: 0, sizes: new Map(), lastSentAt: -Infinity, minGapMs: 0 };
    live.socket = socket;
    socket.addEventListener("open", () => {
      if (needsKey) socket.send(JSON.stringify({ api_key: key }));
    });
    socket.addEventListener("message", (event) => onStreamMessage(stream, event));
    socket.addEventListener("close", (event) => onStreamClose(stream, event));
  }

  async function startLive() {
    if (!navigator.mediaDevices?.getUserMedia) {
      setStatus("This browser offers no camera access (it needs https or localhost).", true);
      return;
    }
    try {
      live.camera = await navigator.mediaDevices.getUserMedia({
        video: { width: { ideal: 640 }, height: { ideal: 480 } },
        audio: false,
      });
    } catch (error) {
      setStatus(`The camera could not be opened: ${error.message}`, true);
      return;
    }
    ui.camera.srcObject = live.camera;
    await ui.camera.play();
    ui.photo.hidden = true;
    ui.camera.hidden = false;
    ui.stage.hidden = false;
    ui.overlay.replaceChildren();
    ui.faceList.replaceChildren();
    live.running = true;
    live.attempt = 0;
    live.doneAt = [];
    ui.liveToggle.textContent = "Stop camera";
    ui.liveToggle.setAttribute("aria-pressed", "true");
    connectStream();
  }

  function stopLive() {
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

  ui.liveToggle.addEventListener("click", () => {
    if (live.running) {
      stopLive();
      setStatus("Live stopped.");
    } else {
      startLive();
    }
  });

  // ---- tabs (WAI-ARIA tabs pattern: arrow keys, Home and End move between tabs) --------------------------

  function selectTab(tab) {
    for (const other of ui.tabs) {
      const selected = other === tab;
      other.setAttribute("aria-selected", String(selected));
      other.tabIndex = selected ? 0 : -1;
      $(other.getAttribute("aria-controls")).hidden = !selected;
    }
    if (tab !== ui.tabs[1] && live.running) {
      stopLive();
      setStatus("Live stopped.");
    }
  }

  for (const tab of ui.tabs) {
    tab.addEventListener("click", () => selectTab(tab));
    tab.addEventListener("keydown", (event) => {
      const index = ui.tabs.indexOf(tab);
      const last = ui.tabs.length - 1;
      const target = {
        ArrowRight: index === last ? 0 : index + 1,
        ArrowLeft: index === 0 ? last : index - 1,
        Home: 0,
        End: last,
      }[event.key];
      if (target === undefined) return;
      event.preventDefault();
      ui.tabs[target].focus();
      selectTab(ui.tabs[target]);
    });
  }

  // ---- API key: kept for this browser tab only ----------------------------------------------------------

  ui.apiKey.value = sessionStorage.getItem(KEY_STORAGE) ?? "";
  ui.apiKey.addEventListener("change", () => {
    sessionStorage.setItem(KEY_STORAGE, ui.apiKey.value.trim());
    showModelInfo();
  });
  showModelInfo();
})();
