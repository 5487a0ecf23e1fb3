"""``save_pretrained`` / ``from_pretrained`` for the framework's modules: ``config.json`` (the dataclass config)
plus ``model.safetensors``, as sentence-transformers and Hugging Face models are saved."""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from safetensors.torch import load_file, save_file

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


class Pretrained:
    """Mixin for an ``nn.Module`` built as ``cls(config_class(**config))`` and holding it as ``self.config``."""

    config_class: type

    def save_pretrained(self, directory: str | Path) -> Path:
        """Write ``config.json`` and ``model.safetensors`` to ``directory``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / CONFIG_NAME).write_text(json.dumps(asdict(self.config), indent=2))
        save_file({k: v.contiguous() for k, v in self.state_dict().items()}, str(directory / WEIGHTS_NAME))
        return directory

    @classmethod
    def from_pretrained(cls, directory: str | Path, map_location: str = "cpu"):
        directory = Path(directory)
        if not (directory / CONFIG_NAME).exists():
            raise FileNotFoundError(f"no {CONFIG_NAME} in {directory}: not a saved {cls.__name__}")
        model = cls(cls.config_class(**json.loads((directory / CONFIG_NAME).read_text())))
        model.load_state_dict(load_file(str(directory / WEIGHTS_NAME), device=map_location))
        return model.eval()
