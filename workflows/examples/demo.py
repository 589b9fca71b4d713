"""The bundled demo: a plan -> implement -> review loop that runs offline in about a minute.

It uses a ScriptedAgent (no key, no network) so that ``make run`` shows what a
supervised workflow looks like: summaries as it goes, a heartbeat, tasks that
resume after a restart, and one review that asks for a fix before approving.
``DEMO_STEP_SECONDS`` sets how long each pretend agent call takes (default 8).
"""

from __future__ import annotations

import os

from pydantic import BaseModel

from workflows import Context, ScriptedAgent, Workflow

wf = Workflow("demo")


class Plan(BaseModel):
    steps: list[str]


class Change(BaseModel):
    step: str
    files: list[str]


class Review(BaseModel):
    approved: bool
    comments: str


agent = ScriptedAgent(
    {
        "plan": {"steps": ["parse the config", "add the endpoint", "write the tests"]},
        "implement": lambda prompt: {"step": prompt.split(": ", 1)[1], "files": ["app.py"]},
        "review": [
            {"approved": False, "comments": "the tests miss the error path"},
            {"approved": True, "comments": "looks good"},
        ],
        "fix": {"step": "cover the error path", "files": ["test_app.py"]},
    },
    delay=float(os.environ.get("DEMO_STEP_SECONDS", "8")),
)


@wf.task(retries=2)
def plan(ctx: Context) -> Plan:
    return agent.run(f"Plan the work for: {ctx.input.get('goal', 'a small web app')}", output=Plan)


@wf.task(retries=2, timeout=600)
def implement(ctx: Context, step: str) -> Change:
    return agent.run(f"Implement: {step}", output=Change)


@wf.task(retries=1)
def review(ctx: Context) -> Review:
    return agent.run("Review the changes so far", output=Review)


@wf.task(retries=2)
def fix(ctx: Context, comments: str) -> Change:
    return agent.run(f"Fix: {comments}", output=Change)


@wf.main
def main(ctx: Context) -> None:
    ctx.summary("Planning the work.")
    steps = plan(ctx).steps
    for number, step in enumerate(steps, start=1):
        ctx.summary(f"Implementing step {number}/{len(steps)}: {step}.")
        implement(ctx, step)

    def review_round(round_number: int) -> Review:
        ctx.summary(f"Review round {round_number}.")
        verdict = review(ctx)
        if not verdict.approved:
            ctx.summary(f"Fixing review comments: {verdict.comments}.")
            fix(ctx, verdict.comments)
        return verdict

    ctx.loop(
        review_round, until=lambda verdict: verdict.approved, max_iterations=3, loop_id="review"
    )
    ctx.summary(f"Done: {len(steps)} steps implemented and approved.")
