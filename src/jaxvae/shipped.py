"""The configs and studies that ship inside the package, chosen by name.

``jaxvae train --config vae`` and ``jaxvae study run exemplar_fmnist`` name files of the package's
``experiments/configs/`` and ``experiments/studies/``; a name is a word without a path separator
or a ``.py`` ending, and anything else is a path, as before. In a clone of the repository,
``src/jaxvae/experiments`` is a link to the repository's ``experiments/``, so a clone, an editable
install and an installed wheel read the same files. A shipped file may load another by name
(``load_config_file("dsprites")``). ``jaxvae configs`` prints :func:`listing`.
"""

from __future__ import annotations

import ast
import os

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "experiments")
# kind -> (its directory under ROOT, the command that runs a file of it)
KINDS = {
    "config": ("configs", "jaxvae train --config NAME"),
    "study": ("studies", "jaxvae study run NAME --workdir DIR"),
}
# Other names of shipped files: `vae` is the default conv VAE of `default.py`.
ALIASES = {"config": {"vae": "default"}}


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {tuple(KINDS)}, got {kind!r}")


def is_name(text: str) -> bool:
    """Whether ``text`` names a shipped file (a word) rather than giving a path."""
    return bool(text) and os.sep not in text and "/" not in text and not text.endswith(".py")


def names(kind: str) -> list[str]:
    """The shipped files of ``kind`` (``"config"`` or ``"study"``), by name, sorted."""
    _check_kind(kind)
    directory = os.path.join(ROOT, KINDS[kind][0])
    files = os.listdir(directory) if os.path.isdir(directory) else []
    return sorted(f[:-3] for f in files if f.endswith(".py") and not f.startswith("_"))


def resolve(name_or_path: str, kind: str) -> str:
    """The file ``name_or_path`` stands for: a shipped file's path for a name, else itself.

    Raises:
      ValueError: a name that no shipped file of ``kind`` has (one line with the known names).
    """
    _check_kind(kind)
    if not is_name(name_or_path):
        return name_or_path
    name = ALIASES.get(kind, {}).get(name_or_path, name_or_path)
    known = names(kind)
    if name not in known:
        shown = ", ".join(sorted(known + list(ALIASES.get(kind, {}))))
        what = f"give a file path or a shipped {kind}'s name ({shown}; `jaxvae configs` describes them)"
        raise ValueError(f"unknown {kind} {name_or_path!r}: {what}")
    return os.path.join(ROOT, KINDS[kind][0], f"{name}.py")


def summary_line(path: str, *, width: int = 100) -> str:
    """The start of the module docstring of the Python file ``path``: its first paragraph on one
    line, cut at a word to at most ``width`` characters ("" without a docstring)."""
    with open(path) as f:
        doc = ast.get_docstring(ast.parse(f.read())) or ""
    text = " ".join(doc.strip().split("\n\n")[0].split())
    if len(text) > width:
        text = text[: text.rfind(" ", 0, width - 3)] + " ..."
    return text


def listing() -> str:
    """Every shipped config and study: its name (and other names) and its docstring's first
    line, under the command that runs it."""
    out = []
    for kind, (directory, command) in KINDS.items():
        aliases: dict[str, list[str]] = {}
        for alias, name in ALIASES.get(kind, {}).items():
            aliases.setdefault(name, []).append(alias)
        rows = []
        for name in names(kind):
            shown = ", ".join([*aliases.get(name, []), name])
            rows.append((shown, summary_line(os.path.join(ROOT, directory, f"{name}.py"))))
        width = max((len(s) for s, _ in rows), default=0)
        out.append(f"{directory} ({command}):")
        out += [f"  {s.ljust(width)}  {line}".rstrip() for s, line in rows]
    return "\n".join(out)
