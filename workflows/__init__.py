"""Author long-running agent workflows that a supervisor can watch and resume.

See ``README.md`` ("Writing a workflow") for the patterns; the bundled
examples in ``workflows/examples`` show each one.
"""

from workflows.agents import (
    Agent,
    AgentError,
    ClaudeAgent,
    ClaudeCodeAgent,
    ScriptedAgent,
    default_agent,
)
from workflows.context import Context, Outputs
from workflows.current import TaskCall, current_task
from workflows.errors import (
    CodePathChanged,
    LoopLimitReached,
    TaskFailed,
    TaskTimeout,
    WorkflowError,
    WorkflowInterrupted,
)
from workflows.tasks import Task
from workflows.workflow import RunResult, Workflow

__all__ = [
    "Agent",
    "AgentError",
    "ClaudeAgent",
    "ClaudeCodeAgent",
    "CodePathChanged",
    "Context",
    "LoopLimitReached",
    "Outputs",
    "RunResult",
    "ScriptedAgent",
    "Task",
    "TaskCall",
    "TaskFailed",
    "TaskTimeout",
    "Workflow",
    "WorkflowError",
    "WorkflowInterrupted",
    "current_task",
    "default_agent",
]
