"""The bank-size arithmetic of maml_sweep.tools.bank_sizes, by hand."""
import math

import numpy as np

from maml_sweep.tools.bank_sizes import main, se_fraction, size_for


def test_standard_error_fraction_and_the_size_that_brings_it_below_the_target():
    x = np.random.default_rng(0).gamma(2.0, 0.5, size=400)
    sd, mean = np.std(x, ddof=1), np.mean(x)
    assert se_fraction(x) == sd / 20 / mean  # sqrt(400) = 20
    n = size_for(sd, mean, 0.02)
    assert sd / math.sqrt(n) <= 0.02 * mean < sd / math.sqrt(n - 1)
    assert size_for(sd, math.inf, 0.02) == math.inf and se_fraction(np.array([1.0, np.inf])) == math.inf


def test_bad_sizes_are_refused_in_one_line(capsys):
    assert main(["nowhere", "--tasks", "1"]) == 2
    assert capsys.readouterr().err.strip() == "bank_sizes: error: --tasks must be an integer in 2..50000, got 1"
