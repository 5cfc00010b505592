"""The ``bertkit`` command group and its error handling.

Commands are thin: they check which options go together, call the library and format
output. Data goes to stdout, progress and warnings to stderr. Any
:class:`~bertkit.errors.BertkitError` becomes one ``Error: ...`` line and exit code 1
(``BERTKIT_DEBUG=1`` shows the traceback instead).
"""

from __future__ import annotations

import functools
import os
import re
import sys

import click

from .. import __version__


def _debug() -> bool:
    return os.environ.get("BERTKIT_DEBUG", "") not in ("", "0")


# How the library names a parameter in its messages (see to_flags)
_PARAMETER = re.compile(r"\bThe '(\w+)' parameter(?: of [\w.]+)?")
_ASSIGNED = re.compile(r"(?<![\w.'\-])(\w+)=('?)([^\s',;)]*)\2")


def to_flags(message: str, params) -> str:
    """Rewrite the Python parameter names of a library message as the command's flags.

    The library speaks Python ("The 'head' parameter of train must be ...", "max_length=2
    leaves no room ..."); on the command line the same message names ``--head-type`` and
    ``--max-length 2``. Only names that are parameters of ``params`` (click parameters, by
    their Python name) are rewritten; anything else is left as it is.
    """
    flags = {p.name: p.opts[0] for p in params if isinstance(p, click.Option) and p.opts}

    def parameter(m):
        flag = flags.get(m.group(1))
        return flag if flag else m.group(0)

    def assigned(m):
        flag = flags.get(m.group(1))
        if not flag:
            return m.group(0)
        value = m.group(3)
        return flag if value == "True" else f"{flag} {value}"

    return _ASSIGNED.sub(assigned, _PARAMETER.sub(parameter, message))


class BertkitCommand(click.Command):
    """A command whose library errors name its flags (see :func:`to_flags`) and that says
    when an old spelling of a flag was used (it still works, for one release)."""

    def parse_args(self, ctx, args):
        renamed = {}
        for p in self.params:
            for alias in getattr(p, "aliases", ()):
                renamed[alias] = p.opts[0]
        for arg in args:
            if arg == "--":
                break
            old = arg.split("=", 1)[0]
            if old in renamed:
                warn(f"{old} is now {renamed[old]}; the old name goes in the next release.")
        return super().parse_args(ctx, args)

    def invoke(self, ctx):
        from ..errors import BertkitError

        try:
            return super().invoke(ctx)
        except BertkitError as e:
            if e.args and isinstance(e.args[0], str):
                e.args = (to_flags(e.args[0], self.params), *e.args[1:])
            raise


class BertkitGroup(click.Group):
    command_class = BertkitCommand
    group_class = type  # sub-groups (similarity) are BertkitGroups too

    def invoke(self, ctx):
        from ..errors import BertkitError

        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except BertkitError as e:
            if _debug():
                raise
            click.echo(f"Error: {e}", err=True)
            ctx.exit(1)
        except KeyboardInterrupt:
            click.echo("Interrupted.", err=True)
            ctx.exit(130)
        except BrokenPipeError:
            # The reader went away (`bertkit embed ... | head`): stop quietly like Unix tools,
            # with 141 (128 + SIGPIPE) as a shell reports for them. stdout goes to /dev/null
            # so Python's final flush of the unsent buffer cannot complain either.
            _stdout_to_devnull()
            ctx.exit(141)
        except MemoryError:
            click.echo("Error: out of memory; lower --batch-size (or --max-length).", err=True)
            ctx.exit(1)
        except Exception as e:  # a bug or an unforeseen input: still one line, not a trace
            if _debug():
                raise
            first = str(e).strip().splitlines()[0] if str(e).strip() else ""
            click.echo(
                f"Error: {type(e).__name__}: {first} (unexpected; rerun with BERTKIT_DEBUG=1 "
                "for the traceback and report it)", err=True)
            ctx.exit(1)


def _stdout_to_devnull() -> None:
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # not a real file (e.g. click's test runner)
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)


@click.group(cls=BertkitGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="bertkit")
def cli():
    """bertkit: tokenize, embed, compare and fine-tune BERT-family encoders.

    Every command runs offline on the bundled default model (all-MiniLM-L6-v2); pass
    --model with a local Hugging Face folder or a Hub id to use another. `bertkit examples
    DIR` copies small example data files out to try the commands on.

    \b
    Examples:
      bertkit examples data && cd data
      bertkit tokenize "granola bars"
      bertkit embed --input topics_test.csv --output topics.npy
      bertkit train --train topics_train.csv --output topics-model
      bertkit evaluate --model topics-model --input topics_test.csv
    """


def runs_model(f):
    """Mark a command that runs the model, and prepare the process for it first.

    Only these commands get ``OMP_WAIT_POLICY=PASSIVE`` (unless the user set it) and
    ``BERTKIT_THREADS``: OpenMP threads that spin while waiting make torch many times slower
    when another process shares the cores (a training step took 4.5 s with the default
    policy and 0.5-0.9 s with PASSIVE while another 2-thread job ran; within noise on an
    idle machine). It must be set before torch loads, which the CLI defers to the command.
    Commands that run no model (tokenize, info, examples) and the library itself leave the
    environment alone.
    """
    @functools.wraps(f)
    def wrapper(*args, **kwargs):
        from ..models import set_threads

        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        set_threads()  # BERTKIT_THREADS, when set
        return f(*args, **kwargs)

    wrapper.runs_model = True
    return wrapper


def echo_json(obj) -> None:
    """Print ``obj`` as JSON on stdout (numpy values converted)."""
    import json

    def default(o):
        if hasattr(o, "tolist"):
            return o.tolist()
        if hasattr(o, "item"):
            return o.item()
        raise TypeError(f"not JSON serializable: {type(o).__name__}")

    click.echo(json.dumps(obj, default=default, ensure_ascii=False))


def warn(message: str) -> None:
    """A warning on stderr (kept out of stdout so --json output stays parseable)."""
    click.echo(f"Warning: {message}", err=True)


def stderr_is_terminal() -> bool:
    """Progress bars only on a terminal; quiet in pipes and CI."""
    return sys.stderr.isatty() and not os.environ.get("CI")
