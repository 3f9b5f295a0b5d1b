// Formulas in the data's text (questions, steps, reasons, critiques: elements of class `math`)
// rendered with KaTeX. Text stays text: KaTeX builds its output with DOM calls and trusts no
// command (no \href, \url, \htmlClass...); everything else goes in as text nodes. Each
// element keeps its source beside the rendering; `toggleSource` (key s) swaps the two.
(() => {
  "use strict";

  // Delimiters, `$$` before `$`. A bare \boxed{...} (how models end a solution) is math too.
  const PAIRS = [["$$", "$$", true], ["\\[", "\\]", true], ["\\(", "\\)", false], ["$", "$", false]];
  const BOXED = "\\boxed{";
  // Nothing is trusted: a command that would need it (\href, \url, \includegraphics,
  // \htmlClass...) fails the formula, which then shows as source like bad LaTeX.
  const OPTIONS = {
    throwOnError: true,
    trust: ({ command }) => {
      throw new Error(`${command} is not allowed here`);
    },
  };
  const SOURCE_KEY = "rmforge-review-math-source";

  // Where `close` ends what starts at `from`: outside braces, not escaped (as KaTeX's
  // auto-render finds it); -1 when it never does.
  function findClose(text, close, from) {
    let depth = 0;
    for (let i = from; i < text.length; i++) {
      if (depth <= 0 && text.startsWith(close, i)) return i;
      if (text[i] === "\\") i++;
      else if (text[i] === "{") depth++;
      else if (text[i] === "}") depth--;
    }
    return -1;
  }

  // `$` is also money ("$2 each and $3"): Pandoc's rule tells them apart. The opening `$` has
  // a non-space right after it, the closing one a non-space right before it and no digit
  // after it, and no blank line lies between.
  function dollarMath(text, start, end) {
    return end > start && !/\s/.test(text[start]) && !/\s/.test(text[end - 1])
      && !/\d/.test(text[end + 1] || "") && !/\n\s*\n/.test(text.slice(start, end));
  }

  function formulaAt(text, i) {
    if (text.startsWith(BOXED, i)) {
      const close = findClose(text, "}", i + BOXED.length);
      return close < 0 ? null : { tex: text.slice(i, close + 1), display: false, end: close + 1 };
    }
    const pair = PAIRS.find(([open]) => text.startsWith(open, i));
    if (!pair) return null;
    const [open, close, display] = pair;
    const start = i + open.length;
    const end = findClose(text, close, start);
    if (end < 0 || (open === "$" && !dollarMath(text, start, end))) return null;
    return { tex: text.slice(start, end), display, end: end + close.length };
  }

  // The text cut into plain strings and formulas ({tex, display, source}).
  function split(text) {
    const parts = [];
    let plain = 0;
    for (let i = 0; i < text.length; i++) {
      const formula = formulaAt(text, i);
      if (!formula) {
        if (text[i] === "\\") i++; // \$ is a dollar sign, not a delimiter
        continue;
      }
      if (i > plain) parts.push(text.slice(plain, i));
      parts.push({ ...formula, source: text.slice(i, formula.end) });
      plain = formula.end;
      i = formula.end - 1;
    }
    if (plain < text.length) parts.push(text.slice(plain));
    return parts;
  }

  function typeset({ tex, display, source }) {
    const span = document.createElement("span");
    span.title = source;
    try {
      katex.render(tex, span, { ...OPTIONS, displayMode: display });
      span.className = "math-formula";
    } catch (error) {
      // LaTeX KaTeX cannot read shows as its source (with KaTeX's message on hover), never
      // as an error box in its place.
      span.className = "math-error";
      span.textContent = source;
      span.title = error.message;
    }
    return span;
  }

  function renderElement(element) {
    element.dataset.math = "done";
    const source = element.textContent;
    const parts = split(source);
    if (parts.every((part) => typeof part === "string")) return;
    const rendered = document.createElement("span");
    rendered.className = "math-rendered";
    rendered.append(...parts.map((part) => (typeof part === "string" ? part : typeset(part))));
    const raw = document.createElement("span");
    raw.className = "math-source";
    raw.textContent = source;
    element.replaceChildren(rendered, raw);
  }

  // Renders what is not yet rendered: call it again after htmx swaps content in.
  function render() {
    document.querySelectorAll(".math:not([data-math])").forEach(renderElement);
  }

  // The choice outlives the page: a reviewer reading sources keeps them on the next rollout.
  const root = document.documentElement;
  window.rmforgeMath = {
    render,
    toggleSource() {
      const on = root.classList.toggle("math-show-source");
      if (on) localStorage.setItem(SOURCE_KEY, "1");
      else localStorage.removeItem(SOURCE_KEY);
    },
    restoreSource() {
      root.classList.toggle("math-show-source", localStorage.getItem(SOURCE_KEY) === "1");
    },
  };
})();
