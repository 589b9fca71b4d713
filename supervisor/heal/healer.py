"""Heal from end to end: propose a fix, prove it, apply it on a tap, roll it back on relapse.

``Healer`` is what the supervisor calls; it knows nothing of chats. A
proposal is made only for a failure a code change can fix (never for a
clean exit, a stop, a transient or external failure, credentials or a
resource limit: the diagnosis says so instead), only where the workflow's
``cwd`` is a git repository, and only within the budgets (``store``). The
model works in a worktree on a ``heal/<workflow>/<time>`` branch made from
the commit the workflow runs (``agent``); every gate runs in code and is
stored with the proposal (``gates``, ``smoke``); Apply commits on the branch
with the approver in the message, fast-forwards the live branch and keeps
the previous commit; during probation, the same failure signature coming
back reverts the commit. The supervisor restarts the workflow and
publishes what happened.

What it does not promise: a fix that passes every gate may still be wrong
in ways the gates and the smoke run cannot see; probation catches only the
same failure signature, within ``heal_probation_seconds``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import shutil
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa
from pydantic import ValidationError

from supervisor.agentsettings import AgentSettings
from supervisor.api import SupervisorError
from supervisor.claudeclient import (
    ClientFactory,
    is_api_error,
    redacting_client,
    sdk_ready,
    unavailable_reason,
)
from supervisor.config import ResolvedWorkflow
from supervisor.diagnosis.types import Verdict
from supervisor.heal import git
from supervisor.heal.gates import check_base, matches, run_static_gates
from supervisor.heal.smoke import smoke_run
from supervisor.heal.store import DAY_SECONDS, Proposal, ProposalStore
from supervisor.heal.types import GateResult, HealPolicy, Worktree
from supervisor.secrets import Redactor
from supervisor.spend import Budget, CapReached, SpendLedger
from workflows.prices import price_of

if TYPE_CHECKING:
    from supervisor.heal.agent import HealReport

log = logging.getLogger("supervisor")
HEAL_SHARE_OF_DAY = 0.25  # one proposal may spend at most this share of AGENT_MAX_USD_PER_DAY
ROLLBACK_DAYS = 7
SPENDER = "heal"
# Categories a code change cannot fix: a restart, the environment or a person can.
NOT_A_CODE_BUG = frozenset(
    {"killed", "transient", "credentials", "resource", "environment", "none"}
)
SMOKE_MARGIN_SECONDS = 5.0  # past the point the failure happened at
SMOKE_EXTRA_SECONDS = 15.0  # the hard cap beyond heal_smoke_seconds (start-up, the DB copy)
MAX_OUTPUT_TOKENS = 4_096


class HealRefused(SupervisorError):
    """No proposal, or no action on one; the text says why, fit for a chat."""


def policy_of(workflow: ResolvedWorkflow, repo: Path) -> HealPolicy:
    """The workflow's heal keys, with ``heal_paths`` made relative to the repository root.

    The default is the workflow's own script (or the files its command names in ``cwd``).
    """
    config = workflow.config
    base = workflow.cwd.resolve().relative_to(repo.resolve())
    if config.heal_paths:
        paths = tuple(str(base / glob) if str(base) != "." else glob for glob in config.heal_paths)
    else:
        paths = tuple(
            str(path.resolve().relative_to(repo.resolve()))
            for path in workflow.own_files
            if path.resolve().is_relative_to(repo.resolve())
        )
    return HealPolicy(
        mode=config.heal,
        paths=paths,
        max_files=config.heal_max_files,
        max_lines=config.heal_max_lines,
        check_command=tuple(config.heal_check_command or ()),
        smoke_seconds=config.heal_smoke_seconds,
        probation_seconds=config.heal_probation_seconds,
    )


def allowed_by(paths: Sequence[str]) -> Callable[[str], bool]:
    """Whether a repository-relative path matches one of ``paths``: the agent's own check of
    every edit, by the rule of the paths gate."""
    return lambda path: matches(path, paths)


class Healer:
    """Proposals, their gates, Apply, Reject and rollback, for every workflow."""

    def __init__(
        self,
        engine: sa.Engine,
        settings: AgentSettings,
        data_dir: Path,
        *,
        redactor: Redactor,
        client_factory: ClientFactory = redacting_client,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.store = ProposalStore(engine, clock=clock)
        self.ledger = SpendLedger(
            engine, cap_usd=settings.agent_max_usd_per_day, clock=clock, zone=settings.zone
        )
        self.redactor = redactor
        self.client_factory = client_factory
        self.clock = clock
        self.worktrees = data_dir / "heal"
        self._busy: dict[str, asyncio.Lock] = {}

    async def propose(
        self,
        workflow: ResolvedWorkflow,
        verdict: Verdict,
        signature: str,
        *,
        note: str | None = None,
        failed_after: float | None = None,
        log_tail: Sequence[str] = (),
    ) -> Proposal:
        """A new proposal for ``workflow``'s failure, its gates run; raises ``HealRefused``."""
        if verdict.category in NOT_A_CODE_BUG:
            raise HealRefused(f"not a bug a code change fixes: {verdict.category}: {verdict.cause}")
        if not self.settings.configured:
            raise HealRefused("Claude is not configured (ANTHROPIC_API_KEY); heal needs it")
        lock = self._busy.setdefault(workflow.name, asyncio.Lock())
        if lock.locked():
            raise HealRefused("a fix for it is being made already")
        async with lock:
            repo = await asyncio.to_thread(git.repo_root, workflow.cwd)
            if repo is None:
                raise HealRefused(f"cannot heal: {workflow.cwd} is not a git repository")
            refused = await asyncio.to_thread(self.store.over_budget, workflow.name, signature)
            if refused is not None:
                raise HealRefused(f"no new proposal: {refused}")
            day = self.settings.agent_max_usd_per_day
            if await asyncio.to_thread(self.ledger.spent_today) >= day:
                raise HealRefused(f"today's spend on Claude is at the cap (${day:.2f} a day)")
            return await self._make(
                workflow,
                repo,
                verdict=verdict,
                signature=signature,
                note=note,
                failed_after=failed_after,
                log_tail=log_tail,
            )

    async def _make(
        self,
        workflow: ResolvedWorkflow,
        repo: Path,
        *,
        verdict: Verdict,
        signature: str,
        note: str | None,
        failed_after: float | None,
        log_tail: Sequence[str],
    ) -> Proposal:
        await sdk_ready()  # the SDK heal.agent imports, off the loop
        from supervisor.heal.agent import write_fix  # the SDK: only when healing

        policy = policy_of(workflow, repo)
        if not policy.paths:
            raise HealRefused("nothing heal may change: set heal_paths for this workflow")
        base = await asyncio.to_thread(git.head, repo)
        now = datetime.fromtimestamp(self.clock(), UTC)
        worktree = await asyncio.to_thread(
            git.make_worktree, repo, workflow.name, base, into=self.worktrees, now=now
        )
        redactor = self.redactor.including(workflow.secrets)
        price = price_of(self.settings.anthropic_model, self.settings.agent_prices)
        budget = Budget(
            price, self.settings.agent_max_usd_per_day * HEAL_SHARE_OF_DAY, MAX_OUTPUT_TOKENS
        )
        prompt = _prompt(workflow, verdict, note, log_tail, redactor)
        report: HealReport | None = None
        problem: str | None = None
        try:
            async with asyncio.timeout(self.settings.agent_timeout_seconds):
                report = await write_fix(
                    worktree.path,
                    prompt,
                    paths=policy.paths,
                    allowed=allowed_by(policy.paths),
                    settings=self.settings,
                    redact=redactor.redact,
                    budget=budget,
                    client_factory=self.client_factory,
                )
        except CapReached:
            problem = "its cost cap was reached before it finished"
        except TimeoutError:
            problem = "it ran out of time"
        except ValidationError:
            problem = "its report did not parse"
        except Exception as exc:
            if not is_api_error(exc):
                raise
            problem = f"Claude unavailable ({unavailable_reason(exc)})"
        else:
            problem = None if report is not None else "Claude gave no report"
        finally:
            await self._record_spend(budget)
        patch = await asyncio.to_thread(git.patch, worktree)
        if problem is not None or not patch.files:
            await asyncio.to_thread(git.remove_worktree, worktree, delete_branch=True)
            raise HealRefused(f"no fix: {problem or 'Claude changed nothing'}")
        gates = list(await asyncio.to_thread(run_static_gates, worktree, patch, policy))
        gates.append(await self._smoke(workflow, worktree, policy, gates, failed_after))
        gates.append(await asyncio.to_thread(check_base, worktree))
        ready = all(gate.passed for gate in gates)
        assert report is not None
        return await asyncio.to_thread(
            self.store.add,
            workflow=workflow.name,
            signature=signature,
            status="pending" if ready else "failed",
            base=base,
            branch=worktree.branch,
            worktree=str(worktree.path),
            diff=patch.diff,
            files=len(patch.files),
            added=patch.added,
            removed=patch.removed,
            gates=tuple(dataclasses.replace(g, detail=redactor.redact(g.detail)) for g in gates),
            rationale=tuple(
                redactor.redact(line) for line in [report.summary, *report.rationale][:4]
            ),
            cause=verdict.cause,
            cost_usd=budget.spent(),
            note=note,
        )

    async def _smoke(
        self,
        workflow: ResolvedWorkflow,
        worktree: Worktree,
        policy: HealPolicy,
        gates: Sequence[GateResult],
        failed_after: float | None,
    ) -> GateResult:
        if not all(gate.passed for gate in gates):
            return GateResult("smoke", False, "not run: an earlier gate refused the change")
        survive = policy.smoke_seconds
        if failed_after is not None:
            survive = min(survive, failed_after + SMOKE_MARGIN_SECONDS)
        scratch = worktree.path.parent / f"{worktree.path.name}.smoke"
        scratch.mkdir(parents=True, exist_ok=True)
        try:
            return await smoke_run(
                workflow,
                worktree,
                survive_seconds=survive,
                limit_seconds=policy.smoke_seconds + SMOKE_EXTRA_SECONDS,
                scratch=scratch,
            )
        finally:
            await asyncio.to_thread(shutil.rmtree, scratch, True)

    async def _record_spend(self, budget: Budget) -> None:
        tally = budget.tally
        if tally.input_tokens or tally.output_tokens:
            await asyncio.to_thread(
                self.ledger.record,
                self.settings.anthropic_model,
                tally.input_tokens,
                tally.output_tokens,
                budget.spent(),
                who=SPENDER,
            )

    # -- decisions -------------------------------------------------------------------------

    def apply(self, proposal_id: str, approver: str, workflow: ResolvedWorkflow) -> Proposal:
        """Commit, fast-forward the live tree, start probation; blocking (run it in a thread).

        Refused when it is not pending, older than a day, refused by a gate, or stale.
        """
        proposal = self._pending(proposal_id)
        if not proposal.ready:
            raise HealRefused("a gate refused this proposal; it cannot be applied")
        worktree = self._worktree(proposal, workflow)
        if git.is_stale(worktree):
            self.store.update(proposal.id, status="stale")
            raise HealRefused("stale: the live tree moved since it was made; propose again")
        message = f"heal({workflow.name}): {proposal.rationale[0]}\n\nDiagnosis: {proposal.cause}"
        try:
            commit = git.commit(worktree, message, author=approver)
            previous = git.fast_forward(worktree, commit)
        except git.GitError as exc:
            raise HealRefused(f"could not apply: {exc}") from exc
        now = self.clock()
        probation = workflow.config.heal_probation_seconds
        self.store.update(
            proposal.id,
            status="applied",
            commit=commit,
            previous=previous,
            applied_at=now,
            approver=approver,
            probation_until=now + probation,
        )
        git.remove_worktree(worktree, delete_branch=False)  # the branch keeps the commit
        applied = self.store.get(proposal.id)
        assert applied is not None
        return applied

    def reject(self, proposal_id: str, approver: str, workflow: ResolvedWorkflow) -> Proposal:
        """Drop a pending proposal: its worktree and branch go, the live tree is untouched."""
        proposal = self._pending(proposal_id)
        git.remove_worktree(self._worktree(proposal, workflow), delete_branch=True)
        self.store.update(proposal.id, status="rejected", approver=approver)
        rejected = self.store.get(proposal.id)
        assert rejected is not None
        return rejected

    def rollback(self, proposal_id: str, reason: str, workflow: ResolvedWorkflow) -> str:
        """Revert an applied proposal's commit in the live tree; the revert's sha. Blocking."""
        proposal = self.store.get(proposal_id)
        if proposal is None or proposal.status != "applied" or proposal.commit is None:
            raise HealRefused("nothing to roll back: that proposal is not applied")
        if self.clock() - (proposal.applied_at or 0) > ROLLBACK_DAYS * DAY_SECONDS:
            raise HealRefused(f"applied more than {ROLLBACK_DAYS} days ago; revert it by hand")
        repo = git.repo_root(workflow.cwd)
        if repo is None:
            raise HealRefused(f"{workflow.cwd} is no longer a git repository")
        try:
            revert = git.revert(repo, proposal.commit, author="heal", reason=reason)
        except git.GitError as exc:
            raise HealRefused(f"could not roll back: {exc}") from exc
        self.store.update(proposal.id, status="rolled_back", probation_until=None)
        return revert

    def relapsed(self, workflow: str, signature: str) -> Proposal | None:
        """The proposal on probation whose failure just came back, if any. Blocking."""
        proposal = self.store.on_probation(workflow)
        if proposal is not None and proposal.signature == signature:
            return proposal
        return None

    def _pending(self, proposal_id: str) -> Proposal:
        proposal = self.store.get(proposal_id)
        if proposal is None:
            raise HealRefused("no such proposal")
        if proposal.status != "pending":
            raise HealRefused(f"that proposal is {proposal.status.replace('_', ' ')}")
        if self.clock() - proposal.created_at > DAY_SECONDS:
            self.store.update(proposal.id, status="expired")
            raise HealRefused("that proposal expired (24 h); propose again")
        return proposal

    @staticmethod
    def _worktree(proposal: Proposal, workflow: ResolvedWorkflow) -> Worktree:
        repo = git.repo_root(workflow.cwd)
        if repo is None:
            raise HealRefused(f"{workflow.cwd} is no longer a git repository")
        return Worktree(repo, Path(proposal.worktree), proposal.branch, proposal.base)


def _prompt(
    workflow: ResolvedWorkflow,
    verdict: Verdict,
    note: str | None,
    log_tail: Sequence[str],
    redactor: Redactor,
) -> str:
    lines = [
        f"The workflow {workflow.name!r} keeps failing. The diagnosis:",
        f"{verdict.category} ({verdict.confidence}): {verdict.cause}",
        *[f"- {quote.evidence_id}: {quote.quote}" for quote in verdict.evidence],
    ]
    if note:
        lines += ["", f"The person adds: {note}"]
    if log_tail:
        lines += ["", "The last lines of its log:", *log_tail]
    return redactor.redact("\n".join(lines))
