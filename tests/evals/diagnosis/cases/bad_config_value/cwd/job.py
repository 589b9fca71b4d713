"""Index the documents in batches."""
import os

from workflows import Context, Workflow

wf = Workflow("indexer")
def plan(ctx: Context) -> int:
    batch = int(os.environ["BATCH_SIZE"])
    return batch
