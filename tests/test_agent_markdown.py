"""A model's Markdown becomes Telegram HTML that always parses, split into messages that fit.

Each construct a model writes has a case; then long answers are split and
every chunk is checked the way Telegram checks it (``check_text``), and a
seeded property loop throws random mixes of Markdown's special characters at
both functions: whatever comes in, what goes out parses, fits, and keeps
every visible character.
"""

from __future__ import annotations

import random

import pytest

from bot.agent.markdown import BULLET, RULE, split_html, to_telegram_html
from bot.text import TELEGRAM_LIMIT
from bot.transport import html_to_text
from tests.fakes.botapi import BotAPIError, check_text


def _valid(html: str) -> None:
    """Telegram would accept ``html`` (an empty rendering has nothing to send)."""
    if html.strip():
        check_text(html, "HTML")


def _visible(html: str) -> str:
    """The text a reader sees, without whitespace: what no split may lose."""
    return "".join(html_to_text(html).split())


@pytest.mark.parametrize(
    ("markdown", "html"),
    [
        ("# Title", "<b>Title</b>"),
        ("### Step *two* ###", "<b>Step <i>two</i></b>"),
        ("###### six", "<b>six</b>"),
        ("####### seven", "####### seven"),
        ("#hashtag", "#hashtag"),
        ("**bold** and __bold__", "<b>bold</b> and <b>bold</b>"),
        ("*italic* and _italic_.", "<i>italic</i> and <i>italic</i>."),
        ("***both***", "<b><i>both</i></b>"),
        ("*a **b* c**", "<i>a **b</i> c**"),
        ("_a *b_ c*", "<i>a *b</i> c*"),
        ("**bold *nested* bold**", "<b>bold <i>nested</i> bold</b>"),
        ("snake_case_names and 2*3*4", "snake_case_names and 2*3*4"),
        ("a * b * c and a _ b _ c", "a * b * c and a _ b _ c"),
        ("~~gone~~ in ~5 min", "<s>gone</s> in ~5 min"),
        ("`x < y && **z**`", "<code>x &lt; y &amp;&amp; **z**</code>"),
        ("`` a ` b ``", "<code>a ` b</code>"),
        (r"\*not italic\*", "*not italic*"),
        (
            "[docs](https://example.com/a?b=1&c=2)",
            '<a href="https://example.com/a?b=1&amp;c=2">docs</a>',
        ),
        ('[q](https://x.io/"a")', '<a href="https://x.io/&quot;a&quot;">q</a>'),
        ("[**b** `c`](http://a.io)", '<a href="http://a.io"><b>b</b> c</a>'),
        ("[<https://a.io>](https://b.io)", '<a href="https://b.io">&lt;https://a.io&gt;</a>'),
        ("[me](tg://user?id=1)", '<a href="tg://user?id=1">me</a>'),
        ("[mail](mailto:a@b.io)", '<a href="mailto:a@b.io">mail</a>'),
        ("[](https://x.io)", '<a href="https://x.io">https://x.io</a>'),
        ("[x](javascript:alert(1))", "[x](javascript:alert(1))"),
        ("[file](src/main.py)", "[file](src/main.py)"),
        ("[x](https://)", "[x](https://)"),
        ("<https://x.io>", '<a href="https://x.io">https://x.io</a>'),
        ("see https://x.io/_a_b_ now", "see https://x.io/_a_b_ now"),
        (
            "- one\n  - two\n* three\n+ four",
            f"{BULLET}one\n  {BULLET}two\n{BULLET}three\n{BULLET}four",
        ),
        ("- **bold** item", f"{BULLET}<b>bold</b> item"),
        ("1. one\n2) two", "1. one\n2) two"),
        ("> quoted\n> **more**", "<blockquote>quoted\n<b>more</b></blockquote>"),
        ("> outer\n>> inner", "<blockquote>outer\ninner</blockquote>"),
        ("---", RULE),
        ("* * *", RULE),
        ("a\n\n\n\nb", "a\n\nb"),
        ("\n\ntrailing  \n\n", "trailing"),
    ],
)
def test_each_construct(markdown: str, html: str) -> None:
    assert to_telegram_html(markdown) == html
    check_text(html, "HTML")


def test_fenced_code_is_escaped_verbatim_with_its_language() -> None:
    markdown = "Run:\n```python\nif a < b and c & d:\n    print('**not bold**')\n```\nDone."
    assert to_telegram_html(markdown) == (
        'Run:\n<pre><code class="language-python">if a &lt; b and c &amp; d:\n'
        "    print('**not bold**')</code></pre>\nDone."
    )


def test_a_fence_without_language_an_indented_one_and_an_unclosed_one() -> None:
    assert to_telegram_html("```\nx\n```") == "<pre>x</pre>"
    assert to_telegram_html("- list:\n  ~~~sh\n  ls -l\n    deeper\n  ~~~") == (
        f'{BULLET}list:\n<pre><code class="language-sh">ls -l\n  deeper</code></pre>'
    )
    assert to_telegram_html("text\n```js\nlet a = 1;\n\n# not a heading") == (
        'text\n<pre><code class="language-js">let a = 1;\n\n# not a heading</code></pre>'
    )


def test_a_table_lines_up_in_a_pre_block() -> None:
    markdown = "| name | runs |\n|:-----|-----:|\n| **demo** | 3 |\n| a\\|b | 120 |\nafter"
    html = to_telegram_html(markdown)
    assert html == ("<pre>name | runs\n-----+-----\ndemo |    3\na|b  |  120</pre>\nafter")
    check_text(html, "HTML")


def test_a_row_longer_than_the_header_keeps_its_cells() -> None:
    assert to_telegram_html("| a | b |\n|---|---|\n| 1 | 2 | 3 |") == (
        "<pre>a | b\n--+---+--\n1 | 2 | 3</pre>"
    )


def test_pipes_without_a_delimiter_row_are_text() -> None:
    assert to_telegram_html("a | b\nc | d") == "a | b\nc | d"


@pytest.mark.parametrize(
    "markdown",
    ["**bold", "__x", "`tick", "[a](", "[a](https://x.io", "~~a", "a ****."],
)
def test_unbalanced_markers_stay_literal(markdown: str) -> None:
    html = to_telegram_html(markdown)
    check_text(html, "HTML")
    assert html_to_text(html) == markdown


def test_escaping_happens_exactly_once() -> None:
    assert to_telegram_html("a < b & c") == "a &lt; b &amp; c"
    assert to_telegram_html("&amp;") == "&amp;amp;"
    assert to_telegram_html("<b>not a tag</b>") == "&lt;b&gt;not a tag&lt;/b&gt;"
    assert to_telegram_html("`&lt;`") == "<code>&amp;lt;</code>"
    assert html_to_text(to_telegram_html("x > y && z")) == "x > y && z"


def _long_answer() -> str:
    paragraphs = [
        " ".join(f"word{p}x{w}" for w in range(random.Random(p).randint(20, 60))) for p in range(10)
    ]
    code = "\n".join(f"    line_{n} = compute({n}) & mask  # <{n}>" for n in range(60))
    return (
        "\n\n".join(paragraphs[:6])
        + f"\n\n```python\n{code}\n```\n\n"
        + "\n\n".join(paragraphs[6:])
    )


def test_a_long_answer_splits_into_valid_messages_that_keep_every_word() -> None:
    markdown = _long_answer()
    assert 5500 < len(markdown) < 6500
    html = to_telegram_html(markdown)
    chunks = split_html(html)
    assert len(chunks) >= 2
    for chunk in chunks:
        assert 0 < len(chunk) <= TELEGRAM_LIMIT
        check_text(chunk, "HTML")
    assert html_to_text("\n".join(chunks)).split() == html_to_text(html).split()


def test_a_long_code_block_spans_messages_as_several_pre_blocks() -> None:
    code = "\n".join(f"    value_{n} = {n} < limit" for n in range(400))
    chunks = split_html(to_telegram_html(f"```python\n{code}\n```"), 1000)
    assert len(chunks) >= 5
    for chunk in chunks:
        assert len(chunk) <= 1000
        assert chunk.startswith('<pre><code class="language-python">    value_')
        assert chunk.endswith("</code></pre>")
        check_text(chunk, "HTML")
    lines = [line for chunk in chunks for line in html_to_text(chunk).split("\n")]
    assert lines == code.split("\n")  # cut between lines, indentation kept


def test_cuts_prefer_paragraphs_then_lines_then_words() -> None:
    first, second = "a " * 30, "b " * 30
    assert split_html(f"{first.strip()}\n\n{second.strip()}", 80) == [first.strip(), second.strip()]
    assert split_html(f"{first.strip()}\n{second.strip()}", 80) == [first.strip(), second.strip()]
    words = split_html("alpha beta gamma delta epsilon", 12)
    assert words == ["alpha beta", "gamma delta", "epsilon"]
    assert split_html("x" * 25, 10) == ["x" * 10, "x" * 10, "x" * 5]


def test_a_cut_inside_a_tag_closes_and_reopens_it() -> None:
    html = '<blockquote expandable><a href="https://x.io">' + "link " * 30 + "</a></blockquote>"
    chunks = split_html(html, 80)
    assert len(chunks) > 2
    for chunk in chunks:
        assert chunk.startswith('<blockquote expandable><a href="https://x.io">link')
        assert chunk.endswith("</a></blockquote>")
        assert len(chunk) <= 80
        check_text(chunk, "HTML")


def test_a_cut_never_splits_an_entity_and_never_leaves_an_empty_chunk() -> None:
    chunks = split_html("&amp;" * 30, 12)
    assert chunks == ["&amp;&amp;"] * 15
    assert split_html("") == []
    assert split_html(" \n ") == []
    assert split_html("<b>short</b>") == ["<b>short</b>"]
    assert split_html("<b>x</b>" + " " * 40 + "<i>y</i>", 20) == ["<b>x</b>", "<i>y</i>"]


def test_a_limit_too_small_for_the_open_tags_says_so() -> None:
    with pytest.raises(ValueError, match="cannot hold"):
        split_html('<a href="https://example.com/long/path">' + "x" * 50 + "</a>", 40)


_PIECES = [
    *"*_~`[]()<>&#|\\!\n",
    "**",
    "__",
    "~~",
    "```",
    "```py\n",
    "\n\n",
    "\n- ",
    "\n  * ",
    "\n1. ",
    "\n> ",
    "\n# ",
    "\n---\n",
    "\n| a | b |\n|---|---|\n",
    "](https://x.io/a_b)",
    "](ftp://x)",
    "<https://x.io>",
    "https://x.io/_q_",
    "&amp;",
    "&lt;",
    "<b>",
    "</i>",
    '"',
    " ",
    " ",
    "    ",
    "é",
    "🙂",
]
_WORDS = ["word", "snake_case", "2*3", "x", "CamelCase", "a1", "--", "日本"]


def _nasty(rng: random.Random) -> str:
    pieces = [
        rng.choice(_PIECES if rng.random() < 0.6 else _WORDS) for _ in range(rng.randint(1, 80))
    ]
    return "".join(pieces)


def test_random_nasty_inputs_always_render_and_split_validly() -> None:
    rng = random.Random(20240611)
    for case in range(400):
        markdown = _nasty(rng)
        html = to_telegram_html(markdown)
        try:
            _valid(html)
            limit = rng.choice([TELEGRAM_LIMIT, 120, 200, 500])
            chunks = split_html(html, limit)
            for chunk in chunks:
                assert chunk.strip()
                assert len(chunk) <= limit
                check_text(chunk, "HTML")
            assert "".join(_visible(chunk) for chunk in chunks) == _visible(html)
        except (AssertionError, BotAPIError) as error:
            raise AssertionError(f"case {case}: {markdown!r} -> {html!r}") from error


def test_random_long_inputs_split_validly_at_the_telegram_limit() -> None:
    rng = random.Random(7)
    for case in range(10):
        markdown = "".join(_nasty(rng) for _ in range(50))
        html = to_telegram_html(markdown)
        chunks = split_html(html)
        try:
            for chunk in chunks:
                assert len(chunk) <= TELEGRAM_LIMIT
                check_text(chunk, "HTML")
            assert "".join(_visible(chunk) for chunk in chunks) == _visible(html)
        except (AssertionError, BotAPIError) as error:
            raise AssertionError(f"case {case}: {markdown!r}") from error


def test_rendering_is_linear_on_pathological_markers() -> None:
    markdown = "*a " * 3000 + "_b " * 3000 + "[" * 2000 + "`" * 500
    html = to_telegram_html(markdown)
    assert "<" not in html  # nothing balanced, so nothing became markup
    assert html_to_text(html) == markdown.strip()
    for chunk in split_html(html):
        check_text(chunk, "HTML")
