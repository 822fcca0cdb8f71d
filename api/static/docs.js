// Swagger UI over the ledger's own OpenAPI document (the path is in the page, so this file stays static).
(function () {
  "use strict";
  var root = document.getElementById("swagger-ui");
  window.ui = window.SwaggerUIBundle({ url: root.dataset.schema, domNode: root, deepLinking: true });
})();
