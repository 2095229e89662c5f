// Starts Swagger UI on /docs. A file rather than an inline script, because the Content-Security-Policy allows
// scripts from this origin only (see service/deepfer/server/docs.py).
"use strict";
window.addEventListener("DOMContentLoaded", () => {
  const root = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: root.dataset.openapiUrl,
    dom_id: "#swagger-ui",
    deepLinking: true,
    // "Try it out" keeps the API key typed into "Authorize" across page reloads.
    persistAuthorization: true,
  });
});
