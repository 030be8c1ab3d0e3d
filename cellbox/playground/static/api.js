// The cellbox HTTP API as the page uses it. The token lives in this tab's session storage only:
// it travels in the Authorization header, never in a URL.

const TOKEN_KEY = "cellbox-token";

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

export function storedToken() {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function forgetToken() {
  sessionStorage.removeItem(TOKEN_KEY);
}

/** Called with no arguments when the server refuses the token (it may have a new one). */
let onUnauthorized = () => {};
export function whenUnauthorized(callback) {
  onUnauthorized = callback;
}

async function errorOf(response) {
  let message = `${response.status} ${response.statusText}`;
  try {
    const body = await response.json();
    if (body.message) message = body.message;
    if (Array.isArray(body.errors)) {
      message += ": " + body.errors.map((e) => `${e.field}: ${e.error}`).join("; ");
    } else if (typeof body.detail === "string") {
      message = body.detail;
    }
  } catch {
    // not JSON: keep the status line
  }
  return new ApiError(response.status, message);
}

async function call(method, path, { body, json, signal, token = storedToken() } = {}) {
  const headers = { Authorization: `Bearer ${token}` };
  if (json !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(json);
  }
  const response = await fetch(path, { method, headers, body, signal, cache: "no-store" });
  if (!response.ok) {
    const error = await errorOf(response);
    if (response.status === 401) onUnauthorized();
    throw error;
  }
  return response;
}

async function callJson(method, path, options) {
  const response = await call(method, path, options);
  return response.status === 204 ? null : response.json();
}

/** Checks the token against the server and keeps it for this tab when it is right. */
export async function signIn(token) {
  await call("GET", "/contexts", { token });
  sessionStorage.setItem(TOKEN_KEY, token);
}

const ctx = (id) => `/contexts/${encodeURIComponent(id)}`;
const filePath = (id, path) =>
  `${ctx(id)}/files/${path.split("/").map(encodeURIComponent).join("/")}`;

export const listContexts = async () => (await callJson("GET", "/contexts")).items;
export const createContext = (language) => callJson("POST", "/contexts", { json: { language } });
export const deleteContext = (id) => callJson("DELETE", ctx(id));
export const restartContext = (id) => callJson("POST", `${ctx(id)}/restart`);
export const interruptContext = (id) => callJson("POST", `${ctx(id)}/interrupt`);

export const listFiles = async (id) =>
  (await callJson("GET", `${ctx(id)}/files?recursive=true`)).items;
export const uploadFile = (id, path, file) => callJson("PUT", filePath(id, path), { body: file });
export const deleteFile = (id, path) => callJson("DELETE", filePath(id, path));
export const downloadFile = async (id, path) => (await call("GET", filePath(id, path))).blob();

/**
 * Runs code and yields the events of /execute/async as they arrive:
 * {type: "stdout"|"stderr", data}, {type: "result", data: item}, {type: "error", …}, {type: "exit", …}.
 */
export async function* execute({ contextId, code, timeoutMs, signal }) {
  const json = { code, context_id: contextId, timeout_ms: timeoutMs };
  const response = await call("POST", "/execute/async", { json, signal });
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const data = block
        .split("\n")
        .filter((line) => line.startsWith("data:"))
        .map((line) => line.slice(5).replace(/^ /, ""))
        .join("\n");
      if (data) yield JSON.parse(data);
    }
  }
}
