"""``/status`` of many workflows: one overview message, what needs a look first, then pages.

The renderers are pure and checked on 1000 workflows over 5 nodes; the
buttons are pressed through the real bot, on a fleet of two nodes on Postgres
(this bot's, and a second node's 45 workflows as that node published them).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa

from bot.statuspages import PAGE_SIZE, list_page, needs_a_look, overview_page, paged
from bot.text import TELEGRAM_LIMIT, Message
from supervisor import dbschema
from supervisor.control import ControlDB
from supervisor.events import ProcessState, WorkflowStatus
from supervisor.fleet import registry
from supervisor.fleet.registry import Identity, NodeInfo
from supervisor.fleet.tables import FLEET_SCHEMA
from tests.bot_harness import ALERT_CHAT, COMMAND_CHAT, USER, bot_running, worker_table
from tests.conditions import wait_until
from tests.fakes.botapi import SentMessage
from tests.supervisor_harness import settings

NOW = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)
BROKEN: dict[int, ProcessState] = {7: "crashed", 250: "hung", 999: "gave_up", 500: "backoff"}


def fleet(count: int = 1000, nodes: int = 5) -> tuple[list[WorkflowStatus], list[NodeInfo]]:
    statuses = [
        WorkflowStatus(
            name=f"job-{index:04d}",
            state=BROKEN.get(index, "running"),
            heartbeat_age=1.0,
            node=f"node-{index % nodes}",
        )
        for index in range(count)
    ]
    statuses.sort(key=lambda status: status.node or "")
    infos = [
        NodeInfo(f"node-{n}", "host", NOW, NOW, alive=n != 3, stopped=False, down_since=None)
        for n in range(nodes)
    ]
    return statuses, infos


def labels(message: Message) -> list[str]:
    return [button.label for button in message.buttons]


def test_the_overview_of_a_thousand_is_one_message_with_what_needs_a_look_first() -> None:
    statuses, nodes = fleet()
    assert paged(statuses)
    page = overview_page(statuses, nodes, note="", tz=UTC, now=NOW.timestamp(), key="k1")
    assert len(page.text) <= TELEGRAM_LIMIT
    assert page.text.startswith("<b>1000 workflows on 5 nodes</b>: 996 ok")
    for n in range(5):
        assert f"<b>node-{n}</b>" in page.text
    assert "🔴 <b>node-3</b> down since" in page.text
    assert "<b>Needs a look</b> (4)" in page.text
    # Worst first: the give-up, the hang, the crash, then what is still trying.
    order = [page.text.index(f"job-{index:04d}") for index in (999, 250, 7, 500)]
    assert order == sorted(order)
    assert labels(page) == [f"pages 1–{1000 // PAGE_SIZE} ▶"]
    assert [b.data for b in page.buttons] == ["statuspage:k1:1"]


def test_a_page_lists_its_share_under_the_nodes_and_its_buttons_go_both_ways() -> None:
    statuses, _ = fleet()
    page = list_page(statuses, 3, "k1")
    assert page.text.startswith("<b>Workflows 41–60 of 1000</b>")
    assert "🖥 <i>node-0</i>" in page.text
    assert page.text.count("<code>") == PAGE_SIZE
    shown = [name for name in statuses[40:60]]
    assert labels(page) == [s.name for s in shown] + ["◀", f"4/{1000 // PAGE_SIZE} ▶"]
    assert page.buttons[0].data == f"status:{shown[0].name}"  # a name's detail, one tap
    assert labels(list_page(statuses, 1, "k1"))[PAGE_SIZE] == "◀ overview"
    last = list_page(statuses, 10_000, "k1")  # clamped to the last page
    assert last.text.startswith("<b>Workflows 981–1000 of 1000</b>")
    assert labels(last)[-1] == "◀"


def test_few_workflows_are_listed_in_full_and_nothing_wrong_is_said_so() -> None:
    statuses, _ = fleet(count=PAGE_SIZE)
    assert not paged(statuses)
    assert needs_a_look([s for s in statuses if s.state == "running"]) == []


def button(message: SentMessage, label: str) -> str:
    assert message.reply_markup is not None
    for row in message.reply_markup["inline_keyboard"]:
        for each in row:
            if each["text"] == label:
                return str(each["callback_data"])
    raise AssertionError(f"no {label!r} on {message.text!r}")


async def test_the_buttons_turn_one_message_into_pages_and_back(
    tmp_path: Path, postgres_url: str
) -> None:
    ControlDB(postgres_url).close()
    engine = sa.create_engine(postgres_url)
    with engine.begin() as conn:
        dbschema.settle(conn, FLEET_SCHEMA)
    other = Identity("node-big", "run-1", "host", 1)
    names = [f"job-{index:02d}" for index in range(45)]
    with engine.begin() as conn:
        registry.join(conn, other, names, timeout=60)
        registry.publish(
            conn,
            "node-big",
            [
                (i, WorkflowStatus(name=name, state="crashed" if i == 3 else "running"))
                for i, name in enumerate(names)
            ],
        )
    engine.dispose()
    conf = settings(tmp_path, db_url=postgres_url, node="node-a")
    async with bot_running(tmp_path, [worker_table(tmp_path)], conf=conf) as rig:
        [shown] = await rig.send("/status")
        assert "46 workflows on 2 nodes" in shown.text
        assert "<b>Needs a look</b> (1)\n💥 <b>job-03</b> crashed" in shown.text

        async def press(label: str, text: str) -> None:
            rig.fake.add_callback(button(shown, label), COMMAND_CHAT, USER, shown.message_id)
            await wait_until(lambda: text in shown.text, 20)

        await press("pages 1–3 ▶", "Workflows 1–20 of 46")
        await press("2/3 ▶", "Workflows 21–40 of 46")
        await press("◀", "Workflows 1–20 of 46")
        await press("◀ overview", "46 workflows on 2 nodes")
        assert not [
            m for m in rig.fake.sent_matching() if m.chat_id == ALERT_CHAT and "job" in m.text
        ]
