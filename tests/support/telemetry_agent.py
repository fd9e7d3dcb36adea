"""A local agent for the tracing tests: records its environment, then does what the example agent does.

The file it writes is named by the task's `APP_ENV_DUMP` (an env the default allow-list lets a task set).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

if __name__ == "__main__":
    Path(os.environ["APP_ENV_DUMP"]).write_text(json.dumps(dict(os.environ)))
    os.execv(sys.executable, [sys.executable, "-m", "orchestrator.agents.example"])
