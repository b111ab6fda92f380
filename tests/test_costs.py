"""MACs and parameters per part (XLA cost analysis) of a variable-rate model with a latent gain."""

from swinjax.costs import PARTS, cost_report, format_report


def test_cost_report_counts_every_part_of_the_variable_rate_codec(tiny):
    config = tiny("swincoder")
    assert config.model.lmbda.gain  # the decode loop must pass lambda to the gained entropy model
    r = cost_report(config, 64, 64)
    macs = r["macs_per_part"]
    assert set(macs) == set(PARTS) and all(v > 0 for v in macs.values()), macs
    assert abs(r["kmacs_per_pixel"] - sum(macs.values()) / 64 / 64 / 1e3) < 1e-9
    # The decoder computes each group's queries once and each decoded group's keys and values
    # once: about one masked pass in all (four full passes before), never more than one.
    assert 0.5 * macs["entropy"] < r["entropy_decode_macs"] <= 1.05 * macs["entropy"]
    assert r["params"] == sum(r["params_per_part"].values())
    assert "latent_gain" in r["params_per_part"]
    assert "swincoder-tiny at 64x64" in format_report(r)
