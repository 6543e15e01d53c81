"""Run by tests/tinyllm/test_distributed.py under mpiexec (or alone): train in-process, stop at a
chosen step, optionally raise on one rank; print each rank's weight digest as JSON lines.

    python distributed_driver.py '{"cfg": {...TrainConfig...}, "resume": false, "stop_at": 3}'
"""

import json
import sys

from tinyllm import distributed
from tinyllm.train import TrainConfig, Trainer


def main():
    plan = json.loads(sys.argv[1])
    comm = distributed.connect(plan.get("distributed", "auto"))
    with distributed.guard(comm):
        cfg = TrainConfig.from_dict(plan["cfg"])
        trainer = distributed.setup(comm, Trainer, cfg, resume=plan.get("resume", False),
                                    bucket_mb=plan.get("bucket_mb", 0.01),
                                    overlap=plan.get("overlap", True),
                                    zero=plan.get("zero", 0))
        if plan.get("raise_on_rank") == comm.rank:
            step = trainer.train_step

            def failing_step():
                if trainer.step == plan.get("raise_at", 1):
                    raise ValueError(f"injected failure on rank {comm.rank}")
                return step()
            trainer.train_step = failing_step
        if plan.get("rows"):  # which global rows this rank's loader keeps
            print(json.dumps({"rank": comm.rank, "rows": trainer.train_loader.rows.tolist()}))
        trainer.run(stop_at=plan.get("stop_at"))
        digest = distributed.check_identical(comm, trainer.model, "driver")
        print(json.dumps({"rank": comm.rank, "size": comm.size, "step": trainer.step,
                          "digest": digest, "buckets": len(getattr(trainer.grads, "buckets", []))}),
              flush=True)


if __name__ == "__main__":
    main()
