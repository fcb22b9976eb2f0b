// Starts Swagger UI on /openapi.json (an external file: the CSP forbids inline scripts).
window.addEventListener("load", function () {
  window.ui = SwaggerUIBundle({
    url: "/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    persistAuthorization: false,
    validatorUrl: null,   // no call to validator.swagger.io: offline, and the spec stays here
  });
});
