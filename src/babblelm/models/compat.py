"""The one place that absorbs differences between transformers releases.

babblelm's modeling code, and every exported folder that carries it, runs on every transformers
from the official BabyLM pipeline's pin (4.51.3, with huggingface-hub 0.31) to the newest 5.x.
Everything that differs between those releases is resolved here, once, by feature detection
(never by parsing version numbers); the architecture modules import these names and nothing
version-specific. Export copies this file next to the modeling code; it imports only torch and
transformers.

- `PreTrainedConfig`: the config base class (`PretrainedConfig` before 5.0).
- `init`: weight-initialisation functions. transformers 5 has its own (`transformers.initialization`),
  which skip tensors already loaded from a checkpoint; 4.x initialises only missing modules itself,
  so torch's in-place functions do.
- `CACHE_ARG`: the name under which a model's decoding cache travels between `generate` and
  `forward`, in and out: `cache` in recent releases, `past_key_values` before.
"""

from __future__ import annotations

from types import SimpleNamespace

import torch
from transformers.modeling_outputs import CausalLMOutputWithPast

try:
    from transformers import PreTrainedConfig
except ImportError:  # transformers < 5
    from transformers import PretrainedConfig as PreTrainedConfig

try:
    from transformers import initialization as init
except ImportError:  # transformers < 5

    def _copy_(tensor: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return tensor.copy_(source)

    init = SimpleNamespace(normal_=torch.nn.init.normal_, ones_=torch.nn.init.ones_, zeros_=torch.nn.init.zeros_,
                           constant_=torch.nn.init.constant_, copy_=_copy_)

CACHE_ARG = "cache" if "cache" in CausalLMOutputWithPast.__dataclass_fields__ else "past_key_values"


__all__ = ["CACHE_ARG", "PreTrainedConfig", "init"]
