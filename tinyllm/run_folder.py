"""Run folders: where a new run goes, and the prepared data it trains on.

A run never replaces or mixes with an earlier one (`new_run_dir`), and the data a run prepared
into RUN/data is reused only while its recorded provenance matches the run's settings
(`load_data`), so a changed --data or --vocab-size is never silently ignored.
"""

from __future__ import annotations

from pathlib import Path

DEFAULT_OUT = "runs/tinyllm"


class RunFolderError(ValueError):
    """A run folder that can't be used as asked: an earlier run would be mixed or replaced, or
    its prepared data no longer matches its configuration."""


def new_run_dir(out_dir: str | None, log) -> Path:
    """The folder for a new (not resumed) run. An earlier run is never replaced or mixed in:
    with no `--out` the first free one of runs/tinyllm, runs/tinyllm-2, runs/tinyllm-3, ... is
    taken (and named), so the README's commands can run one after another; an `--out` that was
    given explicitly and already holds something is refused."""
    if out_dir is None:
        base = Path(DEFAULT_OUT)
        candidate, n = base, 1
        while _occupied(candidate):
            n += 1
            candidate = base.with_name(f"{base.name}-{n}")
        if candidate != base:
            log(f"{base} holds an earlier run; this run goes to {candidate} "
                f"(continue that one with --resume {base})")
        return candidate
    folder = Path(out_dir)
    if _occupied(folder):
        what = "a run" if (folder / "config.json").exists() else "files"
        raise RunFolderError(
            f"{folder} already holds {what}; a new run never replaces or mixes with it. Pass "
            f"--resume {folder} to continue it, or --out NEW_FOLDER for a new run (or delete it)")
    return folder


def _occupied(folder: Path) -> bool:
    return folder.exists() and (not folder.is_dir() or any(folder.iterdir()))


def load_data(cfg, vocab_size: int, run_dir: Path, log, resume: bool = False):
    """(tokenizer, train tokens, val tokens, test tokens or None) for `cfg.data`: a prepared
    folder used as it is, or text prepared into RUN/data. RUN/data is reused only when its
    recorded provenance (sources, vocabulary size or tokenizer, cleaning) matches `cfg`;
    otherwise a new run prepares it again, and a resume refuses (its data would change under
    it). Folders prepared before the test split existed have no test.bin: test is then None."""
    from tinyllm.data.prepare import prepare
    from tinyllm.data.prepared import check_prepared, load_prepared, provenance, tokenizer_sha256

    src = Path(cfg.data)
    if src.is_dir() and (src / "meta.json").exists():  # a folder made by `tinyllm prepare`
        data = load_prepared(src)
        if cfg.tokenizer and tokenizer_sha256(cfg.tokenizer) != tokenizer_sha256(data.tokenizer):
            raise RunFolderError(f"--tokenizer {cfg.tokenizer} is not the tokenizer {src} was "
                                 "prepared with; prepare the data with it, or leave it out")
    else:
        folder = run_dir / "data"
        try:
            expected = provenance([cfg.data], vocab_size, cfg.tokenizer)
        except FileNotFoundError as err:
            if not resume:
                raise
            raise RunFolderError(f"cannot resume {run_dir}: the data its config.json names is "
                                 f"gone ({err})") from None
        differences = check_prepared(folder, expected)
        if differences and resume and (folder / "meta.json").exists():
            raise RunFolderError(
                f"cannot resume {run_dir}: its prepared data {folder} no longer matches the run's "
                f"configuration ({'; '.join(differences)}); start a new run instead")
        if differences:
            if folder.exists():
                log(f"not reusing {folder}: {'; '.join(differences)}")
            log(f"preparing {cfg.data} (vocab {vocab_size}) into {folder}")
            prepare(cfg.data, folder, tokenizer=cfg.tokenizer, vocab_size=vocab_size,
                    progress=cfg.progress)
        data = load_prepared(folder)
    test = data.test if len(data.test) else None
    return data.tokenizer, data.train, data.val, test
