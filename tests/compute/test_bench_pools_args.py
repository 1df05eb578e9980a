"""bench/pools.py's options: each driver's defaults, and bad values refused before any
database or guest is touched."""

from __future__ import annotations

import pytest

from bench.pools import parse_args


def test_the_test_driver_keeps_its_sizes_and_runs():
    args = parse_args([])
    assert (args.driver, args.sizes, args.repeat, args.reaction_repeat) == (
        "test",
        [1, 5, 10],
        3,
        3,
    )


def test_qemu_defaults_to_sizes_that_fit_a_two_core_machine():
    args = parse_args(["--driver", "qemu"])
    assert (args.sizes, args.repeat, args.reaction_repeat) == ([1, 2, 4], 2, 2)
    assert (args.metrics_seconds, args.target, args.tick) == (2.0, 5, 1.0)


def test_given_values_win_over_the_drivers_defaults():
    args = parse_args(
        ["--driver", "qemu", "--sizes", "1,10", "--repeat", "1", "--reaction-repeat", "0"]
    )
    assert (args.sizes, args.repeat, args.reaction_repeat) == ([1, 10], 1, 0)


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--driver", "kvm"], "invalid choice: 'kvm'"),
        (["--sizes", "1,two"], "--sizes: whole numbers"),
        (["--sizes", "0,2"], "--sizes: each size at least 1"),
        (["--repeat", "0"], "--repeat: at least 1"),
        (["--driver", "qemu", "--target", "0"], "--target: 1 to 100"),
        (["--metrics-seconds", "0"], "--metrics-seconds: above 0"),
    ],
)
def test_bad_values_are_refused_with_the_reason(capsys, argv, says):
    with pytest.raises(SystemExit) as exit_:
        parse_args(argv)
    assert exit_.value.code == 2
    assert says in capsys.readouterr().err
