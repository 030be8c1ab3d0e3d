// The cells of one context: each has an editor, a run/stop pair, its execution count and output.

import * as api from "./api.js";
import { createEditor } from "./editor.js";
import { Output } from "./outputs.js";

function button(text, className, title) {
  const element = document.createElement("button");
  element.type = "button";
  element.className = className;
  element.textContent = text;
  if (title) element.title = title;
  return element;
}

class Cell {
  constructor(notebook, code) {
    this.notebook = notebook;
    this.controller = null;
    this.element = document.createElement("section");
    this.element.className = "cell";
    this.count = document.createElement("span");
    this.count.className = "count";
    this.count.textContent = "[ ]";
    this.runButton = button("Run", "run", "Run (Shift+Enter)");
    this.stopButton = button("Stop", "stop", "Interrupt this execution");
    this.stopButton.hidden = true;
    this.removeButton = button("Remove", "remove", "Remove this cell");
    const head = document.createElement("div");
    head.className = "cell-head";
    head.append(this.count, this.runButton, this.stopButton, this.removeButton);
    const editorHost = document.createElement("div");
    editorHost.className = "editor";
    const outputElement = document.createElement("div");
    outputElement.className = "output";
    outputElement.setAttribute("aria-live", "polite");
    this.output = new Output(outputElement);
    this.element.append(head, editorHost, outputElement);

    this.editor = createEditor(editorHost, {
      language: notebook.context.language,
      doc: code,
      label: "Code",
      onRun: (advance) => {
        this.run();
        if (advance) notebook.focusAfter(this);
      },
    });
    this.runButton.addEventListener("click", () => this.run());
    this.stopButton.addEventListener("click", () => this.notebook.interrupt());
    this.removeButton.addEventListener("click", () => notebook.remove(this));
    this.label();
  }

  label() {
    const index = this.notebook.cells.indexOf(this) + 1 || this.notebook.cells.length + 1;
    this.element.setAttribute("aria-label", `Cell ${index}`);
  }

  get code() {
    return this.editor.state.doc.toString();
  }

  focus() {
    this.editor.focus();
  }

  setRunning(running) {
    this.element.classList.toggle("running", running);
    this.stopButton.hidden = !running;
    if (running) this.count.textContent = "[*]";
  }

  /** Runs the cell's code; running it again while it runs drops the first run (the server stops it). */
  async run() {
    this.controller?.abort();
    const controller = new AbortController();
    this.controller = controller;
    this.output.clear();
    this.setRunning(true);
    let count = " ";
    try {
      const events = api.execute({
        contextId: this.notebook.context.id,
        code: this.code,
        timeoutMs: this.notebook.timeoutMs(),
        signal: controller.signal,
      });
      for await (const event of events) {
        if (event.type === "stdout" || event.type === "stderr") this.output.stream(event.type, event.data);
        else if (event.type === "result") this.output.item(event.data);
        else if (event.type === "error") this.output.error(event);
        else if (event.type === "exit") count = String(event.execution_count);
      }
    } catch (error) {
      if (controller.signal.aborted) return;
      this.output.error({ data: `Request failed: ${error.message}` });
      if (error.status === 404) this.notebook.gone();
    } finally {
      if (this.controller === controller) {
        this.controller = null;
        this.setRunning(false);
        this.count.textContent = `[${count}]`;
        this.notebook.finished();
      }
    }
  }

  dispose() {
    this.controller?.abort();
    this.editor.destroy();
    this.element.remove();
  }
}

/** All cells of one context, shown while that context is the current one. */
export class Notebook {
  /**
   * @param {{id: string, language: string}} context
   * @param {{timeoutMs: () => number, finished: () => void, gone: () => void}} hooks
   */
  constructor(context, hooks) {
    this.context = context;
    this.hooks = hooks;
    this.cells = [];
    this.element = document.createElement("section");
    this.element.className = "notebook";
    this.element.setAttribute("aria-label", `Cells of ${context.id} (${context.language})`);
    this.list = document.createElement("div");
    this.list.className = "cells";
    const add = button("Add cell", "add-cell");
    add.addEventListener("click", () => this.add().focus());
    this.element.append(this.list, add);
    this.add();
  }

  add(code = "", after = null) {
    const cell = new Cell(this, code);
    const index = after ? this.cells.indexOf(after) + 1 : this.cells.length;
    this.cells.splice(index, 0, cell);
    this.list.insertBefore(cell.element, this.cells[index + 1]?.element ?? null);
    this.cells.forEach((c) => c.label());
    return cell;
  }

  focusAfter(cell) {
    const next = this.cells[this.cells.indexOf(cell) + 1] ?? this.add("", cell);
    next.focus();
  }

  remove(cell) {
    const index = this.cells.indexOf(cell);
    cell.dispose();
    this.cells.splice(index, 1);
    if (this.cells.length === 0) this.add();
    this.cells.forEach((c) => c.label());
    (this.cells[index] ?? this.cells[index - 1]).focus();
  }

  /** Moves these cells to another context (their old one is gone): counts start again. */
  rebind(context) {
    this.context = context;
    this.element.setAttribute("aria-label", `Cells of ${context.id} (${context.language})`);
    for (const cell of this.cells) cell.count.textContent = "[ ]";
  }

  timeoutMs() {
    return this.hooks.timeoutMs();
  }

  interrupt() {
    return api.interruptContext(this.context.id).catch((error) => this.hooks.report(error));
  }

  finished() {
    this.hooks.finished(this);
  }

  gone() {
    this.hooks.gone(this);
  }

  dispose() {
    this.cells.forEach((cell) => cell.dispose());
    this.element.remove();
  }
}
