// The current context's files: list, upload (drag and drop or file chooser), download, delete.

import * as api from "./api.js";

function formatSize(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 ** 2) return `${(bytes / 1024).toFixed(1)} KiB`;
  if (bytes < 1024 ** 3) return `${(bytes / 1024 ** 2).toFixed(1)} MiB`;
  return `${(bytes / 1024 ** 3).toFixed(1)} GiB`;
}

function saveBlob(blob, name) {
  const url = URL.createObjectURL(blob);
  const link = document.createElement("a");
  link.href = url;
  link.download = name;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

export class FilesPanel {
  /** @param {{list, drop, choose, input, refresh: HTMLElement, report: (text: string, error?: boolean) => void}} parts */
  constructor({ list, drop, choose, input, refresh, report }) {
    this.list = list;
    this.report = report;
    this.contextId = null;
    choose.addEventListener("click", () => input.click());
    input.addEventListener("change", () => {
      this.upload([...input.files]);
      input.value = "";
    });
    refresh.addEventListener("click", () => this.refresh());
    drop.addEventListener("dragover", (event) => {
      event.preventDefault();
      drop.classList.add("over");
    });
    drop.addEventListener("dragleave", () => drop.classList.remove("over"));
    drop.addEventListener("drop", (event) => {
      event.preventDefault();
      drop.classList.remove("over");
      this.upload([...event.dataTransfer.files]);
    });
  }

  show(contextId) {
    this.contextId = contextId;
    this.list.replaceChildren();
    return this.refresh();
  }

  async refresh() {
    const contextId = this.contextId;
    if (!contextId) return;
    let items;
    try {
      items = await api.listFiles(contextId);
    } catch (error) {
      if (contextId === this.contextId) this.message(`Files unavailable: ${error.message}`);
      return;
    }
    if (contextId !== this.contextId) return;
    items.sort((a, b) => a.path.localeCompare(b.path));
    const files = items.filter((item) => item.type !== "dir");
    if (files.length === 0) {
      this.message("No files yet.");
      return;
    }
    this.list.replaceChildren(...files.map((item) => this.row(item)));
  }

  message(text) {
    const item = document.createElement("li");
    item.className = "empty";
    item.textContent = text;
    this.list.replaceChildren(item);
  }

  row({ path, size, type }) {
    const item = document.createElement("li");
    item.className = "file";
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = type === "symlink" ? `${path} →` : path;
    name.title = path;
    const meta = document.createElement("span");
    meta.className = "meta";
    meta.textContent = formatSize(size ?? 0);
    const download = document.createElement("button");
    download.type = "button";
    download.textContent = "Download";
    download.setAttribute("aria-label", `Download ${path}`);
    download.addEventListener("click", () => this.download(path));
    const remove = document.createElement("button");
    remove.type = "button";
    remove.textContent = "Delete";
    remove.setAttribute("aria-label", `Delete ${path}`);
    remove.addEventListener("click", () => this.remove(path));
    item.append(name, meta, download, remove);
    return item;
  }

  async upload(files) {
    const contextId = this.contextId;
    for (const file of files) {
      this.report(`Uploading ${file.name}…`);
      try {
        const { path, size } = await api.uploadFile(contextId, file.name, file);
        this.report(`Uploaded ${path} (${formatSize(size)})`);
      } catch (error) {
        this.report(`Upload of ${file.name} failed: ${error.message}`, true);
      }
    }
    await this.refresh();
  }

  async download(path) {
    try {
      saveBlob(await api.downloadFile(this.contextId, path), path.split("/").pop());
    } catch (error) {
      this.report(`Download of ${path} failed: ${error.message}`, true);
    }
  }

  async remove(path) {
    if (!confirm(`Delete ${path}?`)) return;
    try {
      await api.deleteFile(this.contextId, path);
      this.report(`Deleted ${path}`);
    } catch (error) {
      this.report(`Delete of ${path} failed: ${error.message}`, true);
    }
    await this.refresh();
  }
}
