// The playground page: sign-in, the contexts list, one notebook of cells per context, files.

import * as api from "./api.js";
import { Notebook } from "./cells.js";
import { FilesPanel } from "./files.js";

const $ = (id) => document.getElementById(id);
const CURRENT_KEY = "cellbox-context";

const notebooks = new Map(); // context id → Notebook
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
    report(`Context ${notebook.context.id} no longer exists.`, true);
    refreshContexts();
  },
};

function shortId(id) {
  return id.length > 14 ? `${id.slice(0, 12)}…` : id;
}

function contextRow(context) {
  const item = document.createElement("li");
  item.className = "context";
  const select = document.createElement("button");
  select.type = "button";
  select.className = "select";
  select.title = context.id;
  select.textContent = `${context.language} · ${shortId(context.id)}`;
  select.setAttribute("aria-label", `Switch to ${context.language} context ${context.id}`);
  if (context.id === currentId) select.setAttribute("aria-current", "true");
  select.addEventListener("click", () => selectContext(context.id));
  const restart = document.createElement("button");
  restart.type = "button";
  restart.textContent = "⟳";
  restart.title = "Restart (clears its state, keeps its files)";
  restart.setAttribute("aria-label", `Restart context ${context.id}`);
  restart.addEventListener("click", () => restartContext(context.id));
  const remove = document.createElement("button");
  remove.type = "button";
  remove.textContent = "✕";
  remove.title = "Delete";
  remove.setAttribute("aria-label", `Delete context ${context.id}`);
  remove.addEventListener("click", () => deleteContext(context.id));
  item.append(select, restart, remove);
  return item;
}

function renderContexts() {
  $("contexts").replaceChildren(...contexts.map(contextRow));
}

async function refreshContexts() {
  try {
    contexts = await api.listContexts();
  } catch (error) {
    report(`Could not list contexts: ${error.message}`, true);
    return;
  }
  const live = new Set(contexts.map((c) => c.id));
  for (const [id, notebook] of notebooks) {
    if (!live.has(id)) {
      notebook.dispose();
      notebooks.delete(id);
    }
  }
  if (currentId && !live.has(currentId)) currentId = null;
  renderContexts();
}

function selectContext(id) {
  const context = contexts.find((c) => c.id === id);
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

async function deleteContext(id) {
  if (!confirm(`Delete context ${id} and everything in it?`)) return;
  try {
    await api.deleteContext(id);
    report(`Deleted ${id}`);
  } catch (error) {
    report(`Could not delete: ${error.message}`, true);
  }
  await refreshContexts();
  if (currentId === null) await openSomeContext();
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

api.whenUnauthorized(() => showSignIn("The server no longer accepts the token: sign in again."));

if (api.storedToken()) {
  showApp().catch((error) => showSignIn(error.message));
} else {
  showSignIn();
}
