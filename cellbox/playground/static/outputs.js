// How a cell shows what its execution produced: streamed text, rich items, the error.
// Anything that is markup from the code (HTML, markdown, plotly) goes into a sandboxed frame
// (frame.html: an opaque origin, so it cannot reach this page, its storage or the token).

import { marked } from "./vendor/codemirror.js";

const PLOTLY = "application/vnd.plotly.v1+json";
const MAX_FRAME_HEIGHT = 4000;

/** What each frame should show, until it says it is ready. */
const pending = new Map();

window.addEventListener("message", (event) => {
  const frame = [...document.querySelectorAll("iframe.output-frame")].find(
    (f) => f.contentWindow === event.source,
  );
  if (!frame || typeof event.data !== "object" || event.data === null) return;
  if (event.data.ready && pending.has(frame)) {
    frame.contentWindow.postMessage(pending.get(frame), "*");
    pending.delete(frame);
  } else if (Number.isFinite(event.data.height)) {
    const height = Math.min(Math.max(Math.ceil(event.data.height), 24), MAX_FRAME_HEIGHT);
    frame.style.height = `${height}px`;
  }
});

function sandboxedFrame(message, title) {
  const frame = document.createElement("iframe");
  frame.className = "output-frame";
  frame.title = title;
  frame.setAttribute("sandbox", "allow-scripts");
  frame.setAttribute("referrerpolicy", "no-referrer");
  pending.set(frame, message);
  frame.src = "/playground/frame.html";
  return frame;
}

function pre(className, text) {
  const element = document.createElement("pre");
  element.className = className;
  element.textContent = text;
  return element;
}

function image(type, base64, alt) {
  const img = document.createElement("img");
  img.src = `data:${type};base64,${base64}`;
  img.alt = alt || "image output";
  return img;
}

function svgImage(svg, alt) {
  // As an <img>, an SVG cannot run scripts or load anything.
  const url = URL.createObjectURL(new Blob([svg], { type: "image/svg+xml" }));
  const img = document.createElement("img");
  img.src = url;
  img.alt = alt || "SVG output";
  img.addEventListener("load", () => URL.revokeObjectURL(url), { once: true });
  return img;
}

/** One rich item (the API's item shape) as an element: the richest form the page can show. */
export function renderItem(item) {
  const extra = item.extra || {};
  if (extra[PLOTLY]) return sandboxedFrame({ plotly: extra[PLOTLY], html: item.html }, "Plot");
  if (item.html) return sandboxedFrame({ html: item.html }, "HTML output");
  if (item.png) return image("image/png", item.png, item.text);
  if (item.jpeg) return image("image/jpeg", item.jpeg, item.text);
  if (item.svg) return svgImage(item.svg, item.text);
  if (item.markdown) return sandboxedFrame({ html: marked.parse(item.markdown) }, "Markdown");
  if (item.json !== undefined) return pre("json", JSON.stringify(item.json, null, 2));
  if (item.latex) return pre("text", item.latex);
  return pre("text", item.text ?? "");
}

/** The output area of one cell. */
export class Output {
  constructor(element) {
    this.element = element;
  }

  clear() {
    this.element.replaceChildren();
  }

  stream(kind, line) {
    let last = this.element.lastElementChild;
    if (!last || !last.classList.contains(kind)) {
      last = pre(`stream ${kind}`, "");
      this.element.append(last);
    }
    last.append(line + "\n");
  }

  item(item) {
    const wrapper = document.createElement("div");
    wrapper.className = item.is_primary ? "item primary" : "item";
    wrapper.append(renderItem(item));
    this.element.append(wrapper);
  }

  error({ name, value, traceback, data }) {
    const box = document.createElement("div");
    box.className = "error";
    box.setAttribute("role", "alert");
    const title = document.createElement("strong");
    title.textContent = name ? `${name}: ${value ?? ""}` : data;
    box.append(title);
    if (traceback) box.append(pre("traceback", traceback));
    this.element.append(box);
  }

  note(text) {
    this.element.append(pre("note", text));
  }
}
