# Timing the phases of a worker: record_wallclock / record_iowait add timers to results.stats.
import time

import paramsurvey
import paramsurvey.stats


def stats_worker(pset, system_kwargs, user_kwargs):
    raw_stats = system_kwargs['raw_stats']

    with paramsurvey.stats.record_wallclock('cpu-loop wallclock', raw_stats):
        with paramsurvey.stats.record_iowait('cpu-loop iowait', raw_stats):
            t = time.time()
            while t + pset['seconds'] > time.time():  # spins on the CPU: iowait ~ 0
                pass

    with paramsurvey.stats.record_wallclock('sleep-loop wallclock', raw_stats):
        with paramsurvey.stats.record_iowait('sleep-loop iowait', raw_stats):
            time.sleep(pset['seconds'])  # sleeps: iowait ~ wallclock


paramsurvey.init(backend='multiprocessing')
psets = [{'seconds': 0.2}] * 4
results = paramsurvey.map(stats_worker, psets, name='stats-example', verbose=0)
assert results.progress.failures == 0
results.stats.print_percentiles('stats-example_wallclock')
results.stats.print_histograms('stats-example_wallclock')
