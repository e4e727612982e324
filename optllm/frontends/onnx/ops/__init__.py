"""Imports every converter module so its ``@converter`` registrations run.

To add an op family: write ``optllm/frontends/onnx/ops_<family>.py`` and add its name here.
"""

from __future__ import annotations

import importlib

CONVERTER_MODULES = [
    "ops_elementwise",
    "ops_tensor",
    "ops_nn",
    # fallbacks for the conformance suite; they skip ops the modules above convert
    "ops_math",
    "ops_reduce",
    "ops_logic",
    "ops_misc",
    "ops_loss",
    "ops_pool",
    "ops_rnn",
    "ops_resize",
    "ops_quant",
]

for _name in CONVERTER_MODULES:
    importlib.import_module(f"optllm.frontends.onnx.{_name}")
