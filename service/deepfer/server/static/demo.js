// DeepFER browser demo: plain JavaScript modules, no build step, no third-party code. This one wires the parts
// together: demo-ui.js (the page's elements), demo-api.js (HTTP), demo-results.js (drawing an answer),
// demo-image.js (image mode) and demo-live.js (live mode over WS /stream).

import { showModelInfo } from "./demo-api.js";
import { wireImageMode } from "./demo-image.js";
import { isLive, stopLive, wireLiveMode } from "./demo-live.js";
import { $, setStatus, ui } from "./demo-ui.js";

const KEY_STORAGE = "deepfer-api-key";

// ---- tabs (WAI-ARIA tabs pattern: arrow keys, Home and End move between tabs) --------------------------

function selectTab(tab) {
  for (const other of ui.tabs) {
    const selected = other === tab;
    other.setAttribute("aria-selected", String(selected));
    other.tabIndex = selected ? 0 : -1;
    $(other.getAttribute("aria-controls")).hidden = !selected;
  }
  if (tab !== ui.tabs[1] && isLive()) {
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

wireImageMode(() => selectTab(ui.tabs[0]));
wireLiveMode();

// ---- API key: kept for this browser tab only ----------------------------------------------------------

ui.apiKey.value = sessionStorage.getItem(KEY_STORAGE) ?? "";
ui.apiKey.addEventListener("change", () => {
  sessionStorage.setItem(KEY_STORAGE, ui.apiKey.value.trim());
  showModelInfo();
});
showModelInfo();
