# One command line per pset: utils.subprocess_run_worker runs pset['run_args'].
import subprocess

import paramsurvey
from paramsurvey.utils import subprocess_run_worker

paramsurvey.init(backend='multiprocessing')

psets = [{'run_args': ['echo', str(i)]} for i in (1, 2, 3)]
user_kwargs = {'run_kwargs': {'stdout': subprocess.PIPE, 'encoding': 'utf-8'}}

results = paramsurvey.map(subprocess_run_worker, psets, user_kwargs=user_kwargs, verbose=0)
assert results.progress.failures == 0

for r in results.itertuples():
    # r.cli is a subprocess.CompletedProcess
    print(r.cli.returncode, r.cli.stdout.rstrip())
