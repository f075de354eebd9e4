import signal
import subprocess
import sys

import pytest

from db.engine import make_engine
from db.locks import LockHeld, run_lock

HOLDER = """
import sys, time
from db.engine import make_engine
from db.locks import run_lock
with run_lock(make_engine({url!r}), "features"):
    print("held", flush=True)
    time.sleep(60)
"""


def test_a_killed_holder_frees_the_lock(database_url):
    holder = subprocess.Popen([sys.executable, "-c", HOLDER.format(url=database_url)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        engine = make_engine(database_url)
        with pytest.raises(LockHeld):
            with run_lock(engine, "features"):
                pass
        with run_lock(engine, "grouping"):  # each job has its own lock
            pass
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
        with run_lock(engine, "features"):
            pass
        engine.dispose()
    finally:
        holder.kill()
        holder.wait()
