"""What /why gets right and what it costs: the whole path scored on every evaluation case.

For each case in ``tests/evals/diagnosis/`` the evidence pack is built by the
real builder (``build_case_pack``), the rules classify it, and the real
``Diagnoser`` asks the model and checks its quotes. Offline (the default
without ``ANTHROPIC_API_KEY``, or with ``--offline``) the model is the
stand-in Messages endpoint answering each case with its reply recorded in
``tests/evals/diagnosis/recorded.json``: what a competent model answers, two
of them honestly flawed (an invented quote, a misread timeout) so the check
and the score are exercised. With the key set it asks the real API, and
spends real money (at most ``AGENT_MAX_USD_PER_DAY``). Prints figures;
asserts nothing.

    python bench/diagnosis_eval.py [--offline] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests/ is not installed

from pydantic import SecretStr

from supervisor.agentsettings import AgentSettings
from supervisor.dbengine import make_engine
from supervisor.diagnosis.diagnose import Diagnoser
from supervisor.diagnosis.rules import classify
from supervisor.diagnosis.types import Verdict
from tests.evals.diagnosis.cases import CASES_DIR, Case, build_case_pack, load_cases
from tests.fakes.messages_api import FakeMessagesAPI

RECORDED = CASES_DIR.parent / "recorded.json"
QUICK_CASES = 6
OFFLINE_KEY = "sk-ant-api03-bench-offline-not-a-real-key-0123456789"


@dataclass(frozen=True, slots=True)
class Score:
    """One case's outcome; ``tool_rounds`` is None when it cannot be seen (the real API)."""

    case: Case
    verdict: Verdict
    tool_rounds: int | None

    @property
    def right(self) -> bool:
        return self.verdict.category == self.case.category


async def score(
    case: Case, settings: AgentSettings, workdir: Path, api: FakeMessagesAPI | None
) -> Score:
    """The whole /why path on ``case``: pack, rules, then the model through a fresh Diagnoser
    (fresh, so that no case finds another's answer in the cache)."""
    pack = build_case_pack(case, workdir)
    engine = make_engine(f"sqlite:///{workdir / 'control.db'}")
    before = len(api.message_requests()) if api else 0
    verdict = await Diagnoser(settings, engine).diagnose(pack, classify(pack))
    rounds = len(api.message_requests()) - before - 1 if api else None
    return Score(case, verdict, rounds)


def _percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def report(scores: list[Score], mode: str) -> None:
    print(f"/why on {len(scores)} evaluation cases, model: {mode}")
    header = f"{'case':<30} {'expected':<12} {'got':<12} {'ok':<5} {'source':<6} {'tools':>5}"
    print(f"{header} {'tok in':>7} {'tok out':>7} {'USD':>7} {'s':>6}  note")
    for s in scores:
        usage, verdict = s.verdict.usage, s.verdict
        tools = "?" if s.tool_rounds is None else str(s.tool_rounds)
        print(
            f"{s.case.name:<30} {s.case.category:<12} {verdict.category:<12} "
            f"{'right' if s.right else 'WRONG':<5} {verdict.source:<6} {tools:>5} "
            f"{usage.input_tokens:>7} {usage.output_tokens:>7} {usage.cost_usd:>7.4f} "
            f"{usage.seconds:>6.2f}  {(verdict.note or '')[:60]}"
        )
    seconds = [s.verdict.usage.seconds for s in scores]
    known_tools = [s.tool_rounds for s in scores if s.tool_rounds is not None]
    right = sum(s.right for s in scores)
    print(
        f"accuracy {right}/{len(scores)} = {right / len(scores):.0%}; "
        f"model answers kept {sum(s.verdict.source == 'model' for s in scores)}; "
        f"tool rounds {sum(known_tools) if known_tools else '?'}; "
        f"tokens {sum(s.verdict.usage.input_tokens for s in scores)} in / "
        f"{sum(s.verdict.usage.output_tokens for s in scores)} out; "
        f"cost ${sum(s.verdict.usage.cost_usd for s in scores):.4f}; "
        f"seconds p50 {_percentile(seconds, 0.5):.2f} p95 {_percentile(seconds, 0.95):.2f} "
        f"(mean {statistics.fmean(seconds):.2f})"
    )


async def run(cases: list[Case], offline: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        if not offline:
            settings = AgentSettings()
            scores = [await score(c, settings, root / c.name, None) for c in cases]
            report(scores, f"{settings.anthropic_model} (real API)")
            return
        recorded: dict[str, Any] = json.loads(RECORDED.read_text())
        with FakeMessagesAPI() as api:
            settings = AgentSettings(
                _env_file=None,
                anthropic_api_key=SecretStr(OFFLINE_KEY),
                anthropic_base_url=api.base_url,
            )
            scores = []
            for case in cases:
                reply = recorded[case.name]
                api.queue_reply(
                    json.dumps(reply["diagnosis"]), reply["input_tokens"], reply["output_tokens"]
                )
                scores.append(await score(case, settings, root / case.name, api))
        report(scores, f"{settings.anthropic_model} (recorded replies, stand-in endpoint)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--offline", action="store_true", help="recorded replies even with a key")
    parser.add_argument("--quick", action="store_true", help=f"only the first {QUICK_CASES} cases")
    args = parser.parse_args()
    cases = load_cases()[:QUICK_CASES] if args.quick else load_cases()
    offline = args.offline or not AgentSettings().configured
    asyncio.run(run(cases, offline))


if __name__ == "__main__":
    main()
