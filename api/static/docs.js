// Swagger UI over the ledger's own OpenAPI document (the path is in the page, so this file stays static).
(function () {
  "use strict";
  var root = document.getElementById("swagger-ui");
  // validatorUrl: null, or Swagger UI asks validator.swagger.io for a badge (no internet here).
  window.ui = window.SwaggerUIBundle({ url: root.dataset.schema, domNode: root, deepLinking: true, validatorUrl: null });
})();
