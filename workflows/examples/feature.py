"""Ship a feature behind gates (guide pattern 4): the UI waits until the core passes its tests.

``implement_core`` is retried in a capped fix loop until its tests pass; only
then does ``implement_ui`` run (its ``skip_if`` is the gate), and the final
check runs only when both are in.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from workflows import Context, Workflow, default_agent

wf = Workflow("feature")


class Work(BaseModel):
    part: str
    tests_passed: bool
    notes: str = ""


agent = default_agent(
    {
        "implement-core": [
            {"part": "core", "tests_passed": False, "notes": "edge case fails"},
            {"part": "core", "tests_passed": True},
        ],
        "implement-ui": {"part": "ui", "tests_passed": True},
        "verify": {"part": "all", "tests_passed": True, "notes": "end-to-end checks pass"},
    },
    system="You implement features test-first and report honestly whether the tests pass.",
    workdir=Path.cwd(),  # with a key, the agent reads and edits the repository it runs in
)


def core_not_green(ctx: Context) -> bool:
    latest = ctx.outputs.latest("implement-core")
    return latest is None or not latest.tests_passed


@wf.task(retries=2, timeout=1800)
def implement_core(ctx: Context, attempt: int) -> Work:
    return agent.run(
        f"Implement the core of {ctx.input.get('feature', 'the feature')} (round {attempt})",
        output=Work,
    )


@wf.task(retries=2, skip_if=core_not_green)
def implement_ui(ctx: Context) -> Work:
    return agent.run("Implement the UI on top of the passing core", output=Work)


@wf.task(retries=1)
def verify(ctx: Context) -> Work:
    return agent.run("Run the whole test-suite and report", output=Work)


@wf.main
def main(ctx: Context) -> None:
    ctx.summary("Implementing the core.")
    core = ctx.loop(
        lambda round_number: implement_core(ctx, round_number),
        until=lambda work: work.tests_passed,
        max_iterations=4,
        on_max_reached="fail",
        loop_id="core",
    )
    ctx.summary(f"Core passes its tests ({core.notes or 'ok'}); building the UI.")
    if implement_ui(ctx) is None:
        ctx.error("UI skipped: the core gate is closed")
        return
    result = verify(ctx)
    ctx.summary(f"Feature complete: {result.notes}.")
