"""A survey meant to run as a Slurm batch job, and to resume from its journal (docs/hpc.md).

    sbatch survey.sbatch          # one allocation; if it is stopped, submit it again to resume
    sbatch survey-chain.sbatch    # as many allocations as the survey needs, one after the other
    sbatch ray-survey.sbatch      # on a Ray cluster started inside the allocation

Each pset writes one output file, ``out/<x>.<job id>.<pid>``: the name tells which job ran it.
Run again with the same journal, the survey runs only the psets without an outcome and returns the
complete results. Settings come from the environment, so that one script serves every example:

    SURVEY_JOURNAL   the journal (default survey.journal, in the directory sbatch was run from)
    SURVEY_PSETS     how many psets (default 200)
    SURVEY_SECONDS   each pset's work, in seconds (default 1.0)
    SURVEY_BACKEND   multiprocessing (default), or ray: then RAY_ADDRESS names the Ray head
"""

import os
import time

import paramsurvey


def simulate(pset, system_kwargs, user_kwargs):
    time.sleep(user_kwargs['seconds'])  # stands for the real computation
    name = f"{pset['x']}.{user_kwargs['job']}.{os.getpid()}"
    with open(os.path.join(user_kwargs['out'], name), 'w') as f:
        f.write(f"{pset['x'] ** 2}\n")
    return {'square': pset['x'] ** 2}


def main():
    backend = os.environ.get('SURVEY_BACKEND', 'multiprocessing')
    if backend == 'ray':
        paramsurvey.init(backend='ray', ray={'address': os.environ['RAY_ADDRESS']})
    else:
        paramsurvey.init(backend=backend)

    journal = os.environ.get('SURVEY_JOURNAL', 'survey.journal')
    print(f"survey on the {backend} backend, journal {os.path.abspath(journal)}", flush=True)
    out = os.path.abspath('out')
    os.makedirs(out, exist_ok=True)
    psets = [{'x': x} for x in range(int(os.environ.get('SURVEY_PSETS', 200)))]
    user_kwargs = {'out': out, 'seconds': float(os.environ.get('SURVEY_SECONDS', 1.0)),
                   'job': os.environ.get('SLURM_JOB_ID', 'local')}

    # Stopped by Slurm (time limit, preemption, scancel), map() stops its workers, writes the
    # journal and raises paramsurvey.Interrupted: the script ends with exit status 1.
    results = paramsurvey.map(simulate, psets, journal=journal,
                              user_kwargs=user_kwargs)
    print(f"survey finished: {len(results)} results, {len(results.missing)} failed", flush=True)


if __name__ == '__main__':
    main()
