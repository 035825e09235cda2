"""What the SIGKILL-resume tests share: a driver that dies right after a chosen checkpoint, and
the final state of a run to compare leaf by leaf."""
import json

from jreid.core import checkpoint

# Run as `python -c DRIVER config.json workdir kill_after`; `{setup}` is code run first
# (registering a test method, say).
DRIVER = """
import json, os, signal, sys
import ml_collections
{setup}
from jreid.core import checkpoint
from jreid.train import loop
config, workdir, kill_after = sys.argv[1], sys.argv[2], int(sys.argv[3])
save = checkpoint.Checkpointer.save

def save_then_die(self, step, state, data_state):
  save(self, step, state, data_state)
  if step == kill_after:  # no clean-up of any kind: the process is gone
    self.wait()
    os.kill(os.getpid(), signal.SIGKILL)

checkpoint.Checkpointer.save = save_then_die
loop.train_and_evaluate(ml_collections.ConfigDict(json.load(open(config))), workdir)
"""


def final_run(workdir):
  """(the latest step, its raw checkpoint tree, every logged loss)."""
  other, step = checkpoint.open_existing(workdir)
  raw = other.restore_raw(step)
  other.close()
  losses = [json.loads(line)["loss"] for line in (workdir / "metrics.jsonl").read_text().splitlines()]
  return step, raw, losses
