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

  /** POST one image to /predict; resolves to {ok, status, data, message, retryAfterS}, never rejects. */
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
    const retryAfterS = Number(response.headers.get("Retry-After")) || 1;
    const message = body?.error?.message ?? body?.detail ?? `The service answered ${response.status}.`;
    return { ok: false, status: response.status, message, retryAfterS };
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

  function faceLabel(face, index) {
    return `Face ${index + 1}: ${face.emotion} (${percent(face.probabilities[face.emotion])})`;
  }

  function drawBoxes(result) {
    const { width, height } = result.image;
    const boxes = result.faces.map((face, index) => {
      const { x, y, width: w, height: h } = face.box;
      const box = document.createElement("div");
      box.className = "box";
      box.dataset.index = String(index);
      box.dataset.emotion = face.emotion;
      Object.assign(box.dataset, { x, y, width: w, height: h });
      box.style.left = `${(100 * x) / width}%`;
      box.style.top = `${(100 * y) / height}%`;
      box.style.width = `${(100 * w) / width}%`;
      box.style.height = `${(100 * h) / height}%`;
      box.setAttribute("role", "img");
      box.setAttribute("aria-label", faceLabel(face, index));
      const tag = document.createElement("span");
      tag.className = "tag";
      tag.textContent = `${index + 1} ${face.emotion}`;
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

  function listFaces(result) {
    const items = result.faces.map((face, index) => {
      const item = document.createElement("li");
      item.className = "face";
      item.dataset.index = String(index);
      item.dataset.emotion = face.emotion;
      const heading = document.createElement("h3");
      heading.textContent = faceLabel(face, index);
      const bars = document.createElement("ol");
      bars.className = "probs";
      // The service sends the seven probabilities in the model's label order; keep that order.
      for (const [emotion, probability] of Object.entries(face.probabilities)) {
        bars.append(probabilityRow(emotion, probability, emotion === face.emotion));
      }
      item.append(heading, bars);
      return item;
    });
    ui.faceList.replaceChildren(...items);
  }

  let renderCount = 0;

  function render(result) {
    drawBoxes(result);
    listFaces(result);
    renderCount += 1;
    ui.overlay.dataset.faces = String(result.faces.length);
    ui.overlay.dataset.renders = String(renderCount);
    const n = result.faces.length;
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
    render(outcome.data);
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

  // ---- live mode ----------------------------------------------------------------------------------------
  //
  // One request in flight at a time: the next frame is captured only after the previous answer arrived, and
  // no sooner than 1/rate after the previous capture began. A slow server therefore lowers the frame rate
  // instead of growing a queue, and a 503 waits for the Retry-After it names.

  const live = { stream: null, running: false, timer: 0, doneAt: [] };
  const grabber = document.createElement("canvas");

  function captureFrame() {
    const scale = Math.min(1, LIVE_MAX_WIDTH / ui.camera.videoWidth);
    grabber.width = Math.round(ui.camera.videoWidth * scale);
    grabber.height = Math.round(ui.camera.videoHeight * scale);
    grabber.getContext("2d").drawImage(ui.camera, 0, 0, grabber.width, grabber.height);
    return new Promise((resolve) => grabber.toBlob(resolve, "image/jpeg", 0.85));
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

  async function liveStep() {
    if (!live.running) return;
    const started = performance.now();
    let wait = 1000 / Number(ui.liveRate.value);
    const blob = await captureFrame();
    const outcome = blob ? await predict(blob, "frame.jpg") : { ok: false, status: 0, message: "No frame." };
    if (!live.running) return;
    if (outcome.ok) {
      render(outcome.data);
      recordFrameDone();
      wait -= performance.now() - started;
    } else if (outcome.status === 503) {
      setStatus(`Service busy; retrying in ${outcome.retryAfterS} s.`);
      wait = outcome.retryAfterS * 1000;
    } else {
      reportFailure(outcome);
      stopLive();
      return;
    }
    live.timer = setTimeout(liveStep, Math.max(0, wait));
  }

  async function startLive() {
    if (!navigator.mediaDevices?.getUserMedia) {
      setStatus("This browser offers no camera access (it needs https or localhost).", true);
      return;
    }
    try {
      live.stream = await navigator.mediaDevices.getUserMedia({
        video: { width: { ideal: 640 }, height: { ideal: 480 } },
        audio: false,
      });
    } catch (error) {
      setStatus(`The camera could not be opened: ${error.message}`, true);
      return;
    }
    ui.camera.srcObject = live.stream;
    await ui.camera.play();
    ui.photo.hidden = true;
    ui.camera.hidden = false;
    ui.stage.hidden = false;
    ui.overlay.replaceChildren();
    ui.faceList.replaceChildren();
    live.running = true;
    live.doneAt = [];
    ui.liveToggle.textContent = "Stop camera";
    ui.liveToggle.setAttribute("aria-pressed", "true");
    setStatus("Live: analysing the camera.");
    liveStep();
  }

  function stopLive() {
    live.running = false;
    clearTimeout(live.timer);
    live.stream?.getTracks().forEach((track) => track.stop());
    live.stream = null;
    ui.camera.srcObject = null;
    ui.liveToggle.textContent = "Start camera";
    ui.liveToggle.setAttribute("aria-pressed", "false");
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
