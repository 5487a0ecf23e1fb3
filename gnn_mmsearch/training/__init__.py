from .trainer import TrainConfig, Trainer

__all__ = ["TrainConfig", "Trainer"]
