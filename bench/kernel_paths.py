"""Fast path against reference, per registered kernel: the largest absolute difference of a memory
mosaic's outputs (d=64, 2 layers, 4 units, T=256, batch 4; v1 and v2), in float64 and float32, and of
generation by steps against the parallel forward.

    python -m bench.kernel_paths

The tests hold these to 1e-9 (float64) and 1e-4 (float32) on small shapes; this measures them at a
training-sized shape. Writes bench/results/kernel_paths.json.
"""

from __future__ import annotations

import torch

from bench.common import save
from sandbox.models import MosaicConfig
from sandbox.registry import list_kernels


def largest_differences(kernel: str, version: int, length: int = 256) -> dict:
    torch.manual_seed(0)
    fast = MosaicConfig(d=64, layers=2, units=4, kernel=kernel, version=version).build(vocab_size=65).eval()
    reference = MosaicConfig(d=64, layers=2, units=4, kernel=kernel, version=version, path="reference").build(vocab_size=65).eval()
    reference.load_state_dict(fast.state_dict())
    x = torch.randint(0, 65, (4, length), generator=torch.Generator().manual_seed(1))
    out = {}
    with torch.no_grad():
        for dtype in (torch.float64, torch.float32):
            a, b = fast.to(dtype), reference.to(dtype)
            name = str(dtype).removeprefix("torch.")
            out[f"fast_vs_reference_{name}"] = float((a(x) - b(x)).abs().max())
        fast.double()
        out["steps_vs_forward_float64"] = float((fast.step_outputs(x[:, :64]) - fast(x[:, :64])).abs().max())
    return out


def main(argv=None) -> dict:
    results = {f"{kernel} v{version}": largest_differences(kernel, version)
               for kernel in list_kernels() for version in (1, 2)}
    for name, row in results.items():
        print(f"{name:<22} " + "  ".join(f"{k} {v:.2e}" for k, v in row.items()))
    save("kernel_paths", {"shape": "d=64, layers=2, units=4, T=256, batch 4 (steps: T=64)", "kernels": results})
    return results


if __name__ == "__main__":
    main()
