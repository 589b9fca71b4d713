"""Weekly report."""
from workflows import Workflow
import pandas as pd

wf = Workflow("report")
