"""The CAMELS Multifield Dataset (Villaescusa-Navarro et al. 2022, ApJS 259, 61) as popstore stores.

- :mod:`~popstore.camels.importer`: CMD ``Maps_*.npy`` and ``params_*.txt`` into a store, split by simulation;
- :mod:`~popstore.camels.cli`: ``popstore cmd-import``.

The maps are then used by the generic moment-network estimator (:mod:`popstore.estimators`), as in the
CMD benchmark.
"""
