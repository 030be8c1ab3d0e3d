// A CodeMirror 6 editor for one cell. Tab indents; Escape then Tab leaves the editor
// (CodeMirror's own tab-focus escape), so the page stays usable from the keyboard.

import {
  EditorState,
  EditorView,
  bracketMatching,
  closeBrackets,
  closeBracketsKeymap,
  defaultHighlightStyle,
  defaultKeymap,
  drawSelection,
  history,
  historyKeymap,
  indentOnInput,
  indentWithTab,
  javascript,
  keymap,
  python,
  syntaxHighlighting,
} from "./vendor/codemirror.js";

// The page's CSP admits the editor's <style> element only with the nonce of this page load.
const styleNonce = document.querySelector('meta[name="style-nonce"]').content;

const LANGUAGES = {
  python: () => python(),
  typescript: () => javascript({ typescript: true }),
};

/**
 * @param {HTMLElement} parent where the editor goes
 * @param {{language: string, doc: string, label: string, onRun: (advance: boolean) => void}} options
 *   onRun(true) for Shift+Enter (run and go to the next cell), onRun(false) for Ctrl/Cmd+Enter.
 */
export function createEditor(parent, { language, doc, label, onRun }) {
  const runKeys = keymap.of([
    { key: "Shift-Enter", run: () => (onRun(true), true) },
    { key: "Mod-Enter", run: () => (onRun(false), true) },
  ]);
  return new EditorView({
    parent,
    state: EditorState.create({
      doc,
      extensions: [
        runKeys,
        EditorView.cspNonce.of(styleNonce),
        history(),
        drawSelection(),
        indentOnInput(),
        bracketMatching(),
        closeBrackets(),
        syntaxHighlighting(defaultHighlightStyle, { fallback: true }),
        keymap.of([...closeBracketsKeymap, ...defaultKeymap, ...historyKeymap, indentWithTab]),
        EditorState.tabSize.of(4),
        LANGUAGES[language](),
        EditorView.contentAttributes.of({ "aria-label": label }),
        EditorView.lineWrapping,
      ],
    }),
  });
}
