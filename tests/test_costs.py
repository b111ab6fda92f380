"""MACs and parameters per part (XLA cost analysis) of a variable-rate model with a latent gain."""

from swinjax.costs import PARTS, cost_report, format_report


def test_cost_report_counts_every_part_of_the_variable_rate_codec(tiny):
    config = tiny("swincoder")
    assert config.model.lmbda.gain  # the decode loop must pass lambda to the gained entropy model
    r = cost_report(config, 64, 64)
    macs = r["macs_per_part"]
    assert set(macs) == set(PARTS) and all(v > 0 for v in macs.values()), macs
    assert abs(r["kmacs_per_pixel"] - sum(macs.values()) / 64 / 64 / 1e3) < 1e-9
    # The decoder runs the masked block once per group, training and cost "once" only once.
    assert r["entropy_decode_macs"] > 2 * macs["entropy"]
    assert r["params"] == sum(r["params_per_part"].values())
    assert "latent_gain" in r["params_per_part"]
    assert "swincoder-tiny at 64x64" in format_report(r)
