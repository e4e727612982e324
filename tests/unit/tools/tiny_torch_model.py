"""A tiny PyTorch model for ``opt-llm import tiny_torch_model:build`` in the CLI tests."""

from __future__ import annotations

from typing import Any


def build() -> tuple[Any, Any]:
    import torch

    class Tiny(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.emb = torch.nn.Embedding(11, 8)
            self.proj = torch.nn.Linear(8, 8)

        def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
            h = self.emb(input_ids)
            return torch.nn.functional.gelu(self.proj(h)) + h

    torch.manual_seed(0)
    return Tiny().eval(), {"input_ids": torch.randint(0, 11, (2, 5))}
