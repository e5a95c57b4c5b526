# Building psets: the cartesian product, computed columns, and the other sweep builders.
import numpy as np

import paramsurvey.params as pp

psets = pp.product({'a': [1, 2, 3], 'b': [4, 5, 6]})  # 9 rows, b varies fastest
psets['i'] = np.arange(len(psets))
psets = pp.add_column(psets, 'outname', lambda row: 'outfile-{}-{}'.format(row['a'], row['b']))
print(psets)

print(pp.describe(psets))
print(pp.zip({'x': [1, 2, 3], 'y': [10, 20, 30]}))           # paired, not crossed
print(pp.star({'x': 1.0, 'y': 2.0}, {'x': [0.5, 2.0], 'y': [1.0, 4.0]}))  # one factor at a time
print(pp.sample(8, seed=1, method='lhs', x=pp.uniform(0, 1), k=pp.loguniform(1e-3, 1e3)))
