"""Entry point of the single-file executable (deploy/frozen/llm-gateway.spec): the ``llm-gateway``
command, which also serves offline with no config file around.

The config is found as everywhere else (``--config``, then ``$LLM_GATEWAY_CONFIG``, then
``./gateway.yaml``); only when none of those exists does the executable fall back to the
repository's ``gateway.yaml`` (the offline mock provider) bundled inside it.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from pathlib import Path

from gateway.cli import main
from gateway.loader import CONFIG_ENV, DEFAULT_CONFIG


def use_bundled_config_as_last_resort() -> None:
    bundle = Path(getattr(sys, "_MEIPASS", Path(__file__).parent))
    if not os.environ.get(CONFIG_ENV) and not Path(DEFAULT_CONFIG).exists():
        os.environ[CONFIG_ENV] = str(bundle / DEFAULT_CONFIG)


if __name__ == "__main__":
    # `serve --workers N` starts spawned processes: in a frozen program they re-enter here.
    multiprocessing.freeze_support()
    use_bundled_config_as_last_resort()
    sys.exit(main())
