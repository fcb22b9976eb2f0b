// The gauge map: Leaflet with an offline base layer (no tile server): the land around Mie
// from Natural Earth, the catchments from the catalogue, the gauges coloured by level.
"use strict";
(function () {
  const el = document.getElementById("map");
  if (!el || typeof L === "undefined") return;
  const en = el.dataset.lang === "en";
  const map = L.map(el, { zoomSnap: 0.25, attributionControl: false, zoomAnimation: false,
    fadeAnimation: false, markerZoomAnimation: false, minZoom: 7, maxZoom: 13,
    maxBounds: [[33.2, 134.9], [35.8, 137.9]] });
  map.setView([34.6, 136.4], 8);

  function get(url) {
    return fetch(url, { credentials: "same-origin" }).then(function (r) {
      if (!r.ok) throw new Error(url + ": " + r.status);
      return r.json();
    });
  }

  get(el.dataset.baseSrc).then(function (land) {
    L.geoJSON(land, { interactive: false,
      style: { color: "#7a8a6a", weight: 1, fillColor: "#f3f0e4", fillOpacity: 1 } }).addTo(map);
    return get(el.dataset.mapSrc);
  }).then(function (data) {
    const catchments = data.features.filter(function (f) { return f.properties.kind === "catchment"; });
    const gauges = data.features.filter(function (f) { return f.properties.kind === "gauge"; });
    L.geoJSON({ type: "FeatureCollection", features: catchments }, { interactive: false,
      style: { color: "#5b8fc7", weight: 1, fillColor: "#a9c8e8", fillOpacity: 0.25 } }).addTo(map);
    const layer = L.geoJSON({ type: "FeatureCollection", features: gauges }, {
      pointToLayer: function (f, latlng) {
        const p = f.properties;
        return L.circleMarker(latlng, { radius: p.level >= 2 ? 10 : 7, color: "#111", weight: 1.5,
          fillColor: p.colour, fillOpacity: 1 });
      },
      onEachFeature: function (f, m) {
        const p = f.properties;
        const name = en ? p.name_en : p.name_ja;
        const level = p.observed_m === null ? "—" : p.observed_m.toFixed(2) + " m";
        m.bindTooltip(name + (p.level_ja ? " " + p.level_ja : ""), {
          permanent: p.level >= 1, direction: "right", offset: [10, 0], className: "gauge-label" });
        m.on("click", function () { window.location.href = p.href; });
        m.bindPopup(name + " (" + p.gauge_ja + "): " + level);
      },
    }).addTo(map);
    layer.eachLayer(function (m) {
      const e = m.getElement && m.getElement();
      if (e) { e.setAttribute("data-gauge", m.feature.properties.river); e.setAttribute("data-level", m.feature.properties.level); }
    });
    if (gauges.length) map.fitBounds(layer.getBounds().pad(0.3), { maxZoom: 10, animate: false });
    el.dataset.ready = "true";
  }).catch(function (err) {
    el.dataset.error = String(err);
  });
})();
