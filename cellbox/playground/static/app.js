// The playground page: sign-in, the contexts list, one notebook of cells per context, files.

import * as api from "./api.js";
import { Notebook } from "./cells.js";
import { FilesPanel } from "./files.js";

const $ = (id) => document.getElementById(id);
const CURRENT_KEY = "cellbox-context";

const notebooks = new Map(); // context id → Notebook (kept when its context vanishes)
let contexts = []; // as GET /contexts lists them
let currentId = null;

function report(text, isError = false) {
  const status = $("status");
  status.textContent = text;
  status.classList.toggle("error-text", isError);
}

const files = new FilesPanel({
  list: $("files"),
  drop: $("drop"),
  choose: $("choose"),
  input: $("file-input"),
  refresh: $("files-refresh"),
  report,
});

function timeoutMs() {
  const seconds = Math.min(Math.max(Number($("timeout").value) || 30, 1), 600);
  return Math.round(seconds * 1000);
}

const hooks = {
  timeoutMs,
  report: (error) => report(error.message, true),
  finished: (notebook) => {
    if (notebook.context.id === currentId) files.refresh();
  },
  gone: (notebook) => {
    report(`Context ${notebook.context.id} no longer exists: recreate it to run its cells.`, true);
    refreshContexts();
  },
};

function shortId(id) {
  return id.length > 14 ? `${id.slice(0, 12)}…` : id;
}

function smallButton(text, title, label, action) {
  const element = document.createElement("button");
  element.type = "button";
  element.textContent = text;
  element.title = title;
  element.setAttribute("aria-label", label);
  element.addEventListener("click", action);
  return element;
}

function contextRow(context, live) {
  const item = document.createElement("li");
  item.className = live ? "context" : "context gone";
  const select = document.createElement("button");
  select.type = "button";
  select.className = "select";
  select.title = context.id;
  const state = live ? "" : " (gone)";
  select.textContent = `${context.language} · ${shortId(context.id)}${state}`;
  select.setAttribute("aria-label", `Switch to ${context.language} context ${context.id}${state}`);
  if (context.id === currentId) select.setAttribute("aria-current", "true");
  select.addEventListener("click", () => selectContext(context.id));
  item.append(select);
  if (live) {
    item.append(
      smallButton("⟳", "Restart (clears its state, keeps its files)",
        `Restart context ${context.id}`, () => restartContext(context.id)),
      smallButton("✕", "Delete", `Delete context ${context.id}`, () => deleteContext(context.id)),
    );
  } else {
    item.append(
      smallButton("New", "Run these cells in a new context of the same language",
        `Recreate context ${context.id}`, () => recreateContext(context.id)),
      smallButton("✕", "Close these cells", `Close cells of ${context.id}`, () => closeCells(context.id)),
    );
  }
  return item;
}

/** The server's contexts, then the cells whose context is gone (idle reaping, another client). */
function renderContexts() {
  const live = new Set(contexts.map((c) => c.id));
  const gone = [...notebooks.values()].filter((n) => !live.has(n.context.id)).map((n) => n.context);
  $("contexts").replaceChildren(
    ...contexts.map((c) => contextRow(c, true)),
    ...gone.map((c) => contextRow(c, false)),
  );
}

function knownContext(id) {
  return contexts.find((c) => c.id === id) ?? notebooks.get(id)?.context;
}

async function refreshContexts() {
  try {
    contexts = await api.listContexts();
  } catch (error) {
    report(`Could not list contexts: ${error.message}`, true);
    return;
  }
  renderContexts();
}

function selectContext(id) {
  const context = knownContext(id);
  if (!context) return;
  currentId = id;
  sessionStorage.setItem(CURRENT_KEY, id);
  if (!notebooks.has(id)) {
    const notebook = new Notebook(context, hooks);
    notebooks.set(id, notebook);
    $("notebooks").append(notebook.element);
  }
  for (const [otherId, notebook] of notebooks) notebook.element.hidden = otherId !== id;
  $("current").textContent = `${context.language} · ${context.id}`;
  renderContexts();
  files.show(id);
  closePanelOnPhone();
}

async function newContext(language) {
  report(`Creating a ${language} context…`);
  try {
    const context = await api.createContext(language);
    await refreshContexts();
    selectContext(context.id);
    report(`New ${language} context ${context.id}`);
    notebooks.get(context.id).cells[0].focus();
  } catch (error) {
    report(`Could not create a context: ${error.message}`, true);
  }
}

async function restartContext(id) {
  try {
    await api.restartContext(id);
    for (const cell of notebooks.get(id)?.cells ?? []) cell.count.textContent = "[ ]";
    report(`Restarted ${id}: its state is cleared, its files are kept.`);
  } catch (error) {
    report(`Could not restart: ${error.message}`, true);
  }
}

async function recreateContext(id) {
  const notebook = notebooks.get(id);
  try {
    const context = await api.createContext(notebook.context.language);
    notebooks.delete(id);
    notebooks.set(context.id, notebook);
    notebook.rebind(context);
    await refreshContexts();
    selectContext(context.id);
    report(`Its cells now run in the new context ${context.id}`);
  } catch (error) {
    report(`Could not create a context: ${error.message}`, true);
  }
}

async function closeCells(id) {
  notebooks.get(id)?.dispose();
  notebooks.delete(id);
  if (currentId === id) currentId = null;
  renderContexts();
  if (currentId === null) await openSomeContext();
}

async function deleteContext(id) {
  if (!confirm(`Delete context ${id} and everything in it?`)) return;
  try {
    await api.deleteContext(id);
    report(`Deleted ${id}`);
  } catch (error) {
    report(`Could not delete: ${error.message}`, true);
  }
  await refreshContexts();
  if (!contexts.some((c) => c.id === id)) await closeCells(id);
}

async function openSomeContext() {
  const saved = sessionStorage.getItem(CURRENT_KEY);
  const target = contexts.find((c) => c.id === saved) ?? contexts[0];
  if (target) selectContext(target.id);
  else await newContext("python");
}

const phone = window.matchMedia("(max-width: 760px)");
function setPanel(open) {
  $("panel").classList.toggle("open", open);
  $("panel-toggle").setAttribute("aria-expanded", String(open));
}
function closePanelOnPhone() {
  if (phone.matches) setPanel(false);
}

function showSignIn(message = "") {
  api.forgetToken();
  $("app").hidden = true;
  $("signin").hidden = false;
  $("signin-error").textContent = message;
  $("token").focus();
}

async function showApp() {
  $("signin").hidden = true;
  $("app").hidden = false;
  await refreshContexts();
  await openSomeContext();
  notebooks.get(currentId)?.cells[0]?.focus();
}

$("signin-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const input = $("token");
  try {
    await api.signIn(input.value.trim());
    input.value = "";
    $("signin-error").textContent = "";
    await showApp();
  } catch (error) {
    $("signin-error").textContent =
      error.status === 401 ? "That token is not right." : `Sign-in failed: ${error.message}`;
  }
});

$("signout").addEventListener("click", () => {
  for (const notebook of notebooks.values()) notebook.dispose();
  notebooks.clear();
  currentId = null;
  sessionStorage.removeItem(CURRENT_KEY);
  showSignIn();
});

$("new-context").addEventListener("submit", (event) => {
  event.preventDefault();
  newContext($("new-language").value);
});

$("interrupt").addEventListener("click", () => notebooks.get(currentId)?.interrupt());
$("panel-toggle").addEventListener("click", () =>
  setPanel(!$("panel").classList.contains("open")),
);

// Contexts come and go behind the page's back (idle reaping, agents): look again on return.
document.addEventListener("visibilitychange", () => {
  if (!document.hidden && api.storedToken()) refreshContexts();
});

api.whenUnauthorized(() => showSignIn("The server no longer accepts the token: sign in again."));

if (api.storedToken()) {
  showApp().catch((error) => showSignIn(error.message));
} else {
  showSignIn();
}
