# A multi-stage survey: the first map's results become a factor of the second map's psets.
import paramsurvey
import paramsurvey.params


def first_stage(pset, system_kwargs, user_kwargs):
    return {'expensive': pset['a'] + pset['b']}


def second_stage(pset, system_kwargs, user_kwargs):
    return {'final': pset['expensive'] + pset['c']}


paramsurvey.init(backend='multiprocessing')

psets = paramsurvey.params.product({'a': [1, 2, 3], 'b': [4, 5, 6]})
results = paramsurvey.map(first_stage, psets, verbose=0)
assert results.progress.failures == 0

# the whole results table (a, b, expensive) is one factor: its rows stay together
psets = paramsurvey.params.product(results, {'c': [7, 8, 9]})
results = paramsurvey.map(second_stage, psets, verbose=0)
assert results.progress.failures == 0
print(results.to_df())
