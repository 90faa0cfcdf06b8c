"""Isolated-pulsar population synthesis (Graber et al. 2024; Pardo-Araujo et al. 2025).

Modules: :mod:`.config` (every constant), :mod:`.birth`, :mod:`.potential`,
:mod:`.orbits`, :mod:`.coords` (dynamics), :mod:`.spin` (field decay, spin-down),
:mod:`.radio` (beaming, width, luminosity, flux), :mod:`.population` (the per-star
catalogue), :mod:`.maps` (axes and map builders), :mod:`.full` (``pulsar_full``);
radio surveys: :mod:`.dm` (YMW16 DM grid), :mod:`.surveys` (radiometer, detection),
:mod:`.survey_maps`, :mod:`.detected` (``pulsar_surveys``), :mod:`.dynamics_db` (``pulsar_dynamics``:
the dynamical database built once and read by ``pulsar_surveys``); observed data: :mod:`.catalog`
(ATNF + MeerKAT TPA survey maps); commands: :mod:`.cli` (``popstore observed``,
``compare-ppdot``, ``dm-grid``).

The simulators are found through the ``popstore.simulators`` entry points (pyproject.toml).
"""
