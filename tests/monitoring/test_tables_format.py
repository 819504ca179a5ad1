"""H53 (mutation round three) pinned these; each test fails on a one-line mutation that the
suite let through. Gaps found in monitoring/tables.py."""

from lightning_viz.monitoring.tables import format_p


def test_format_p_keeps_plain_two_digits_down_to_1e_4():
    assert format_p(0.00052) == "0.00052"
    assert format_p(0.0001) == "0.0001"
    assert format_p(0.000012) == "1.2e-05"
