"""Shared test setup."""

import torch

# two xdist workers on two cores: one torch thread each (two threads each would
# oversubscribe the cores and run several times slower)
torch.set_num_threads(1)
