"""Markdown from a model, as Telegram HTML that always parses, in chunks that fit a message.

Models answer in Markdown; Telegram's HTML parse mode knows a handful of tags
and rejects a whole message over one stray ``<`` or unclosed tag. So the
conversion is forgiving: what it recognises becomes markup, everything else is
text escaped exactly once (``bot.text.esc``), and an unbalanced marker stays as
the character the model typed. Each line is parsed on its own, which keeps a
stray ``*`` from swallowing the rest of an answer.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass
from urllib.parse import urlsplit

from bot.text import TELEGRAM_LIMIT, esc

RULE = "—" * 10
BULLET = "• "
MAX_URL_LENGTH = 2048  # longer hrefs would crowd the chunk they must be reopened in
_MAX_NESTING = 16  # deeper emphasis is noise, and recursion must stay shallow
_LINK_SCHEMES = frozenset({"http", "https", "tg", "mailto"})
_PUNCTUATION = frozenset(string.punctuation)
_EMPHASIS_TAGS = {"**": "b", "__": "b", "*": "i", "_": "i", "~~": "s"}

_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
_HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.+?)(?:[ \t]+#+)?$")
_RULE = re.compile(r"^ {0,3}([-*_])(?:[ \t]*\1){2,}$")
_BULLET = re.compile(r"^([ \t]*)[-*+][ \t]+(.*)$")
_QUOTE = re.compile(r"^ {0,3}> ?")
_TABLE_DELIMITER = re.compile(r"^[ \t]*\|?[ \t]*:?-+:?[ \t]*(?:\|[ \t]*:?-+:?[ \t]*)*\|?[ \t]*$")
_CELL_SPLIT = re.compile(r"(?<!\\)\|")
_CELL_MARKUP = re.compile(r"(\*\*|__|~~|`)(?=\S)(.+?)(?<=\S)\1")
_LANGUAGE = re.compile(r"[\w#+.-]{1,32}")  # a longer "language" is not one
_PLAIN = re.compile(r"[^\\`\[<*_~hH]+")
_BARE_URL = re.compile(r"https?://[^\s<>]+", re.IGNORECASE)
_AUTOLINK = re.compile(r"<([A-Za-z][A-Za-z0-9+.-]*:[^\s<>]+)>")
# ``(url "title")`` after a link's ``]``; the url may be in <> or hold one level of ().
_LINK_TAIL = re.compile(
    r"""\([ \t]*(?:<([^<>]*)>|((?:[^\s()]|\([^\s()]*\))*))(?:[ \t]+(?:"[^"]*"|'[^']*'))?[ \t]*\)"""
)
# What a cut may not split: a tag, an entity, a run of plain characters (split further
# by _tokens), or any one other character.
_HTML_TOKEN = re.compile(
    r"<(/?)([A-Za-z][\w-]*)[^>]*>|&(?:[A-Za-z][A-Za-z0-9]*|#\w+);|([^<&\s]+)|.", re.DOTALL
)
_URL_TRAILER = ".,:;!?*_~'\""


def to_telegram_html(markdown: str) -> str:
    """Render a model's Markdown as Telegram HTML: tags closed and nested, text escaped once."""
    lines = markdown.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return "\n".join(_blocks(lines, quoted=False))


def _blocks(lines: list[str], *, quoted: bool) -> list[str]:
    """Output lines for ``lines``; a code block, table or quote is one multi-line item."""
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        fence = _FENCE.match(line)
        if fence and not (fence["fence"][0] == "`" and "`" in fence["info"]):
            i, block = _code_block(lines, i, fence)
            _append(out, block)
        elif _QUOTE.match(line):
            end = i
            while end < len(lines) and _QUOTE.match(lines[end]):
                end += 1
            inner = [_QUOTE.sub("", quoted_line, count=1) for quoted_line in lines[i:end]]
            body = "\n".join(_blocks(inner, quoted=True))  # Telegram cannot nest quotes: flatten
            if body:
                _append(out, body if quoted else f"<blockquote>{body}</blockquote>")
            i = end
        elif "|" in line and i + 1 < len(lines) and _is_table(line, lines[i + 1]):
            end = i + 2
            while end < len(lines) and "|" in lines[end] and not _FENCE.match(lines[end]):
                end += 1
            _append(out, _table(lines[i:end]))
            i = end
        else:
            _append(out, _line(line.rstrip()))
            i += 1
    while out and not out[-1]:
        out.pop()
    return out


def _append(out: list[str], item: str) -> None:
    """Add an output line, keeping at most one blank line in a row and none at the top."""
    if item or (out and out[-1]):
        out.append(item)


def _code_block(lines: list[str], start: int, fence: re.Match[str]) -> tuple[int, str]:
    """A fenced block from ``start``, escaped verbatim; an unclosed fence runs to the end."""
    marker, indent = fence["fence"], len(fence["indent"])
    closing = re.compile(rf"^[ \t]*{re.escape(marker[0])}{{{len(marker)},}}[ \t]*$")
    body: list[str] = []
    end = start + 1
    while end < len(lines) and not closing.match(lines[end]):
        line = lines[end]
        cut = len(line) - len(line.lstrip(" \t"))
        body.append(line[min(cut, indent) :])
        end += 1
    code = esc("\n".join(body))
    language = _LANGUAGE.fullmatch((fence["info"].split() or [""])[0])
    if not code.strip():
        html = ""
    elif language:
        html = f'<pre><code class="language-{esc(language[0])}">{code}</code></pre>'
    else:
        html = f"<pre>{code}</pre>"
    return end + 1, html


def _is_table(header: str, delimiter: str) -> bool:
    """A GFM table starts with a header row and a ``|---|:--:|`` row of as many cells."""
    if "|" not in delimiter or not _TABLE_DELIMITER.match(delimiter):
        return False
    return len(_cells(header)) == len(_cells(delimiter))


def _cells(row: str) -> list[str]:
    """A table row's cells, with ``\\|`` unescaped and the simplest inline markup dropped."""
    row = row.strip()
    row = row.removeprefix("|")
    if row.endswith("|") and not row.endswith("\\|"):
        row = row[:-1]
    cells = [cell.strip().replace("\\|", "|") for cell in _CELL_SPLIT.split(row)]
    return [_CELL_MARKUP.sub(r"\2", cell) for cell in cells]


def _table(rows: list[str]) -> str:
    """A table as monospaced text: a phone cannot show columns, but it can line them up."""
    header, delimiter, *body = (_cells(row) for row in rows)
    width = max(len(cells) for cells in (header, *body))  # a cell past the header is kept
    table = [cells + [""] * (width - len(cells)) for cells in (header, *body)]
    sizes = [max(len(cells[column]) for cells in table) for column in range(width)]
    aligns = [(cell.startswith(":"), cell.endswith(":")) for cell in delimiter]
    aligns += [(False, False)] * (width - len(aligns))
    lines: list[str] = []
    for index, cells in enumerate(table):
        padded: list[str] = []
        for cell, size, (left, right) in zip(cells, sizes, aligns, strict=True):
            if right and left:
                padded.append(cell.center(size))
            elif right:
                padded.append(cell.rjust(size))
            else:
                padded.append(cell.ljust(size))
        filled = max((column for column, cell in enumerate(cells) if cell), default=-1) + 1
        lines.append(" | ".join(padded[:filled]).rstrip())
        if index == 0:
            lines.append("-+-".join("-" * size for size in sizes))
    text = "\n".join(lines)
    return f"<pre>{esc(text)}</pre>"


def _line(line: str) -> str:
    """One line outside code: a heading, a rule, a bullet, or text with inline markup."""
    if heading := _HEADING.match(line):
        return f"<b>{_inline(heading[2])}</b>"
    if _RULE.match(line):
        return RULE
    if bullet := _BULLET.match(line):
        return f"{bullet[1]}{BULLET}{_inline(bullet[2])}"
    return _inline(line)


def _inline(text: str, *, in_link: bool = False) -> str:
    """Inline Markdown of one line as HTML.

    Inside a link's own text, only emphasis is markup: Telegram lets neither
    a link nor code sit inside a link.
    """
    return _Inline(text, in_link).parse(0, ())[0]


def _link_ok(url: str) -> bool:
    """Only web, mail and Telegram links are worth a tap; anything else stays text."""
    if not url or len(url) > MAX_URL_LENGTH or any(ch.isspace() or ord(ch) < 32 for ch in url):
        return False
    scheme, colon, rest = url.partition(":")
    if not colon or scheme.lower() not in _LINK_SCHEMES:
        return False
    if scheme.lower() in {"http", "https"}:
        try:
            return bool(urlsplit(url).netloc)
        except ValueError:  # e.g. a broken IPv6 host
            return False
    return bool(rest)


def _anchor(url: str, label: str) -> str:
    href = esc(url).replace('"', "&quot;")
    return f'<a href="{href}">{label}</a>'


class _Inline:
    """A recursive-descent pass over one line: code spans, links and emphasis.

    ``parse`` returns at the closer of the innermost open marker, or, when the
    closer belongs to an outer marker, before it, so the outer level closes
    there and the inner opener falls back to literal text. Nothing is scanned
    twice, and every tag it writes is closed inside the call that opened it.
    """

    def __init__(self, text: str, in_link: bool) -> None:
        self.text = text
        self.in_link = in_link
        self._brackets: dict[int, int] | None = None

    def parse(self, pos: int, stack: tuple[str, ...]) -> tuple[str, int, bool]:
        """HTML from ``pos`` to the end or to a closer; True if ``stack[-1]`` was closed."""
        text, out = self.text, []
        i = pos
        while i < len(text):
            plain = _PLAIN.match(text, i)
            if plain:
                out.append(esc(plain[0]))
                i = plain.end()
                continue
            char = text[i]
            if char == "\\" and i + 1 < len(text) and text[i + 1] in _PUNCTUATION:
                out.append(esc(text[i + 1]))
                i += 2
            elif char == "`":
                html, i = self._code(i)
                out.append(html)
            elif char in "[<hH":
                html, i = self._link(i)
                out.append(html)
            elif char in "*_~":
                run = _run(text, i)
                before = text[i - 1] if i else " "
                after = text[i + run] if i + run < len(text) else " "
                if not before.isspace() and not after.isalnum():  # can close
                    closes = _closer(char, run, stack)
                    if closes is not None and closes == len(stack) - 1:
                        return "".join(out), i + len(stack[-1]), True
                    if closes is not None:
                        return "".join(out), i, False
                marker = char * 2 if run >= 2 else char
                opens = not after.isspace() and not before.isalnum()
                if marker == "~" or not opens or len(stack) >= _MAX_NESTING:
                    out.append(esc(text[i : i + run]))
                    i += run
                    continue
                inner, i, closed = self.parse(i + len(marker), (*stack, marker))
                if closed and inner:
                    tag = _EMPHASIS_TAGS[marker]
                    out.append(f"<{tag}>{inner}</{tag}>")
                else:
                    out.append(esc(marker) + inner + (esc(marker) if closed else ""))
            else:
                out.append(esc(char))
                i += 1
        return "".join(out), len(text), False

    def _code(self, start: int) -> tuple[str, int]:
        """A code span closed by a same-length backtick run (plain in a link), else backticks."""
        text = self.text
        run = _run(text, start)
        search = start + run
        while (found := text.find("`" * run, search)) >= 0:
            end = found + run
            while end < len(text) and text[end] == "`":
                end += 1
            if end - found == run:
                code = text[start + run : found]
                if code.strip() and code[0] == code[-1] == " ":
                    code = code[1:-1]
                return (esc(code) if self.in_link else f"<code>{esc(code)}</code>"), end
            search = end
        return esc("`" * run), start + run

    def _link(self, start: int) -> tuple[str, int]:
        """``[text](url)``, ``<url>`` or a bare URL (kept whole so its ``_`` stay text)."""
        text = self.text
        char = text[start]
        if char == "[" and not self.in_link:
            if self._brackets is None:
                self._brackets = _brackets(text)
            close = self._brackets.get(start)
            tail = _LINK_TAIL.match(text, close + 1) if close is not None else None
            if close is not None and tail:
                url = tail[1] if tail[1] is not None else tail[2]
                if _link_ok(url):
                    label = _inline(text[start + 1 : close], in_link=True) or esc(url)
                    return _anchor(url, label), tail.end()
        elif (
            char == "<"
            and not self.in_link
            and (auto := _AUTOLINK.match(text, start))
            and _link_ok(auto[1])
        ):
            return _anchor(auto[1], esc(auto[1])), auto.end()
        elif (
            char in "hH"
            and not (start and text[start - 1].isalnum())
            and (bare := _BARE_URL.match(text, start))
        ):
            url = bare[0]
            while url and (url[-1] in _URL_TRAILER or _unbalanced_paren(url)):
                url = url[:-1]
            return esc(url), start + len(url)
        return esc(char), start + 1


def _run(text: str, start: int) -> int:
    """How many times the character at ``start`` repeats from there."""
    end = start
    while end < len(text) and text[end] == text[start]:
        end += 1
    return end - start


def _unbalanced_paren(url: str) -> bool:
    """A URL's final ``)`` that closes a parenthesis around it, not one inside it."""
    return url.endswith(")") and url.count(")") > url.count("(")


def _closer(char: str, run: int, stack: tuple[str, ...]) -> int | None:
    """Which open marker a run of ``run`` × ``char`` closes: an exact match first, innermost out."""
    for index in range(len(stack) - 1, -1, -1):
        if stack[index] == char * run:
            return index
    if stack and stack[-1][0] == char and len(stack[-1]) <= run:
        return len(stack) - 1
    return None


def _brackets(text: str) -> dict[int, int]:
    """Where each ``[`` of a line closes, found in one pass so links cost linear time."""
    pairs: dict[int, int] = {}
    opened: list[int] = []
    i = 0
    while i < len(text):
        if text[i] == "\\":
            i += 1
        elif text[i] == "[":
            opened.append(i)
        elif text[i] == "]" and opened:
            pairs[opened.pop()] = i
        i += 1
    return pairs


@dataclass(frozen=True, slots=True)
class _Token:
    """A piece of HTML no cut may split: a tag, an entity, or one character."""

    raw: str
    tag: str = ""  # lowercased tag name, "" for text
    closing: bool = False


_OpenTags = tuple[tuple[str, str], ...]  # (name, the opening tag as written), outermost first


def split_html(html: str, limit: int = TELEGRAM_LIMIT) -> list[str]:
    """Split rendered HTML into messages of at most ``limit`` characters of raw HTML.

    A cut falls between paragraphs if one is in the second half of the chunk,
    else between lines, else between words, else between any two tokens (never
    inside a tag or an entity); the whitespace at a cut is dropped, except the
    indentation that starts a line of code. Tags open at a cut are closed at the end of
    the chunk and reopened, attributes and all, at the start of the next.
    Raises ValueError only when ``limit`` cannot hold the tags open at a cut.
    """
    if not html.strip():
        return []
    if len(html) <= limit:
        return [html]
    tokens = _tokens(html, max(limit // 32, 1))
    chunks: list[str] = []
    start = 0
    open_tags: _OpenTags = ()
    while start < len(tokens):
        chunk, start, open_tags = _take(tokens, start, open_tags, limit)
        chunk = _drop_empty_elements(chunk)
        if re.sub(r"<[^>]*>|\s", "", chunk):
            chunks.append(chunk)
    return chunks


def _tokens(html: str, piece: int) -> list[_Token]:
    """``html`` as tokens; plain runs come in pieces, where a long word may be cut."""
    tokens: list[_Token] = []
    for match in _HTML_TOKEN.finditer(html):
        raw = match[0]
        if match[2]:
            tokens.append(_Token(raw, match[2].lower(), bool(match[1])))
        elif not match[3] or len(raw) <= piece:
            tokens.append(_Token(raw))
        else:
            tokens.extend(_Token(raw[i : i + piece]) for i in range(0, len(raw), piece))
    return tokens


@dataclass(frozen=True, slots=True)
class _Cut:
    """A place a chunk could end, remembered while the chunk grows past it."""

    end: int  # the chunk ends before this token
    resume: int  # the next chunk starts at this token (past the whitespace at the cut)
    open_tags: _OpenTags
    size: int


def _take(
    tokens: list[_Token], start: int, open_tags: _OpenTags, limit: int
) -> tuple[str, int, _OpenTags]:
    """The next chunk from ``start``: its HTML, where the next one starts, what is open there."""
    prefix = "".join(raw for _, raw in open_tags)
    size = len(prefix)
    closers = sum(len(name) + 3 for name, _ in open_tags)
    cuts: dict[str, _Cut] = {}
    current = open_tags
    i = start
    while i < len(tokens):
        token = tokens[i]
        if i > start and not (tokens[i - 1].tag and not tokens[i - 1].closing):
            cuts["any"] = _Cut(i, i, current, size)
            if token.raw == "\n":
                resume = i
                while resume < len(tokens) and tokens[resume].raw == "\n":
                    resume += 1
                kind = "paragraph" if resume - i >= 2 else "line"
                cuts[kind] = _Cut(i, resume, current, size)
            elif token.raw == " ":
                cuts["word"] = _Cut(i, i + 1, current, size)
        after, after_closers = current, closers
        if token.tag and not token.closing:
            after = (*current, (token.tag, token.raw))
            after_closers += len(token.tag) + 3
        elif token.tag and current and current[-1][0] == token.tag:
            after = current[:-1]
            after_closers -= len(token.tag) + 3
        if size + len(token.raw) + after_closers > limit:
            break
        size += len(token.raw)
        current, closers = after, after_closers
        i += 1
    else:
        return prefix + _raw(tokens, start, len(tokens)) + _closing(current), len(tokens), ()
    cut = next(
        (
            cuts[kind]
            for kind in ("paragraph", "line", "word")
            if kind in cuts and cuts[kind].size >= limit // 2
        ),
        cuts.get("any"),
    )
    if cut is None:
        raise ValueError(f"a {limit}-character chunk cannot hold the tags open at this point")
    end, resume = cut.end, cut.resume
    while end > start and tokens[end - 1].raw.isspace():
        end -= 1
    verbatim = any(name in {"pre", "code"} for name, _ in cut.open_tags)  # indentation counts
    while not verbatim and resume < len(tokens) and tokens[resume].raw.isspace():
        resume += 1
    return prefix + _raw(tokens, start, end) + _closing(cut.open_tags), resume, cut.open_tags


def _raw(tokens: list[_Token], start: int, end: int) -> str:
    return "".join(token.raw for token in tokens[start:end])


def _closing(open_tags: _OpenTags) -> str:
    return "".join(f"</{name}>" for name, _ in reversed(open_tags))


def _drop_empty_elements(chunk: str) -> str:
    """Remove ``<b></b>`` and the like that a cut next to a tag leaves behind."""
    while True:
        shorter = re.sub(r"<([A-Za-z][\w-]*)\b[^>]*></\1>", "", chunk)
        if shorter == chunk:
            return chunk
        chunk = shorter
