"""Refactor module by module with a phase state machine (guide pattern 3).

The phase is computed from the outputs so far (plan, then implement, review,
and fix until the review approves), inside a loop with a cap, so the run
resumes in the right phase after a restart and never loops forever.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel

from workflows import Context, Workflow, default_agent

wf = Workflow("refactor")

Phase = Literal["plan", "implement", "review", "fix", "done"]


class RefactorPlan(BaseModel):
    modules: list[str]
    goal: str


class Change(BaseModel):
    module: str
    summary: str


class Review(BaseModel):
    lgtm: bool
    issues: list[str]


agent = default_agent(
    {
        "plan": {"modules": ["storage", "api"], "goal": "replace raw SQL with the query builder"},
        "implement": lambda prompt: {
            "module": prompt.split("`")[1],
            "summary": "moved to the builder",
        },
        "review": [
            {"lgtm": False, "issues": ["a query lost its ORDER BY"]},
            {"lgtm": True, "issues": []},
        ],
        "fix": {"module": "storage", "summary": "restored ORDER BY"},
    },
    system="You are a careful refactoring engineer. Keep behaviour identical; answer in JSON.",
    workdir=Path.cwd(),  # with a key, the agent reads and edits the repository it runs in
)


@wf.task(retries=2)
def plan(ctx: Context) -> RefactorPlan:
    return agent.run(
        f"Plan a refactor: {ctx.input.get('goal', 'tidy the data layer')}", output=RefactorPlan
    )


@wf.task(retries=2, timeout=1800)
def implement(ctx: Context, module: str) -> Change:
    return agent.run(f"Refactor the module `{module}`", output=Change)


@wf.task(retries=1)
def review(ctx: Context) -> Review:
    return agent.run("Review the refactor so far", output=Review)


@wf.task(retries=2)
def fix(ctx: Context, issues: list[str]) -> Change:
    return agent.run("Fix: " + "; ".join(issues), output=Change)


def compute_phase(ctx: Context) -> Phase:
    """Where the run stands, from what is finished so far."""
    plans, changes, reviews = ctx.outputs["plan"], ctx.outputs["implement"], ctx.outputs["review"]
    if not plans:
        return "plan"
    if len(changes) < len(plans[-1].modules):
        return "implement"
    if not reviews or len(ctx.outputs["fix"]) >= len(reviews):
        return "review"
    return "done" if reviews[-1].lgtm else "fix"


@wf.main
def main(ctx: Context) -> None:
    def step(iteration: int) -> Phase:
        phase = compute_phase(ctx)
        ctx.summary(f"Phase {phase} (step {iteration}).")
        if phase == "plan":
            plan(ctx)
        elif phase == "implement":
            modules = ctx.outputs["plan"][-1].modules
            implement(ctx, modules[len(ctx.outputs["implement"])])
        elif phase == "review":
            review(ctx)
        elif phase == "fix":
            fix(ctx, ctx.outputs["review"][-1].issues)
        return compute_phase(ctx)

    final = ctx.loop(
        step, until=lambda phase: phase == "done", max_iterations=20, on_max_reached="fail"
    )
    ctx.summary(f"Refactor finished ({final}).")
