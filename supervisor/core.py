"""The supervisor: keeps every configured workflow alive and says what happened.

Process exits are awaited (reported the moment they happen); heartbeats,
errors and status changes come from periodic reads of each state table
(``supervisor/health.py``), scheduled with APScheduler. This module owns the
processes, the restart policy and the API. Every change of a process state
goes through ``_to`` (the table is in ``supervisor/restarts.py``). Every
decision is a typed event, recorded in the control DB together with the
memory it changed and then published (``supervisor/recorder.py``). Nothing a
workflow does (or fails to do) may raise out of here: it becomes an event.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, Literal

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from supervisor.agent.types import Workspace
from supervisor.agentsettings import AgentSettings
from supervisor.api import SupervisorError, UnknownWorkflow
from supervisor.beats import beat_file
from supervisor.budgets import Budgets, Hands, paused_by_budget
from supervisor.bus import EventBus, Subscription
from supervisor.config import ResolvedWorkflow
from supervisor.control import ControlDB, Incident, Memory
from supervisor.diagnosis.diagnose import Diagnoser
from supervisor.diagnosis.types import EvidencePack, Verdict
from supervisor.diagnosis.why import EVIDENCE_EVENTS, Case, explain, gather
from supervisor.events import (
    BudgetResumed,
    Crashed,
    Diagnosed,
    Event,
    EventRecord,
    Finished,
    GaveUp,
    Hung,
    IncidentCause,
    IncidentClosed,
    OwnSpend,
    Paused,
    ProcessState,
    Reloaded,
    Restarted,
    RestartReason,
    Resumed,
    Started,
    Stopped,
    WorkflowStatus,
)
from supervisor.fleet.registry import NodeInfo
from supervisor.heal.desk import HealDesk, SupervisorHands
from supervisor.heal.healer import Healer
from supervisor.heal.store import Proposal
from supervisor.health import HealthMonitor
from supervisor.logs import STARTING, LogWriter, last_bytes, output_tail, tail
from supervisor.pidfiles import reap_stale, remove_pidfile
from supervisor.policy import Decision, ExitCause, decide
from supervisor.process import Exit, WorkflowProcess
from supervisor.recorder import Recorder
from supervisor.reload import watch_scripts
from supervisor.restarts import check_transition
from supervisor.runtime import Runtime, utcnow
from supervisor.secrets import Redactor
from supervisor.settings import SupervisorSettings
from supervisor.spending import Spending
from supervisor.statedb import StateReader, write_paused

log = logging.getLogger("supervisor")
logging.getLogger("apscheduler").setLevel(logging.WARNING)  # it logs every job run at INFO
OUTAGE_LOG_LINES = 10  # of its own output, in a crash or hang alert
EVENTS_KEPT_DAYS = 90
# Process states a workflow is left in until a person acts, across restarts too.
HELD_STATES: frozenset[ProcessState] = frozenset({"gave_up", "crashed"})
ClosedBy = Literal["stopped", "started", "restarted", "paused", "resumed"]


class Supervisor:
    """Implements ``SupervisorAPI`` over real processes; ``startup()`` then ``shutdown()``."""

    def __init__(
        self,
        settings: SupervisorSettings,
        workflows: Sequence[ResolvedWorkflow],
        *,
        redactor: Redactor | None = None,
        agent: AgentSettings | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        """``redactor`` knows the caller's secrets (the bot token), kept from every request;
        ``clock`` is what days of spend and budgets go by."""
        self.settings = settings
        self._redactor = redactor or Redactor()
        self._agent = agent or AgentSettings()
        self.agent_settings = self._agent  # the bot's bridge shares them
        self.redactor = self._redactor
        self._diagnoser: Diagnoser | None = None
        self._heal: HealDesk | None = None
        self.bus = EventBus()
        self._workflows = list(workflows)
        self._runtimes: dict[str, Runtime] = {}
        self._control: ControlDB | None = None
        self._recorder = Recorder(self.bus)  # the one writer of the control DB
        hands = Hands(
            pause=self._pause,
            resume=self._resume,
            record=lambda spent, runtime: self._recorder.spend(spent, runtime.memory),
            publish=lambda event, runtime: self._publish(event, remember=runtime),
            remember=self._remember,
            background=self._background,
            stopping=lambda: self._stopping,
        )
        self._budgets = Budgets(Spending(self._agent.zone, clock), hands)
        self._scheduler: AsyncIOScheduler | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._stopping = False
        self._health = HealthMonitor(
            self._runtimes,
            settings,
            publish=self._publish,
            remember=self._remember,
            transition=self._to,
            on_hang=self._hang,
            on_usage=self._budgets.count,
        )
        self._tasks: set[asyncio.Task[None]] = set()
        self._diagnoses: set[asyncio.Task[None]] = set()  # diagnose = "auto"; shutdown cancels
        # Workflows whose process groups an earlier supervisor left behind (it was killed).
        self.reaped: tuple[str, ...] = ()

    # -- lifecycle -------------------------------------------------------------

    @property
    def names(self) -> Sequence[str]:
        return [workflow.name for workflow in self._workflows]

    async def startup(self) -> None:
        """Open the control DB, end groups a killed predecessor left, start the workflows.

        What changed in a state table while no supervisor watched (an error
        written while the bot was down) is announced now, whether or not the
        workflow writes again; a workflow left down stays down; one whose
        incident was open is restarted in that incident.
        """
        control = await self.open()
        cutoff = utcnow() - timedelta(days=EVENTS_KEPT_DAYS)
        await asyncio.to_thread(control.forget_events, cutoff)
        remembered = await asyncio.to_thread(control.load_memory)
        spending = self._budgets.spending
        await asyncio.to_thread(spending.load, control, spending.now())
        ended = await reap_stale(self.settings.run_dir, self.settings.stop_grace_seconds)
        for name in ended:
            log.warning("ended %s left running by an earlier supervisor", name)
        self.reaped = tuple(ended)
        for workflow in self._workflows:
            self._runtimes[workflow.name] = self._restore(workflow, remembered.get(workflow.name))
        self._start_jobs()
        for runtime in self._runtimes.values():
            if runtime.state != "stopped":
                continue
            if runtime.incident is not None:
                async with runtime.lock:
                    await self._restart_in_incident(runtime)
            elif runtime.workflow.autostart:
                async with runtime.lock:
                    await self._spawn(runtime, "autostart")
        watched = {
            rt.name: rt.workflow.watch_paths
            for rt in self._runtimes.values()
            if rt.workflow.watch_paths
        }
        if watched:
            self._watcher = asyncio.create_task(
                watch_scripts(watched, self.settings.reload_debounce_seconds, self._reload)
            )

    async def open(self) -> ControlDB:
        """Open (and upgrade) the control DB; ``startup`` does it if nobody did before."""
        if self._control is None:
            self._control = await asyncio.to_thread(ControlDB, self.settings.control_db_url)
            self._recorder.open(self._control)
            self._diagnoser = Diagnoser(self._agent, self._control.engine, redactor=self._redactor)
            self._heal = self._heal_desk(self._control)
        return self._control

    def _heal_desk(self, control: ControlDB) -> HealDesk:
        healer = Healer(
            control.engine, self._agent, self.settings.data_dir, redactor=self._redactor
        )
        hands = SupervisorHands(
            why=self.why,
            evidence=self.evidence,
            recent_events=self.recent_events,
            tail=self.tail,
            restart=self.restart,
            publish=self._publish,
            now=utcnow,
        )
        return HealDesk(healer, {w.name: w for w in self._workflows}, hands)

    async def _desk(self, name: str | None = None) -> HealDesk:
        if name is not None:
            self._get(name)
        await self.open()
        assert self._heal is not None
        return self._heal

    async def fix(self, name: str, note: str | None = None) -> Proposal:
        return await (await self._desk(name)).fix(name, note)

    async def heal_apply(self, proposal: str, approver: str) -> Proposal:
        return await (await self._desk()).apply(proposal, approver)

    async def heal_reject(self, proposal: str, approver: str) -> Proposal:
        return await (await self._desk()).reject(proposal, approver)

    async def heal_rollback(self, proposal: str, approver: str) -> str:
        return await (await self._desk()).rollback(proposal, f"rolled back by {approver}")

    async def heal_patch(self, proposal: str) -> tuple[str, bytes]:
        return await (await self._desk()).patch(proposal)

    def _restore(self, workflow: ResolvedWorkflow, memory: Memory | None) -> Runtime:
        """A workflow's runtime as it was left: paused or held down, its state table read."""
        runtime = Runtime(
            workflow=workflow,
            log=LogWriter(
                self.settings.logs_dir / f"{workflow.name}.log",
                self.settings.log_max_bytes,
                self.settings.log_backups,
            ),
            memory=memory or Memory(),
            reader=StateReader(workflow.db),
            beat_file=beat_file(self.settings.run_dir, workflow.name),
        )
        self._health.refresh(runtime)
        if memory is None:
            # First sight of this workflow: what its database already holds is history.
            runtime.memory.last_error_seen = runtime.snapshot.last_error
            runtime.memory.last_error_version = runtime.snapshot.last_error_version
            if runtime.snapshot.errors:
                runtime.memory.last_error_id = runtime.snapshot.errors[-1][0]
            runtime.memory.last_status_seen = runtime.snapshot.status
            runtime.memory.usage_seen = runtime.snapshot.usage or runtime.memory.usage_seen
            self._remember(runtime)
        else:
            self._health.observe(runtime)
        if runtime.snapshot.paused or runtime.memory.paused:
            runtime.state = "paused"  # restored, not a transition
        elif runtime.memory.held is not None:
            runtime.state = runtime.memory.held
        return runtime

    def _start_jobs(self) -> None:
        scheduler = AsyncIOScheduler(timezone="UTC")
        common = {"max_instances": 1, "coalesce": True, "misfire_grace_time": None}
        scheduler.add_job(
            self._health.check, "interval", seconds=self.settings.check_interval_seconds, **common
        )
        scheduler.add_job(
            self._budgets.new_day,
            "interval",
            args=(self._runtimes.values(),),
            seconds=self.settings.check_interval_seconds,
            **common,
        )
        scheduler.start()
        self._scheduler = scheduler
        self._health.start()  # watches the state files; polls what it cannot watch

    async def shutdown(self) -> None:
        """Stop every workflow gracefully (their runs resume next time), then close."""
        self._stopping = True
        # The scheduler's shutdown cancels job runs still pending, which it logs as errors:
        # close the monitor (job runs return at once), stop new runs, let the last ones end.
        await self._health.close()
        if self._scheduler is not None:
            self._scheduler.pause()
            await asyncio.sleep(0.01)
            self._scheduler.shutdown(wait=False)
        if self._watcher is not None:
            self._watcher.cancel()
        for runtime in self._runtimes.values():
            runtime.cancel_restart()
        for diagnosis in self._diagnoses:
            diagnosis.cancel()
        await asyncio.gather(*self._diagnoses, return_exceptions=True)
        await asyncio.gather(*(self._shut_down(rt) for rt in self._runtimes.values() if rt.process))
        if self._tasks:
            await asyncio.gather(*self._tasks)
        for runtime in self._runtimes.values():
            runtime.log.close()
            runtime.reader.close()
        await self._recorder.close()  # every write done and its event published
        self.bus.close()
        if self._control is not None:
            self._control.close()

    async def _shut_down(self, runtime: Runtime) -> None:
        async with runtime.lock:
            await self._stop(runtime, "supervisor shutting down")
            self._to(runtime, "stopped", "supervisor shutting down")

    # -- the API the bot uses --------------------------------------------------

    def events(self) -> Subscription:
        return self.bus.subscribe()

    async def own_spend(self) -> OwnSpend:
        await self.open()
        assert self._diagnoser is not None
        ledger = self._diagnoser.ledger
        return OwnSpend(await asyncio.to_thread(ledger.spent_today), ledger.cap_usd)

    async def nodes(self) -> list[NodeInfo]:
        """One node, not a fleet: nothing to group by (``supervisor.fleet.remote`` for that)."""
        return []

    def _get(self, name: str) -> Runtime:
        runtime = self._runtimes.get(name)
        if runtime is None:
            raise UnknownWorkflow(name, self.names)
        return runtime

    async def status(self, name: str | None = None) -> list[WorkflowStatus]:
        if name is not None:
            return [self._status(self._get(name))]
        return [self._status(rt) for rt in self._runtimes.values()]

    async def tail(self, name: str, lines: int) -> list[str]:
        runtime = self._get(name)
        return await asyncio.to_thread(tail, runtime.log.path, lines)

    async def log_bytes(self, name: str, limit: int) -> bytes:
        runtime = self._get(name)
        return await asyncio.to_thread(last_bytes, runtime.log.path, limit)

    async def evidence(self, name: str) -> EvidencePack:
        return await gather(await self._case(name), self._redactor)

    async def why(self, name: str) -> Verdict:
        case = await self._case(name)
        assert self._diagnoser is not None  # made with the control DB, which _case opened
        return await explain(case, self._diagnoser, self._redactor)

    async def _case(self, name: str) -> Case:
        runtime = self._get(name)
        control = await self.open()
        events = await asyncio.to_thread(control.recent, name, EVIDENCE_EVENTS)
        return Case(runtime.workflow, self._status(runtime), events, runtime.log.path)

    async def workspace(self, name: str) -> Workspace:
        workflow = self._get(name).workflow
        secrets = (*self._redactor.secrets, *workflow.secrets)
        return Workspace(name, workflow.cwd, tuple(secrets), workflow.script, workflow.config.topic)

    async def recent_events(self, name: str, limit: int = 10) -> list[EventRecord]:
        self._get(name)
        assert self._control is not None
        return await asyncio.to_thread(self._control.recent, name, limit)

    async def start(self, name: str) -> WorkflowStatus:
        runtime = self._get(name)
        async with runtime.lock:
            if runtime.process is not None:
                raise SupervisorError(f"{name} is already running (pid {runtime.process.pid})")
            if runtime.state == "paused":
                raise SupervisorError(f"{name} is paused; resume it instead")
            self._reset_attempts(runtime, "started")
            await self._spawn(runtime, "started by request")
        return self._status(runtime)

    async def stop(self, name: str) -> WorkflowStatus:
        runtime = self._get(name)
        async with runtime.lock:
            if runtime.process is None and runtime.state != "backoff":
                raise SupervisorError(f"{name} is not running ({runtime.state})")
            runtime.cancel_restart()
            await self._stop(runtime, "requested")
            self._reset_attempts(runtime, "stopped")
            self._to(runtime, "stopped", "stopped by request")
        return self._status(runtime)

    async def restart(self, name: str) -> WorkflowStatus:
        runtime = self._get(name)
        async with runtime.lock:
            if runtime.state == "paused":
                raise SupervisorError(f"{name} is paused; resume it instead")
            await self._restart_now(runtime, "manual")
        return self._status(runtime)

    async def pause(self, name: str) -> WorkflowStatus:
        runtime = self._get(name)
        async with runtime.lock:
            if runtime.state == "paused":
                raise SupervisorError(f"{name} is already paused")
            await self._pause(runtime, "paused by request")
            self._publish(Paused(workflow=name, time=utcnow()), remember=runtime)
        return self._status(runtime)

    async def resume(self, name: str) -> WorkflowStatus:
        """Resume a paused workflow; one its budget paused may spend a budget more today."""
        runtime = self._get(name)
        async with runtime.lock:
            self._check_paused(runtime)
            if paused_by_budget(runtime):
                await self._budgets.resume_once(runtime, "request")
            else:
                await self._resume(runtime, Resumed(workflow=name, time=utcnow()))
        return self._status(runtime)

    async def budget_resume(self, name: str, approver: str) -> WorkflowStatus:
        """[Resume once]: a workflow its budget paused resumes, and may spend one more
        budget's worth today before it is paused again."""
        runtime = self._get(name)
        async with runtime.lock:
            self._check_paused(runtime)
            if not paused_by_budget(runtime):
                raise SupervisorError(f"{name} was not paused by its budget; /resume it")
            await self._budgets.resume_once(runtime, approver)
        return self._status(runtime)

    async def budget_raise(self, name: str, approver: str) -> WorkflowStatus:
        """[Raise ×2]: double the budget in force (kept until the TOML's value changes),
        and resume the workflow if its budget had paused it."""
        runtime = self._get(name)
        async with runtime.lock:
            await self._budgets.raise_twice(runtime, approver)
        return self._status(runtime)

    def _check_paused(self, runtime: Runtime) -> None:
        if runtime.state != "paused":
            raise SupervisorError(f"{runtime.name} is not paused ({runtime.state})")

    async def _pause(self, runtime: Runtime, why: str) -> None:
        """Stop the process and hold the workflow paused (caller holds the lock, publishes)."""
        runtime.cancel_restart()
        if runtime.process is not None:
            await self._stop(runtime, "paused", announce=False)
        problem = await asyncio.to_thread(write_paused, runtime.workflow.db, True)
        if problem:
            log.warning("%s: %s (the pause is kept in the control DB)", runtime.name, problem)
        self._reset_attempts(runtime, "paused")
        runtime.memory.paused = True
        self._to(runtime, "paused", why)

    async def _resume(self, runtime: Runtime, resumed: Resumed | BudgetResumed) -> None:
        """Lift a pause and start the process: its run resumes from its checkpoint."""
        problem = await asyncio.to_thread(write_paused, runtime.workflow.db, False)
        if problem:
            raise SupervisorError(f"cannot resume {runtime.name}: {problem}")
        runtime.memory.paused = False
        runtime.memory.budget.paused_on = runtime.memory.budget.paused_at = None
        self._to(runtime, "stopped", f"resumed ({resumed.kind})")
        self._publish(resumed, remember=runtime)
        self._reset_attempts(runtime, "resumed")
        await self._spawn(runtime, "resumed by request")

    def _status(self, runtime: Runtime) -> WorkflowStatus:
        """The runtime's status with its spend."""
        return replace(runtime.status(utcnow()), spend=self._budgets.summary(runtime))

    # -- the state machine -----------------------------------------------------

    def _to(self, runtime: Runtime, new: ProcessState, why: str) -> None:
        """The one way a process state changes: checked, logged, and persisted if it holds."""
        old = runtime.state
        check_transition(runtime.name, old, new, why)
        if new == old:
            return
        runtime.state = new
        log.info("%s: %s -> %s (%s)", runtime.name, old, new, why)
        held = new if new in HELD_STATES else None
        if held != runtime.memory.held:
            runtime.memory.held = held
            self._remember(runtime)

    # -- processes -------------------------------------------------------------

    async def _spawn(self, runtime: Runtime, why: str) -> WorkflowProcess | None:
        """Start the process (caller holds the lock); an OS error becomes a crash."""
        runtime.cancel_restart()
        self._to(runtime, "starting", why)
        runtime.log.mark(STARTING + " ".join(runtime.workflow.argv))
        runtime.started_at = utcnow()
        runtime.first_heartbeat = runtime.file_beat = None
        try:
            process = await WorkflowProcess.spawn(
                runtime.workflow, runtime.log, self.settings.run_dir
            )
        except OSError as exc:
            runtime.log.mark(f"could not start: {exc}")
            runtime.last_exit = None
            self._after_exit(runtime, "crash", os_error=f"{type(exc).__name__}: {exc}")
            return None
        runtime.process = process
        self._health.poke()  # its first beat may be a touch of its file: looked for often
        runtime.exit_task = asyncio.create_task(self._await_exit(runtime, process))
        self._publish(Started(workflow=runtime.name, time=utcnow(), pid=process.pid))
        return process

    async def _await_exit(self, runtime: Runtime, process: WorkflowProcess) -> None:
        ended = await process.wait(self.settings.stop_grace_seconds)
        remove_pidfile(self.settings.run_dir, runtime.name)
        runtime.log.mark(f"exited: {ended.signal or f'code {ended.code}'}")
        runtime.process = None
        runtime.last_exit = ended
        expected, runtime.expected_exit = runtime.expected_exit, None
        after_hang, runtime.after_hang = runtime.after_hang, None
        await self._health.read_after_exit(runtime)
        if expected == "stop" or self._stopping:
            return
        if expected == "hang":
            self._apply(runtime, after_hang or self._decide(runtime, "hang"), "hang")
        elif ended.clean:
            if runtime.incident is not None:  # it came back and did its work
                runtime.memory.restarts = 0
                self._health.recover(runtime, utcnow())
            self._publish_finished(runtime)
            self._after_exit(runtime, "finished")
        else:
            self._after_exit(runtime, "crash", ended=ended)

    async def _stop(self, runtime: Runtime, reason: str, *, announce: bool = True) -> None:
        """End the process if there is one (the caller then moves the state on)."""
        if runtime.process is None:
            if announce and runtime.state == "backoff":
                self._publish(Stopped(workflow=runtime.name, time=utcnow(), reason=reason))
            return
        runtime.expected_exit = "stop"
        await runtime.process.terminate(self.settings.stop_grace_seconds)
        if runtime.exit_task is not None:
            await runtime.exit_task
        if announce:
            self._publish(Stopped(workflow=runtime.name, time=utcnow(), reason=reason))

    async def _restart_now(self, runtime: Runtime, reason: RestartReason) -> None:
        runtime.cancel_restart()
        await self._stop(runtime, reason, announce=False)
        self._reset_attempts(runtime, "restarted")
        process = await self._spawn(runtime, f"{reason} restart")
        if process is not None:
            self._announce_restart(runtime, process, reason)

    async def _restart_in_incident(self, runtime: Runtime) -> None:
        """After a supervisor restart, the restart an open incident was waiting for."""
        assert runtime.incident is not None
        runtime.memory.restarts += 1
        process = await self._spawn(runtime, "incident open at startup")
        if process is not None:
            self._announce_restart(runtime, process, runtime.incident.cause)

    def _reset_attempts(self, runtime: Runtime, closed_by: ClosedBy) -> None:
        """A person took over: the open incident (if any) ends, attempts count from zero."""
        incident = runtime.incident
        runtime.healthy_since = None
        runtime.incident = None
        runtime.memory.restarts = 0
        if incident is None:
            self._remember(runtime)
            return
        closed = IncidentClosed(
            workflow=runtime.name,
            time=utcnow(),
            incident=incident.id,
            how=closed_by,
            cause=incident.cause,
            failures=incident.failures,
            last_detail=incident.last_detail,
        )
        self._publish(closed, remember=runtime)

    # -- what follows an exit --------------------------------------------------

    def _decide(self, runtime: Runtime, cause: ExitCause) -> Decision:
        workflow = runtime.workflow
        return decide(
            mode=workflow.restart,
            cause=cause,
            restarts=runtime.memory.restarts,
            max_restarts=workflow.max_restart_attempts,
            schedule=workflow.restart_backoff_seconds,
        )

    def _open_incident(self, runtime: Runtime, cause: IncidentCause, detail: str) -> Incident:
        """The incident this failure belongs to (a new one if none is open), counting it."""
        if runtime.incident is None:
            runtime.incident = Incident(uuid.uuid4().hex[:8], cause, utcnow(), detail)
        runtime.incident.last_detail = detail
        runtime.incident.failures += 1
        runtime.healthy_since = None
        return runtime.incident

    def _publish_outage(
        self,
        runtime: Runtime,
        decision: Decision,
        event_type: type[Crashed] | type[Hung],
        **fields: Any,
    ) -> Crashed | Hung:
        """Publish a crash or hang in its incident, with where the restart policy stands."""
        restarting = decision.action == "restart"
        event = event_type(
            workflow=runtime.name,
            time=utcnow(),
            incident="",  # known once the detail opens (or continues) the incident
            attempt=runtime.memory.restarts,
            max_attempts=runtime.workflow.max_restart_attempts,
            will_restart=restarting,
            next_restart_in=decision.delay if restarting else None,
            gives_up=decision.action == "give_up",
            restart=runtime.workflow.restart,
            summary=runtime.snapshot.summary,
            log_tail=tuple(output_tail(runtime.log.path, OUTAGE_LOG_LINES)),
            **fields,
        )
        cause: IncidentCause = "hang" if isinstance(event, Hung) else "crash"
        incident = self._open_incident(runtime, cause, event.detail)
        published = replace(event, incident=incident.id, failures=incident.failures)
        self._publish(published, remember=runtime)
        self._background_heal(runtime.name)
        return published

    def _publish_finished(self, runtime: Runtime) -> None:
        still_running = runtime.snapshot.status == "running"
        note = "exited 0 while its status still said running" if still_running else None
        self._publish(
            Finished(
                workflow=runtime.name, time=utcnow(), summary=runtime.snapshot.summary, note=note
            )
        )

    def _after_exit(
        self,
        runtime: Runtime,
        cause: ExitCause,
        *,
        ended: Exit | None = None,
        os_error: str | None = None,
    ) -> None:
        decision = self._decide(runtime, cause)
        if cause == "crash":
            self._publish_outage(
                runtime,
                decision,
                Crashed,
                exit_code=ended.code if ended else None,
                signal=ended.signal if ended else None,
                os_error=os_error,
            )
        self._apply(runtime, decision, cause)

    def _apply(self, runtime: Runtime, decision: Decision, cause: ExitCause) -> None:
        if decision.action == "restart":
            self._to(
                runtime, "backoff", f"{cause}; restart {decision.attempt} in {decision.delay:g}s"
            )
            reason: RestartReason = "exit" if cause == "finished" else cause
            self._restart_later(runtime, decision.delay, reason)
        elif decision.action == "give_up":
            incident = runtime.incident
            if incident is None:  # only a clean exit under ``always`` comes without one
                incident = self._open_incident(runtime, "crash", "exit 0")
            self._to(runtime, "gave_up", f"{runtime.memory.restarts} restarts made")
            gave_up = GaveUp(
                workflow=runtime.name,
                time=utcnow(),
                incident=incident.id,
                attempts=runtime.memory.restarts,
                cause=incident.cause,
                last_detail=incident.last_detail,
                failures=incident.failures,
                max_attempts=runtime.workflow.max_restart_attempts,
            )
            self._publish(gave_up, remember=runtime)
            if runtime.workflow.diagnose == "auto":
                self._diagnose_later(runtime.name, incident.id)
        else:
            self._to(runtime, "finished" if cause == "finished" else "crashed", "restart policy")

    def _diagnose_later(self, name: str, incident: str) -> None:
        """Diagnose a give-up unasked (``diagnose = "auto"``) and publish it as ``Diagnosed``.

        In the background, since a diagnosis with Claude takes seconds to
        ``AGENT_TIMEOUT_SECONDS``. Shutdown cancels it rather than wait: a
        diagnosis not made costs nothing, and ``/why`` can still be asked.
        """
        task = asyncio.create_task(self._diagnose(name, incident))
        self._diagnoses.add(task)
        task.add_done_callback(self._diagnoses.discard)

    async def _diagnose(self, name: str, incident: str) -> None:
        await self._recorder.written()  # the give-up is in the control DB: its evidence shows it
        try:
            verdict = await self.why(name)
        except Exception:  # a diagnosis is a courtesy: its failure must not touch the supervisor
            log.exception("%s: could not diagnose the give-up", name)
            return
        self._publish(Diagnosed(workflow=name, time=utcnow(), incident=incident, verdict=verdict))

    def _background_heal(self, name: str) -> None:
        """After a failure: heal's probation and unasked proposals (``HealDesk.after_failure``)."""
        if self._heal is None:
            return
        task = asyncio.create_task(self._after_failure(self._heal, name))
        self._diagnoses.add(task)
        task.add_done_callback(self._diagnoses.discard)

    async def _after_failure(self, desk: HealDesk, name: str) -> None:
        await self._recorder.written()  # the failure is in the control DB: its evidence shows it
        try:
            await desk.after_failure(name)
        except Exception:  # heal is a courtesy: its failure must not touch the supervisor
            log.exception("%s: heal after a failure failed", name)

    def _restart_later(self, runtime: Runtime, delay: float, reason: RestartReason) -> None:
        runtime.next_restart_at = utcnow() + timedelta(seconds=delay)
        runtime.restart_task = asyncio.create_task(self._delayed_restart(runtime, delay, reason))

    def _announce_restart(
        self, runtime: Runtime, process: WorkflowProcess, reason: RestartReason
    ) -> None:
        """Restarted event: attempt and incident say where an outage stands (0/None if manual)."""
        incident = runtime.incident
        restarted = Restarted(
            workflow=runtime.name,
            time=utcnow(),
            reason=reason,
            attempt=runtime.memory.restarts,
            max_attempts=runtime.workflow.max_restart_attempts,
            incident=incident.id if incident else None,
            pid=process.pid,
            cause=incident.cause if incident else None,
            failures=incident.failures if incident else 0,
            last_detail=incident.last_detail if incident else "",
        )
        self._publish(restarted, remember=runtime)

    async def _delayed_restart(self, runtime: Runtime, delay: float, reason: RestartReason) -> None:
        await asyncio.sleep(delay)
        async with runtime.lock:
            if runtime.process is not None or runtime.state != "backoff":
                return
            runtime.restart_task = None
            runtime.next_restart_at = None
            runtime.memory.restarts += 1
            process = await self._spawn(runtime, f"restart attempt {runtime.memory.restarts}")
            if process is not None:
                self._announce_restart(runtime, process, reason)

    # -- hangs -----------------------------------------------------------------

    def _hang(self, runtime: Runtime, process: WorkflowProcess) -> None:
        """Report the hang and end the group in the background (other checks go on).

        What follows is decided here, once: the exit it causes applies it.
        """
        age = runtime.heartbeat_age(utcnow()) if runtime.fresh_heartbeat() else None
        decision = self._decide(runtime, "hang")
        event = self._publish_outage(
            runtime,
            decision,
            Hung,
            heartbeat_age=age,
            threshold=runtime.workflow.hang_threshold_seconds,
        )
        runtime.expected_exit = "hang"
        runtime.after_hang = decision
        self._to(runtime, "hung", event.detail)
        runtime.log.mark(f"hung: {event.detail}; ending the process group")
        self._background(process.terminate(self.settings.stop_grace_seconds))

    def _background(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` as a task that shutdown waits for."""
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- reload ----------------------------------------------------------------

    async def _reload(self, name: str, path: str) -> None:
        runtime = self._runtimes[name]
        async with runtime.lock:
            if runtime.state in ("stopped", "paused"):
                return
            self._publish(Reloaded(workflow=name, time=utcnow(), path=path))
            await self._restart_now(runtime, "reload")

    # -- the control DB, written by one thread (supervisor/recorder.py) ----------

    def _remember(self, runtime: Runtime) -> None:
        self._recorder.remember(runtime.name, runtime.memory)

    def _publish(self, event: Event, remember: Runtime | None = None) -> None:
        self._recorder.publish(event, remember.memory if remember is not None else None)
