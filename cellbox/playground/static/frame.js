// Runs inside the sandboxed output frame (an opaque origin): shows the markup the page sends,
// then keeps telling the page its height. Nothing here can reach the page or its storage.
"use strict";

const STYLE = `
  body { margin: 0; font: 14px/1.4 system-ui, sans-serif; color: #1d2430; overflow-x: auto; }
  table { border-collapse: collapse; font-variant-numeric: tabular-nums; }
  table, th, td { border: 0; }
  th, td { border-bottom: 1px solid #d5dae1; padding: 3px 8px; text-align: right; }
  thead th { border-bottom: 2px solid #9aa4b1; }
  tbody tr:nth-child(odd) { background: #f5f7fa; }
  img, svg { max-width: 100%; }
  pre, code { font-family: ui-monospace, monospace; }
`;

function reportHeight() {
  const height = Math.max(document.documentElement.scrollHeight, document.body.scrollHeight);
  parent.postMessage({ height }, "*");
}

// Scripts set through innerHTML do not run: put fresh copies in their place.
function activateScripts(root) {
  for (const old of root.querySelectorAll("script")) {
    const script = document.createElement("script");
    for (const { name, value } of old.attributes) script.setAttribute(name, value);
    script.text = old.text;
    old.replaceWith(script);
  }
}

function showHtml(html) {
  document.body.innerHTML = html;
  activateScripts(document.body);
}

// plotly.js is big: only frames that show a plot load it.
function showPlot(figure, fallbackHtml) {
  const script = document.createElement("script");
  script.src = "/playground/vendor/plotly.min.js";
  script.onload = () => {
    const plot = document.createElement("div");
    plot.className = "plot";
    document.body.append(plot);
    const config = { responsive: true, displaylogo: false };
    window.Plotly.newPlot(plot, figure.data || [], figure.layout || {}, config);
  };
  script.onerror = () => showHtml(fallbackHtml ?? "<pre>plotly.js could not be loaded</pre>");
  document.head.append(script);
}

function show({ html, plotly }) {
  const style = document.createElement("style");
  style.textContent = STYLE;
  document.head.append(style);
  if (plotly) showPlot(plotly, html);
  else showHtml(html ?? "");
  new ResizeObserver(reportHeight).observe(document.documentElement);
  reportHeight();
}

window.addEventListener("message", function once(event) {
  if (event.source !== parent || typeof event.data !== "object" || event.data === null) return;
  window.removeEventListener("message", once);
  show(event.data);
});
document.addEventListener("DOMContentLoaded", () => parent.postMessage({ ready: true }, "*"));
