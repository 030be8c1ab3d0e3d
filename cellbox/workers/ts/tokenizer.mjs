// Enough JavaScript lexing to find a cell's top-level statements: where each one starts,
// whether one is an expression, where a bracket closes, what a static import declaration
// holds. Used by cell.mjs (the last-expression rule, redeclarations) and
// import_rewrite.mjs.
// Pure: tested on its own by tokenizer.test.mjs.

import {
  ArrayPrototypePop,
  ArrayPrototypePush,
  MathMax,
  MathMin,
  RegExpPrototypeExec,
  regExpTest,
  SetPrototypeHas,
  StringPrototypeCharCodeAt,
  StringPrototypeIndexOf,
  StringPrototypeSlice,
} from './intrinsics.mjs';

const RE_NAME = /[$_\p{ID_Start}\\#][$\p{ID_Continue}\u200c\u200d\\]*/uy;
const RE_NUM = /(?:0[xXoObB][\da-fA-F_]*n?|(?:\d[\d_]*(?:\.[\d_]*)?|\.\d[\d_]*)(?:[eE][+-]?[\d_]+)?n?)/y;
const RE_PUNCT =
  /(?:>>>=|\.\.\.|===|!==|\*\*=|<<=|>>=|>>>|&&=|\|\|=|\?\?=|=>|==|!=|<=|>=|&&|\|\||\?\?|\?\.(?!\d)|\+\+|--|\+=|-=|\*=|\/=|%=|&=|\|=|\^=|<<|>>|\*\*|[^\s])/y;
const BEFORE_EXPR = new Set([
  'return', 'typeof', 'instanceof', 'in', 'of', 'new', 'delete', 'void', 'throw', 'case',
  'do', 'else', 'yield', 'await', 'extends', 'export', 'default',
]);
const NOT_EXPR_END = new Set([
  'return', 'typeof', 'instanceof', 'in', 'of', 'new', 'delete', 'void', 'throw', 'case',
  'do', 'else', 'yield', 'await', 'extends', 'export', 'import', 'let', 'const', 'var',
  'function', 'class', 'if', 'for', 'while', 'with', 'switch', 'try', 'catch', 'finally',
  'async',
]);
const BLOCK_HEADS = new Set([
  'function', 'class', 'if', 'for', 'while', 'do', 'try', 'switch', 'with',
]);
const CONTROL_HEADS = new Set(['if', 'for', 'while', 'with']);
const NON_EXPR_HEADS = new Set([
  'var', 'const', 'function', 'class', 'if', 'for', 'while', 'do', 'try', 'switch',
  'return', 'throw', 'break', 'continue', 'debugger', 'with', 'export', 'enum',
]);

const SPACE = /\s/u;
const LINE_BREAK = /[\n\r\u2028\u2029]/;
const LETTER = /[a-z]/i;

function isNewline(c) {
  return c === 10 || c === 13 || c === 0x2028 || c === 0x2029;
}

function regexAllowed(prev) {
  if (prev === null) return true;
  if (prev.k === 'n') return SetPrototypeHas(BEFORE_EXPR, prev.v);
  if (prev.k === 'p') return !(prev.v === ')' || prev.v === ']' || prev.v === '++' || prev.v === '--');
  return false;
}

function scanTemplate(src, i) {
  const n = src.length;
  while (i < n) {
    const c = StringPrototypeCharCodeAt(src, i);
    if (c === 92) i += 2;
    else if (c === 96) return { end: i + 1, open: false };
    else if (c === 36 && StringPrototypeCharCodeAt(src, i + 1) === 123) return { end: i + 2, open: true };
    else i++;
  }
  return { end: n, open: false };
}

// Tokens: k = kind (n name, num, str, tpl, re, p punctuator), v = text (names and
// punctuators), s/e = offsets, d = bracket depth, nl = newline before the token.
export function tokenize(src) {
  const toks = [];
  const stack = [];
  const n = src.length;
  let i = 0;
  let nl = false;
  let prev = null;
  const push = (k, v, s, e, d) => {
    prev = { k, v, s, e, d, nl };
    ArrayPrototypePush(toks, prev);
    nl = false;
  };
  while (i < n) {
    const c = StringPrototypeCharCodeAt(src, i);
    if (isNewline(c)) {
      nl = true;
      i++;
      continue;
    }
    if (c === 32 || c === 9 || c === 11 || c === 12 || c === 0xa0 || c === 0xfeff) {
      i++;
      continue;
    }
    if (c > 127 && regExpTest(SPACE, src[i])) {
      i++;
      continue;
    }
    const s = i;
    if (c === 47) {
      const c2 = StringPrototypeCharCodeAt(src, i + 1);
      if (c2 === 47) {
        while (i < n && !isNewline(StringPrototypeCharCodeAt(src, i))) i++;
        continue;
      }
      if (c2 === 42) {
        const end = StringPrototypeIndexOf(src, '*/', i + 2);
        const stop = end < 0 ? n : end + 2;
        if (regExpTest(LINE_BREAK, StringPrototypeSlice(src, i, stop))) nl = true;
        i = stop;
        continue;
      }
      if (regexAllowed(prev)) {
        let j = i + 1;
        let inClass = false;
        let ok = false;
        while (j < n) {
          const r = StringPrototypeCharCodeAt(src, j);
          if (isNewline(r)) break;
          if (r === 92) j += 2;
          else if (r === 91) {
            inClass = true;
            j++;
          } else if (r === 93) {
            inClass = false;
            j++;
          } else if (r === 47 && !inClass) {
            ok = true;
            j++;
            break;
          } else j++;
        }
        if (ok) {
          while (j < n && regExpTest(LETTER, src[j])) j++;
          i = j;
          push('re', undefined, s, i, stack.length);
          continue;
        }
      }
    }
    if (c === 34 || c === 39) {
      let j = i + 1;
      while (j < n) {
        const r = StringPrototypeCharCodeAt(src, j);
        if (r === 92) j += 2;
        else if (r === c) {
          j++;
          break;
        } else if (isNewline(r)) break;
        else j++;
      }
      i = MathMin(j, n);
      push('str', undefined, s, i, stack.length);
      continue;
    }
    if (c === 96 || (c === 125 && stack[stack.length - 1] === '${')) {
      if (c === 125) ArrayPrototypePop(stack);
      const t = scanTemplate(src, i + 1);
      i = t.end;
      push('tpl', undefined, s, i, stack.length);
      if (t.open) ArrayPrototypePush(stack, '${');
      continue;
    }
    if ((c >= 48 && c <= 57) || (c === 46 && StringPrototypeCharCodeAt(src, i + 1) >= 48 && StringPrototypeCharCodeAt(src, i + 1) <= 57)) {
      RE_NUM.lastIndex = i;
      const m = RegExpPrototypeExec(RE_NUM, src);
      i += m ? MathMax(m[0].length, 1) : 1;
      push('num', undefined, s, i, stack.length);
      continue;
    }
    RE_NAME.lastIndex = i;
    const name = RegExpPrototypeExec(RE_NAME, src);
    if (name) {
      i += name[0].length;
      push('n', name[0], s, i, stack.length);
      continue;
    }
    RE_PUNCT.lastIndex = i;
    const m = RegExpPrototypeExec(RE_PUNCT, src);
    const v = m ? m[0] : src[i];
    i += v.length;
    if (v === '(' || v === '[' || v === '{') {
      push('p', v, s, i, stack.length);
      ArrayPrototypePush(stack, v);
    } else if (v === ')' || v === ']' || v === '}') {
      if (stack.length) ArrayPrototypePop(stack);
      push('p', v, s, i, stack.length);
    } else {
      push('p', v, s, i, stack.length);
    }
  }
  return toks;
}

function endsExpression(t) {
  if (t.k === 'n') return !SetPrototypeHas(NOT_EXPR_END, t.v);
  if (t.k === 'p') return t.v === ')' || t.v === ']' || t.v === '}' || t.v === '++' || t.v === '--';
  return true;
}

function startsStatement(t) {
  if (t.k === 'n') return t.v !== 'in' && t.v !== 'instanceof';
  if (t.k === 'p') return t.v === '!' || t.v === '~' || t.v === '++' || t.v === '--';
  return t.k !== 'tpl';
}

// Indices (into toks) of the first token of each top-level statement.
export function statementHeads(toks) {
  const heads = [];
  let head = null;
  let prevTop = null;
  let parenState = 0; // control head: 1 waiting for its "(...)"
  let bodyNext = false;
  let freshAt = -1; // a static import declaration ends just before this token
  for (let i = 0; i < toks.length; i++) {
    const t = toks[i];
    if (t.d !== 0) continue;
    let fresh;
    if (prevTop === null || i === freshAt) fresh = true;
    else if (bodyNext) fresh = false;
    else if (prevTop.k === 'p' && prevTop.v === ';') fresh = true;
    else if (t.k === 'n' && (t.v === 'else' || t.v === 'catch' || t.v === 'finally')) fresh = false;
    else if (t.k === 'n' && t.v === 'while' && head && head.v === 'do') fresh = false;
    else if (
      prevTop.k === 'p' &&
      prevTop.v === '}' &&
      head &&
      ((head.k === 'n' && SetPrototypeHas(BLOCK_HEADS, head.v)) || (head.k === 'p' && head.v === '{') ||
        head.asyncFunction)
    ) {
      fresh = true;
    } else fresh = t.nl && endsExpression(prevTop) && startsStatement(t);
    bodyNext = false;
    if (fresh && !(t.k === 'p' && t.v === ';')) {
      head = t;
      if (t.k === 'n' && t.v === 'async') {
        const nx = toks[i + 1];
        t.asyncFunction = !!nx && nx.k === 'n' && nx.v === 'function' && !nx.nl;
      }
      ArrayPrototypePush(heads, i);
      parenState = t.k === 'n' && SetPrototypeHas(CONTROL_HEADS, t.v) ? 1 : 0;
      if (t.k === 'n' && t.v === 'import') {
        const parsed = parseImport(toks, i);
        if (parsed) freshAt = parsed.next;
      }
    } else if (fresh) {
      head = null;
    }
    if (t.k === 'n' && (t.v === 'else' || t.v === 'do')) bodyNext = true;
    if (parenState === 1 && t.k === 'p' && t.v === ')') {
      parenState = 0;
      bodyNext = true;
    }
    prevTop = t;
  }
  return heads;
}

// Is the statement starting at toks[i] a declaration or control statement?
// A `using` or `await using` declaration starting at toks[i]: the index of its first
// binding's name, else -1. (`using x = ...` is nothing else: no line break may follow
// `using`, and a declaration needs its initializer.)
export function usingDeclaration(toks, i) {
  let at = i;
  if (toks[at].k === 'n' && toks[at].v === 'await') at++;
  const t = toks[at];
  const name = toks[at + 1];
  const eq = toks[at + 2];
  if (!t || t.k !== 'n' || t.v !== 'using' || (at > i && t.nl)) return -1;
  if (!name || name.k !== 'n' || name.nl || !eq || eq.k !== 'p' || eq.v !== '=') return -1;
  return at + 1;
}

export function isNonExpressionStatement(toks, i) {
  const t = toks[i];
  const nx = toks[i + 1];
  if (t.k === 'p') return t.v === '{';
  if (t.k !== 'n') return false;
  if (SetPrototypeHas(NON_EXPR_HEADS, t.v)) return true;
  if ((t.v === 'using' || t.v === 'await') && usingDeclaration(toks, i) >= 0) return true;
  if (t.v === 'let') return !!nx && (nx.k === 'n' || nx.v === '[' || nx.v === '{');
  if (t.v === 'import') return !nx || !(nx.v === '(' || nx.v === '.');
  if (t.v === 'async') return !!t.asyncFunction;
  if (nx && nx.k === 'p' && nx.v === ':' && nx.d === 0) return true; // label
  return false;
}

export function matchingClose(toks, open) {
  const depth = toks[open].d;
  for (let j = open + 1; j < toks.length; j++) {
    if (toks[j].d === depth && toks[j].k === 'p' && (toks[j].v === '}' || toks[j].v === ')' || toks[j].v === ']')) {
      return j;
    }
  }
  return -1;
}

// A static `import` declaration starting at toks[hi]: its parts and the index of the
// token after it; null when it is not one we understand.
export function parseImport(toks, hi) {
  let j = hi + 1;
  let def = null;
  let ns = null;
  let named = null;
  let spec = null;
  let attrs = null;
  const at = (k) => toks[k] || { k: 'eof', v: undefined };
  if (at(j).k === 'str') {
    spec = at(j);
    j++;
  } else {
    if (at(j).k === 'n' && !(at(j).v === 'from' && at(j + 1).k === 'str')) {
      def = at(j).v;
      j++;
      if (at(j).v === ',') j++;
    }
    if (at(j).v === '*') {
      if (at(j + 1).v !== 'as' || at(j + 2).k !== 'n') return null;
      ns = at(j + 2).v;
      j += 3;
    } else if (at(j).v === '{') {
      named = [];
      j++;
      while (at(j).v !== '}') {
        const item = at(j);
        if (item.k !== 'n' && item.k !== 'str') return null;
        let local = null;
        j++;
        if (at(j).v === 'as') {
          if (at(j + 1).k !== 'n') return null;
          local = at(j + 1).v;
          j += 2;
        } else if (item.k === 'str') {
          return null;
        }
        ArrayPrototypePush(named, { item, local });
        if (at(j).v === ',') j++;
        else if (at(j).v !== '}') return null;
      }
      j++;
    }
    if (def === null && ns === null && named === null) return null;
    if (at(j).v !== 'from' || at(j + 1).k !== 'str') return null;
    spec = at(j + 1);
    j += 2;
  }
  if ((at(j).v === 'with' || at(j).v === 'assert') && at(j + 1).v === '{' && !at(j).nl) {
    const close = matchingClose(toks, j + 1);
    if (close < 0) return null;
    attrs = [toks[j + 1], toks[close]];
    j = close + 1;
  }
  if (at(j).v === ';') j++;
  return { def, ns, named, spec, attrs, next: j };
}
