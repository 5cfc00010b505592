"""Importing or calling the library leaves the process as it found it."""

import subprocess
import sys

import numpy as np


def test_plotting_keeps_the_users_matplotlib_backend(tmp_path):
    # a fresh interpreter: pytest's own process may already have chosen a backend
    code = ("import matplotlib, sys; matplotlib.use('svg'); from bertkit import plots\n"
            "plots.heatmap([[0.1, 0.9], [0.5, 0.2]], ['a', 'b'], ['a', 'b'], sys.argv[1])\n"
            "plots.learning_curves([1, 2], {'train': [1.0, 0.5]}, sys.argv[2])\n"
            "print(matplotlib.get_backend(), 'matplotlib.pyplot' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "h.png"), str(tmp_path / "c.png")],
                         capture_output=True, text=True, check=True).stdout.split()
    assert out == ["svg", "False"]
    assert (tmp_path / "h.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_importing_the_cli_sets_no_environment():
    code = ("import os; before = dict(os.environ); import bertkit.cli\n"
            "print(sorted(set(os.environ.items()) ^ set(before.items())))")
    env = {k: v for k, v in __import__("os").environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env=env).stdout
    assert out.strip() == "[]"


def test_encode_restores_torch_threads(tiny_model_dir):
    import torch

    from bertkit import Encoder

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        enc = Encoder(tiny_model_dir, device="cpu", workers=2)
        enc.encode(["a cat", "the dog ran", "sun"] * 4, batch_size=2)
        assert torch.get_num_threads() == 2  # the workers ran on 1 each; restored after
        enc = Encoder(tiny_model_dir, device="cpu", workers=1)
        enc.encode(["a cat"] * 3, batch_size=1)
        assert torch.get_num_threads() == 2
        assert isinstance(enc.encode(["a cat"]), np.ndarray)
    finally:
        torch.set_num_threads(before)
