"""GPT2Config: the single truth about a model's sizes; everything else derives from it."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from .errors import CheckpointError
from .safe_io import read_json

MAX_CONFIG_BYTES = 1_000_000  # a GPT-2 config.json is about 1 kB


@dataclass(frozen=True)
class GPT2Config:
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    n_positions: int = 1024
    vocab_size: int = 50257
    layer_norm_epsilon: float = 1e-5

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    def validate(self, where: str = "config.json") -> GPT2Config:
        for name in ("n_layer", "n_head", "n_embd", "n_positions", "vocab_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise CheckpointError(f"{where}: {name} must be a positive whole number, got {value!r}")
        if self.n_embd % self.n_head:
            raise CheckpointError(
                f"{where}: n_embd ({self.n_embd}) is not divisible by n_head ({self.n_head}); "
                "each head needs n_embd / n_head columns"
            )
        eps = self.layer_norm_epsilon
        if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not (0 < eps < 1):
            raise CheckpointError(
                f"{where}: layer_norm_epsilon must be between 0 and 1, got {self.layer_norm_epsilon!r}"
            )
        return self

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict, where: str = "config.json") -> GPT2Config:
        """Read a Hugging Face GPT-2 config (also accepts the n_ctx / hidden_size style aliases)."""
        aliases = {
            "n_layer": ("n_layer", "num_hidden_layers"),
            "n_head": ("n_head", "num_attention_heads"),
            "n_embd": ("n_embd", "hidden_size"),
            "n_positions": ("n_positions", "n_ctx", "max_position_embeddings"),
            "vocab_size": ("vocab_size",),
            "layer_norm_epsilon": ("layer_norm_epsilon",),
        }
        values = {}
        for field, keys in aliases.items():
            for key in keys:
                if key in raw:
                    values[field] = raw[key]
                    break
            else:
                if field != "layer_norm_epsilon":
                    raise CheckpointError(f"{where}: missing {field!r}; a GPT-2 config needs {', '.join(aliases)}")
        return cls(**values).validate(where)

    @classmethod
    def from_json(cls, path: Path) -> GPT2Config:
        """A config.json of at most MAX_CONFIG_BYTES, nested at most safe_io.MAX_JSON_DEPTH levels."""
        raw = read_json(Path(path), MAX_CONFIG_BYTES, "a model directory needs config.json", CheckpointError)
        if not isinstance(raw, dict):
            raise CheckpointError(f"{path}: expected a JSON object with the model's sizes")
        return cls.from_dict(raw, where=str(path))
