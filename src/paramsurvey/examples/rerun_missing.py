# Re-running what failed: results.missing.to_psets() is ready to pass to map() again.
import random
from typing import Any

import paramsurvey


def flaky_worker(pset, system_kwargs, user_kwargs):
    if random.randint(1, 100) <= pset['pct_chance_fail']:
        raise RuntimeError('bad luck')
    return {'ok': True}


paramsurvey.init(backend='multiprocessing', max_tasks_per_child=10)  # replace workers every 10 psets

psets: Any = [{'pct_chance_fail': 20}] * 100
rounds = 0
while True:
    results = paramsurvey.map(flaky_worker, psets, verbose=0)
    rounds += 1
    print('round', rounds, 'missing', len(results.missing))
    if len(results.missing) == 0 or rounds >= 20:
        break
    psets = results.missing.to_psets()
print('all done after', rounds, 'rounds')
