"""Kill `tinyllm train` with SIGKILL at random moments, resume it, and check the final weights
are bit-identical to a run that was never interrupted.

    python benchmarks/kill_resume.py                      # 5 trials of 2 kills, tiny preset
    python benchmarks/kill_resume.py --trials 10 --kills 3 --steps 200

Each trial trains the same run as the uninterrupted reference, but kills the process `--kills`
times: half of the kills at a random moment of the run (start-up, a step, an evaluation), the
other half the instant a checkpoint write is seen in progress (a `.checkpoint*.tmp` folder
exists), which is the moment a careless writer would leave a broken checkpoint. After each kill
the run is resumed with `tinyllm train --resume` (or started again if it was killed before it
had a config.json); after the last one it runs to the end. Prints JSON: how many trials ended
bit-identical to the reference ("N of N bit-identical"), how many kills landed during a
checkpoint write, and the step each kill left the checkpoint at.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tinyllm.safetensors import load_file  # noqa: E402


def _command(data, out, steps, eval_interval, extra, resume=False):
    where = ["--resume", str(out)] if resume else ["--out", str(out), "--data", str(data),
                                                   *extra]
    return [sys.executable, "-m", "tinyllm", "train", *where, "--max-steps", str(steps),
            "--eval-interval", str(eval_interval), "--quiet"]


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _launch(cmd):
    return subprocess.Popen(cmd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _writing_checkpoint(run):
    return run.exists() and any(p.name.endswith(".tmp") and p.name.startswith(".checkpoint")
                                for p in run.iterdir())


def _kill(proc, run, mode, budget, rng):
    """Kill `proc` at a random moment ('random') or as soon as a checkpoint write is seen
    ('checkpoint'). Returns (killed, during_write)."""
    # 'random': any moment of the run. 'checkpoint': the first checkpoint write after a random
    # moment (so not always the step-0 one), caught while its temporary folder exists.
    wait_until = time.perf_counter() + rng.uniform(0.05, 0.9) * budget
    deadline = wait_until if mode == "random" else wait_until + budget
    while proc.poll() is None and time.perf_counter() < deadline:
        if mode == "checkpoint" and time.perf_counter() >= wait_until and _writing_checkpoint(run):
            break
        time.sleep(0.0005 if mode == "checkpoint" else 0.005)
    if proc.poll() is not None:
        return False, False
    during = _writing_checkpoint(run)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return True, during


def _start(data, run, steps, eval_interval, extra):
    """Launch the run: resume it when it has a config.json, else start it afresh."""
    if (run / "config.json").exists():
        return _launch(_command(data, run, steps, eval_interval, extra, resume=True))
    shutil.rmtree(run, ignore_errors=True)  # killed before it was a run: nothing to keep
    return _launch(_command(data, run, steps, eval_interval, extra))


def _finish(proc):
    _, err = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"training failed ({proc.returncode}): {err.decode()[-2000:]}")


def _weights(run):
    folder = run / "checkpoint"
    return {**load_file(folder / "model.safetensors")[0],
            **{f"opt.{k}": v for k, v in load_file(folder / "optimizer.safetensors")[0].items()}}


def _same(a, b):
    return a.keys() == b.keys() and all(a[k].tobytes() == b[k].tobytes() for k in a)


def kill_resume(data, workdir, trials=5, kills=2, steps=120, eval_interval=10, extra=(),
                seed=0, log=None):
    """Run the trials in `workdir`; return the result dict (see the module docstring)."""
    rng = random.Random(seed)
    workdir = Path(workdir)
    reference = workdir / "reference"
    start = time.perf_counter()
    proc = _launch(_command(data, reference, steps, eval_interval, extra))
    _finish(proc)
    budget = time.perf_counter() - start  # how long one whole run takes, start-up included
    expected = _weights(reference)
    identical, landed, during_write, left_at = 0, 0, 0, []
    for trial in range(trials):
        run = workdir / f"trial-{trial}"
        for k in range(kills):
            mode = "checkpoint" if k % 2 else "random"
            killed, during = _kill(_start(data, run, steps, eval_interval, extra), run, mode,
                                   budget, rng)
            landed += killed
            during_write += during
            state = run / "checkpoint" / "state.json"
            left_at.append(json.loads(state.read_text())["step"] if state.exists() else None)
        _finish(_start(data, run, steps, eval_interval, extra))
        same = _same(expected, _weights(run))
        identical += same
        if log:
            log(f"trial {trial}: {'bit-identical' if same else 'DIFFERENT'}")
    return {"trials": trials, "kills_per_trial": kills, "kills_landed": landed,
            "kills_during_checkpoint_write": during_write, "checkpoint_step_after_each_kill":
            left_at, "bit_identical": identical,
            "result": f"{identical} of {trials} bit-identical", "steps": steps,
            "reference_run_s": round(budget, 2),
            "total_s": round(time.perf_counter() - start, 1)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--kills", type=int, default=2, help="kills per trial")
    parser.add_argument("--steps", type=int, default=120)
    parser.add_argument("--eval-interval", type=int, default=10)
    parser.add_argument("--data", default=None,
                        help="a prepared folder (default: builtin:pydoc prepared once here)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kill-resume-") as tmp:
        data = args.data
        if data is None:
            from tinyllm.data.prepare import prepare

            data = str(Path(tmp) / "data")
            prepare("builtin:pydoc", data, vocab_size=512, progress=False)
        result = kill_resume(data, tmp, args.trials, args.kills, args.steps, args.eval_interval,
                             extra=("--preset", "tiny"), seed=args.seed,
                             log=lambda m: print(m, file=sys.stderr))
    print(json.dumps(result, indent=2))
    return 0 if result["bit_identical"] == result["trials"] else 1


if __name__ == "__main__":
    sys.exit(main())
