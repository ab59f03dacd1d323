// /docs: the server's OpenAPI document (/openapi.json) rendered by Swagger UI, bundled here so
// that the page needs nothing from outside the server.
import "swagger-ui-dist/swagger-ui.css";

import SwaggerUIBundle from "swagger-ui-dist/swagger-ui-bundle.js";

const root = document.getElementById("swagger-ui");
if (root) {
  window.ui = SwaggerUIBundle({
    url: root.dataset.url,
    domNode: root,
    deepLinking: true,
    // Swagger UI's badge asks a validator on the Internet about the document: never from here.
    validatorUrl: null,
    // "Try it out" calls this server, with the key given under Authorize.
    tryItOutEnabled: false,
    // Each API's routes, folded by tag; the schemas (WebSocket messages among them) below.
    docExpansion: "list",
    defaultModelsExpandDepth: 0,
  });
}
