"""Model output to plain arithmetic text: LaTeX, unicode operators, mixed numbers."""

from __future__ import annotations

import re

TAINT = "\ue000"  # stands for anything non-numeric in an expression (\pi, \log, ±)
GSM8K_RE = re.compile(r"<<([^<>]*)>>")

_LATEX_CMD_RE = re.compile(r"\\([A-Za-z]+|.)", re.S)
_LATEX_DEGREES_RE = re.compile(r"\^\s*\{?\s*\\circ\s*\}?")
_SQRT_INDEX_RE = re.compile(r"\s*\[\s*(\d+)\s*\]")
_FRAC_CMDS = frozenset({"frac", "dfrac", "tfrac", "cfrac"})
_TEXT_CMDS = frozenset(
    "text textbf textit textrm textsf texttt mathrm mathbf mathit mathsf mbox emph boxed "
    "fbox operatorname underline".split()
)
_LATEX_SIMPLE: dict[str, str] = {
    # `×` rather than `*`: a LaTeX product is never Markdown emphasis.
    **dict.fromkeys("times cdot ast cdotp".split(), " × "),
    "div": " / ",
    # Sizing, spacing and inline math delimiters (`\left(`, `\,`, `\(`, `\$`) carry no
    # arithmetic; display math (`\[ ... \]`) stands on lines of its own.
    **dict.fromkeys(
        "left right big Big bigg Bigg bigl bigr Bigl Bigr displaystyle textstyle limits "
        "nolimits quad qquad , ; : ! > ( ) $ & ~".split()
        + [" "],
        " ",
    ),
    # `1 + 2 + \cdots + 10`: elided terms; `3.363\ldots`: a truncated decimal.
    **dict.fromkeys("cdots ldots dots".split(), "…"),
    **dict.fromkeys("[]", "\n"),
    "%": "%",
    "{": "(",
    "}": ")",
    "\\": "\n",
    # Relations other than `=` end a claim (a `;` is a clause break).
    **dict.fromkeys(
        "le leq ge geq lt gt ne neq approx sim simeq equiv cong to rightarrow Rightarrow "
        "implies iff Longrightarrow longrightarrow mapsto propto leqslant geqslant".split(),
        " ; ",
    ),
    **dict.fromkeys(["circ", "degree"], " degrees "),
}

_CHAR_MAP = str.maketrans(
    {
        **dict.fromkeys("\u2212\u2012\ufe63\uff0d", "-"),
        **dict.fromkeys("\u2715\u2716\u22c5\u00b7\u2219", "\u00d7"),
        "\u2217": "*",
        **dict.fromkeys("\u00f7\u2215\u2044", "/"),
        "\uff1d": "=",
        **dict.fromkeys("\u00a0\u2009\u202f\u2007", " "),
        "\u200b": "",
        **dict.fromkeys("\u2018\u2019", "'"),
        **dict.fromkeys("\u201c\u201d", '"'),
        "\u00b0": " degrees ",
        # Currency signs and LaTeX math delimiters alike carry no arithmetic.
        **dict.fromkeys("$€£¥₹", ""),
        "&": " ",
        **dict.fromkeys("±∓∞", TAINT),
    }
)
_SUPERSCRIPT_RE = re.compile(r"⁻?[⁰¹²³⁴⁵⁶⁷⁸⁹]+")
_SUPERSCRIPT_MAP = str.maketrans("⁰¹²³⁴⁵⁶⁷⁸⁹⁻", "0123456789-")
_VULGAR = {
    "½": "1/2", "⅓": "1/3", "⅔": "2/3", "¼": "1/4", "¾": "3/4", "⅕": "1/5", "⅖": "2/5",
    "⅗": "3/5", "⅘": "4/5", "⅙": "1/6", "⅚": "5/6", "⅛": "1/8", "⅜": "3/8", "⅝": "5/8",
    "⅞": "7/8",
}  # fmt: skip
# The digits are optional as a group, so a long digit run is not rescanned at every offset.
_VULGAR_RE = re.compile(r"(?:(?<!\d)(\d+)[ ]?)?([" + "".join(_VULGAR) + "])")
# An en dash between numbers is a minus; elsewhere it is punctuation.
_EN_DASH_RE = re.compile(r"(?<=[\d)])(\s*)\u2013(?=\s*[\d(])")
_BULLET_RE = re.compile(r"^[ \t]*[-*+•][ \t]+", re.M)
# A line that starts with `=` continues the one before (`x &= 3 + 4 \\ &= 7`).
_CONTINUED_RE = re.compile(r"[ \t]*\n[ \t]*(?==)")
# "2 1/2 hours" is a mixed number (proper fractions only).
_MIXED_RE = re.compile(r"(?<![\d.,/^])(\d+)[ ]+(\d+)/(\d+)(?![\d.,/])")


def _brace_arg(s: str, i: int) -> tuple[str, int] | None:
    """The LaTeX argument at s[i:]: `{...}` (balanced) or one character / command."""
    while i < len(s) and s[i].isspace():
        i += 1
    if i >= len(s):
        return None
    if s[i] == "{":
        depth = 0
        for k in range(i, len(s)):
            if s[k] == "{":
                depth += 1
            elif s[k] == "}":
                depth -= 1
                if depth == 0:
                    return s[i + 1 : k], k + 1
        return None
    if s[i] == "\\":
        m = _LATEX_CMD_RE.match(s, i)
        return (m.group(), m.end()) if m else None
    if s[i].isalnum():
        return s[i], i + 1
    return None


def _latex(s: str) -> str:
    """Rewrite the LaTeX that matters for arithmetic into plain text."""
    out: list[str] = []
    i = 0
    while (m := _LATEX_CMD_RE.search(s, i)) is not None:
        before = s[i : m.start()]
        name, j = m.group(1), m.end()
        if name in _FRAC_CMDS:
            a = _brace_arg(s, j)
            b = _brace_arg(s, a[1]) if a else None
            if a is None or b is None:
                out += [before, TAINT]
                i = j
                continue
            num, den = _latex(a[0]), _latex(b[0])
            frac = f"({num}/{den})" if num.isdecimal() and den.isdecimal() else f"(({num})/({den}))"
            whole = re.search(r"(?<![\d.])(\d+)\s*$", before)
            if whole and a[0].isdecimal() and b[0].isdecimal() and int(a[0]) < int(b[0]):
                # `2\frac{1}{2}` is the mixed number 2 1/2, not 2 * 1/2.
                before, frac = before[: whole.start()], f"({whole.group(1)}+{frac})"
            out += [before, frac]
            i = b[1]
        elif name == "sqrt":
            index = _SQRT_INDEX_RE.match(s, j)
            n = int(index.group(1)) if index else 2
            arg = _brace_arg(s, index.end() if index else j)
            symbol = {2: "√", 3: "∛", 4: "∜"}.get(n, TAINT)
            if arg is None:
                out += [before, TAINT]
                i = j
            else:
                out += [before, f"{symbol}({_latex(arg[0])})"]
                i = arg[1]
        elif name in ("begin", "end"):
            # `\begin{align*} ... \end{align*}`: display math on lines of its own; the blank
            # line keeps a matrix's last row from continuing into `= ...` after it.
            arg = _brace_arg(s, j)
            out += [before, "\n\n"]
            i = arg[1] if arg else j
        elif name in _TEXT_CMDS:
            arg = _brace_arg(s, j)
            out += [before, f" {_latex(arg[0])}" if arg else " "]
            i = arg[1] if arg else j
        elif name in _LATEX_SIMPLE:
            out += [before, _LATEX_SIMPLE[name]]
            i = j
        else:
            # \pi, \log, \binom{5}{2}, ...: the command and its arguments are not arithmetic.
            while j < len(s) and s[j] == "{" and (arg := _brace_arg(s, j)) is not None:
                j = arg[1]
            out += [before, TAINT]
            i = j
    out.append(s[i:])
    return "".join(out)


def _mixed(m: re.Match[str]) -> str:
    whole, num, den = m.groups()
    if 0 < int(num) < int(den):
        return f"({whole}+{num}/{den})"
    return m.group()


def _vulgar(m: re.Match[str]) -> str:
    whole, frac = m.groups()
    return f"({whole}+{_VULGAR[frac]})" if whole else f"({_VULGAR[frac]})"


def normalize(text: str) -> str:
    text = text.replace("{,}", ",")  # LaTeX thousands separator: 1{,}000
    text = text.replace("$$", "\n")  # display math stands on lines of its own
    if "\\" in text:
        text = _latex(_LATEX_DEGREES_RE.sub(" degrees ", text))
    text = text.translate(_CHAR_MAP)
    text = _SUPERSCRIPT_RE.sub(lambda m: "^" + m.group().translate(_SUPERSCRIPT_MAP), text)
    text = _VULGAR_RE.sub(_vulgar, text)
    text = _EN_DASH_RE.sub(r"\1-", text)
    text = _BULLET_RE.sub("", text)
    text = _CONTINUED_RE.sub(" ", text)
    return _MIXED_RE.sub(_mixed, text)
