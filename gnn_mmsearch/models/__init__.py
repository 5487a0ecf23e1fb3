from .encoder import EncoderConfig, MultimodalGraphEncoder

__all__ = ["EncoderConfig", "MultimodalGraphEncoder"]
