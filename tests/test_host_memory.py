"""Freed host memory is kept for reuse: a repeated CPU forward pass stops page-faulting."""

import subprocess
import sys

import pytest

from fusion_lib.data.host_memory import keep_freed_memory

# Page faults per forward pass of a random-weight EfficientNet-Lite0 (batch 16, 64 px, channels_last),
# in a fresh process (the C library's state is per process), after two warm-up passes: the heap may still
# grow on the second pass (measured here: 0-1,536 faults, varying run to run), and is steady from the third.
_FAULTS = """
import resource, sys, timm, torch
from fusion_lib.data.host_memory import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory()
torch.manual_seed(0)
model = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=0).eval()
model = model.to(memory_format=torch.channels_last)
x = torch.randn(16, 3, 64, 64).contiguous(memory_format=torch.channels_last)
with torch.inference_mode():
    model(x)
    model(x)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(3):
        model(x)
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) // 3)
"""


def _faults(mode: str) -> int:
    out = subprocess.run(
        [sys.executable, "-c", _FAULTS, mode], capture_output=True, text=True, check=True, timeout=300
    )
    return int(out.stdout.split()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="page-fault counts and mallopt: Linux glibc")
def test_kept_memory_stops_the_page_faults_of_repeated_forward_passes():
    if not keep_freed_memory():
        pytest.skip("the C library is not glibc")
    default, kept = _faults("default"), _faults("keep")
    assert default > 1000, (
        f"the default allocator no longer faults here ({default}); the test needs a new workload"
    )
    assert kept * 20 < default, (default, kept)
