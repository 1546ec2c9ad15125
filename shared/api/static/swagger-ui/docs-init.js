// Starts Swagger UI on /api/docs (a file, not an inline script, so the page's CSP can forbid
// inline scripts). The schema URL comes from the page; the browser's identity fetches it.
(function () {
  var root = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: root.getAttribute("data-openapi"),
    dom_id: "#swagger-ui",
    layout: "BaseLayout",
    deepLinking: true,
    showExtensions: true,
    showCommonExtensions: true,
    presets: [SwaggerUIBundle.presets.apis],
  });
})();
