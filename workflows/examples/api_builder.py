"""Build REST endpoints one at a time, with incremental progress (guide pattern 2).

The research task lists the endpoints; each endpoint is implemented by its own
checkpointed task call, so after a crash or restart only the endpoints not yet
done are built. Offline it answers from prepared replies; with
``ANTHROPIC_API_KEY`` set it asks Claude. Input: ``{"specPath": "SPEC.md"}``.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from workflows import Context, Workflow, default_agent

wf = Workflow("api-builder")


class Plan(BaseModel):
    endpoints: list[str]


class Impl(BaseModel):
    endpoint: str
    files: list[str]
    tests_passed: bool


planner = default_agent(
    {"research": {"endpoints": ["GET /users", "POST /users", "DELETE /users/{id}"]}},
    system="You are a senior backend engineer. Read specs carefully and answer in JSON.",
)
builder = default_agent(
    {
        "implement": lambda prompt: {
            "endpoint": prompt.removeprefix("Implement the endpoint ").split(" with", 1)[0],
            "files": ["api/users.py", "tests/test_users.py"],
            "tests_passed": True,
        }
    },
    system="You implement one REST endpoint at a time, with tests, and report what you changed.",
    workdir=Path.cwd(),  # with a key, the agent reads and edits the repository it runs in
)


@wf.task(retries=2)
def research(ctx: Context) -> Plan:
    spec = ctx.input.get("specPath", "SPEC.md")
    return planner.run(f"Read {spec} and list the endpoints to build", output=Plan)


@wf.task(retries=2, timeout=900)
def implement(ctx: Context, endpoint: str) -> Impl:
    return builder.run(f"Implement the endpoint {endpoint} with tests", output=Impl)


@wf.main
def main(ctx: Context) -> None:
    ctx.summary("Researching the spec.")
    plan = research(ctx)
    for number, endpoint in enumerate(plan.endpoints, start=1):
        ctx.summary(f"Implementing {endpoint} ({number}/{len(plan.endpoints)}).")
        result = implement(ctx, endpoint)
        if not result.tests_passed:
            ctx.error(f"tests fail for {endpoint}; continuing with the next endpoint")
    built = [impl.endpoint for impl in ctx.outputs["implement"]]
    ctx.summary(f"Built {len(built)} endpoints: {', '.join(built)}.")
