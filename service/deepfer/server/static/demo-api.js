// Talking to the service over HTTP: POST /predict and GET /model, with the API key typed into the page.

import { ui } from "./demo-ui.js";

export function authHeaders() {
  const key = ui.apiKey.value.trim();
  return key ? { "X-API-Key": key } : {};
}

/** POST one image to /predict; resolves to {ok, status, data, message}, never rejects. */
export async function predict(blob, name) {
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

export async function showModelInfo() {
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
