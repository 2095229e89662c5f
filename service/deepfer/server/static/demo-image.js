// Image mode: a chosen, dropped or pasted file is shown and sent to POST /predict, and its faces drawn.

import { predict } from "./demo-api.js";
import { photoView, render } from "./demo-results.js";
import { setStatus, ui } from "./demo-ui.js";

let photoUrl = null;

async function analyseFile(file, showImageTab) {
  if (!file || !file.type.startsWith("image/")) {
    setStatus("Please choose an image file (JPEG, PNG, WebP or BMP).", true);
    return;
  }
  showImageTab();
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

/** Listen for files from the chooser, a drop anywhere on the page, or a paste; `showImageTab` brings the image
 * tab forward (stopping the camera) before an analysis. */
export function wireImageMode(showImageTab) {
  ui.choose.addEventListener("click", () => ui.fileInput.click());
  ui.fileInput.addEventListener("change", () => {
    const file = ui.fileInput.files[0];
    // Cleared so that picking the same file again (say, after entering the API key) analyses it again.
    ui.fileInput.value = "";
    analyseFile(file, showImageTab);
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
    analyseFile(event.dataTransfer?.files[0], showImageTab);
  });
  document.addEventListener("paste", (event) => {
    const file = [...(event.clipboardData?.files ?? [])].find((f) => f.type.startsWith("image/"));
    if (file) analyseFile(file, showImageTab);
  });
}
