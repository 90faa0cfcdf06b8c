"""The pulsar SBI pipeline files (Graber et al. 2024 NPE; Pardo-Araujo et al. 2025 TSNPE) pass `popstore check`."""

from __future__ import annotations

from pathlib import Path

from popstore.pipeline import Pipeline

PIPELINES = Path(__file__).parents[1] / "pipelines"


def load(name: str) -> Pipeline:
    return Pipeline.load(PIPELINES / name)


def free_labels(pipe: Pipeline) -> list[str]:
    fixed = pipe.section("priors").get("fixed", {})
    return [n for n in pipe.simulator().parameter_names if n not in fixed]


def test_graber2024_pipeline():
    pipe = load("pulsar_sbi_graber2024.toml")
    assert free_labels(pipe) == ["mu_logB", "sigma_logB", "mu_logP", "sigma_logP", "a_late"]
    sim = pipe.simulator()
    assert sim.pulsar.luminosity_model == "graber2024" and sim.pulsar.resolution_ppdot == 32
    assert sim.config["setting"] == "graber2024" and sim.pulsar.spectral_index == -1.6
    assert sim.parameter_names == ("mu_logB", "sigma_logB", "mu_logP", "sigma_logP", "a_late")  # nothing unused
    assert sim.targets == {"PMPS": 1009, "SMPS": 218, "HTRU_low_mid": 1023, "HTRU_high": 20}
    sbi = pipe.section("sbi")
    assert list(sbi["inputs"]) == ["ppdot_map"] and len(sbi["seeds"]) == 5
    assert [str(s) for s in sim.axes[0].values] == ["PMPS", "SMPS", "HTRU"]  # 3 channels of 32 x 32


def test_pardo2025_pipeline():
    pipe = load("pulsar_tsnpe_pardo2025.toml")
    assert len(free_labels(pipe)) == 7 and {"L_radio_log10_mean", "epsilon_L"} <= set(free_labels(pipe))
    sim = pipe.simulator()
    assert sim.pulsar.luminosity_model == "pardo2025" and sim.pulsar.resolution_ppdot == 32
    assert list(pipe.section("sbi")["inputs"]) == ["ppdot_map", "ppdot_map_fluxes"]  # 2 x 3 surveys = 6 maps
    obs = pipe.section("observed")
    assert obs["meerkat"].endswith("meerkat_tpa_census_posselt2023.csv") and not obs.get("flux_fallback_atnf")
    rounds = pipe.section("sbi")["rounds"]
    assert set(rounds) == {"n_rounds", "simulations_per_round", "truncation_quantile", "observed"}
    assert rounds["observed"] == obs["output"]  # TSNPE conditions on the [observed] store
