"""Rate-distortion training.

    python train.py --config configs/<name>.py[:tiny] --workdir DIR [--config.key=value ...]

Defaults: ``--config configs/tiny.py`` and ``--workdir workdir/<model id>``. Restarting with the
same workdir resumes from its latest checkpoint. Config keys are locked: a typo in
``--config.total_stpes=10`` is an error, not a silently ignored flag.
"""

from __future__ import annotations

import pathlib
import re
import sys
from collections.abc import Sequence

from absl import flags
from ml_collections import config_flags

ROOT = pathlib.Path(__file__).resolve().parent
FLAGS = flags.FLAGS
_CONFIG = config_flags.DEFINE_config_file(
    "config", str(ROOT / "configs" / "tiny.py"), "Config file (path[:arg]).", lock_config=True
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Work directory (default: workdir/<model id>).")


def run(argv: Sequence[str]) -> dict[str, float]:
    """Parses ``argv`` (including the program name) and trains; returns final metrics."""
    FLAGS.unparse_flags()
    for name in [n for n in FLAGS if n.startswith("config.")]:  # overrides of an earlier call
        delattr(FLAGS, name)
    # config_flags finds the --config.key=value overrides in sys.argv, so parse with it set.
    saved, sys.argv = sys.argv, list(argv)
    try:
        FLAGS(list(argv))
    except (AttributeError, KeyError) as e:  # ml_collections: an unknown (misspelt) config key
        text = str(e.args[0] if e.args else e)
        keys = re.findall(r"[\w.]+", text.split("Did you mean")[0])
        hint = re.findall(r'Did you mean "([\w.]+)"', text)
        raise flags.Error(
            f"unknown config key {keys[0] if keys else text!r}"
            + (f" (did you mean {hint[0]!r}?)" if hint else "")
        ) from e
    finally:
        sys.argv = saved
    from swinjax import train_lib

    config = _CONFIG.value
    workdir = _WORKDIR.value or str(pathlib.Path("workdir") / config.model.id)
    return train_lib.train(config, workdir)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point used by tests: ``main(["train.py", "--config", ...])``; returns exit status.

    A user's mistake (a config that cannot work, missing data or weights, a diverging run) is one
    line on stderr and status 1 (2 for bad flags); anything else is a bug and keeps its traceback.
    ``--help`` or ``-h`` prints the usage and the flags and returns 0.
    """
    argv = sys.argv if argv is None else argv
    if any(a in ("--help", "-h") for a in argv[1:]):  # absl's --help lives in app.run, unused here
        flag_help = FLAGS.module_help(sys.modules[__name__]).split(":\n", 1)[-1]
        print(f"{__doc__.strip()}\n\nFlags:\n{flag_help}")
        return 0
    from swinjax import compile_cache
    from swinjax.data import DataConfigError
    from swinjax.train_config import ConfigError
    from swinjax.train_lib import NonFiniteError

    compile_cache.enable()  # a restart loads the compiled step instead of compiling it again
    try:
        run(argv)
    except (ConfigError, DataConfigError, NonFiniteError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except flags.Error as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
