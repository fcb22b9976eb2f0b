// Starts ReDoc on /openapi.json (an external file: the CSP forbids inline scripts).
window.addEventListener("load", function () {
  Redoc.init("/openapi.json", { hideDownloadButton: false }, document.getElementById("redoc"));
});
