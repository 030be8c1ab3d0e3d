// The third-party code the playground uses, bundled into one ES module by build.sh.
export { EditorView, keymap, drawSelection, highlightActiveLine, lineNumbers, placeholder } from "@codemirror/view";
export { EditorState, Compartment } from "@codemirror/state";
export { defaultKeymap, history, historyKeymap, indentWithTab } from "@codemirror/commands";
export {
  bracketMatching,
  defaultHighlightStyle,
  indentOnInput,
  syntaxHighlighting,
} from "@codemirror/language";
export { closeBrackets, closeBracketsKeymap } from "@codemirror/autocomplete";
export { python } from "@codemirror/lang-python";
export { javascript } from "@codemirror/lang-javascript";
export { marked } from "marked";
