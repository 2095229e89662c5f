// The page's elements and its status line, shared by every part of the demo (demo.js wires them together).

export const $ = (id) => document.getElementById(id);
export const ui = {
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

export function setStatus(message, isError = false) {
  ui.status.textContent = message;
  ui.status.classList.toggle("error", isError);
}
