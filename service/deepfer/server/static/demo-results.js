// Drawing an answer: a positioned box per face over the image, and the seven probabilities of each as bars.
//
// Why the overlay is made of positioned elements rather than canvas drawing: boxes placed in percent of the
// analysed image stay aligned however the page is resized, screen readers can read them, and the browser
// tests can compare what is drawn with the API's answer through the data-* attributes set here.

import { ui } from "./demo-ui.js";

const percent = (value) => `${(value * 100).toFixed(1)}%`;

// What is drawn for one face, from /predict's answer (numbered in the API's order) or from a stream result
// (named by track, with the track's smoothed probabilities: they change smoothly, the raw ones flicker).
export const photoView = (face, index) => ({
  name: `Face ${index + 1}`,
  tag: String(index + 1),
  emotion: face.emotion,
  probabilities: face.probabilities,
  box: face.box,
  data: { index: String(index) },
});

export const trackView = (face) =>
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
export function render(views, width, height) {
  drawBoxes(views, width, height);
  listFaces(views.filter((view) => view.probabilities));
  renderCount += 1;
  ui.overlay.dataset.faces = String(views.length);
  ui.overlay.dataset.renders = String(renderCount);
  const n = views.length;
  ui.caption.textContent = n === 0 ? "No face found." : `${n} face${n === 1 ? "" : "s"} found.`;
}
