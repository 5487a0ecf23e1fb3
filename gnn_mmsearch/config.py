"""Structured configs: the schema of each job's config, checked before anything is loaded.

``validate(cfg)`` merges the composed Hydra config onto the job's dataclass schema (a wrong key or type fails),
instantiates it (the dataclasses' own value checks run) and asks each registry whether the chosen component
takes the given options. Every failure is one :class:`ConfigError` line naming the key.
"""
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from .device import PRECISIONS, resolve_device
from .retrievers.expansion import ExpansionConfig
from .training.relevance import RelevanceTrainConfig
from .training.topn import TopNTrainConfig
from .training.trainer import TrainConfig, check_fan_out

LOGGERS = ("wandb", "none")
PERSONALIZE = ("mean", "recency", "attention")


class ConfigError(ValueError):
    """A config value the job cannot run with (the message is one line)."""


@dataclass
class SplitConfig:
    target_edge_type: str = "also_buy"  # held-out links of this type are evaluated
    graph_edge_types: List[str] = field(default_factory=lambda: ["also_buy", "bought_together"])
    val_ratio: float = 0.1
    test_ratio: float = 0.1
    query_holdout_ratio: float = 0.1  # products whose title queries are held out of alignment training

    def __post_init__(self):
        for name in ("val_ratio", "test_ratio", "query_holdout_ratio"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"split.{name} must be in [0, 1), got {getattr(self, name)}")
        if self.val_ratio + self.test_ratio >= 1:
            raise ValueError("split.val_ratio + split.test_ratio must be below 1")


@dataclass
class GNNConfig:
    layers: int = 2  # 0 = content only
    conv: str = "lightgcn"  # a name in layers.CONVS
    conv_kwargs: Dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if self.layers < 0:
            raise ValueError(f"model.gnn.layers must be >= 0, got {self.layers}")


@dataclass
class EncoderModelConfig:
    hidden_dim: int = 256
    out_dim: int = 128
    modalities: List[str] = field(default_factory=lambda: ["image", "text"])
    fusion: str = "attention"  # a name in layers.FUSIONS
    fusion_kwargs: Dict[str, Any] = field(default_factory=dict)
    dropout: float = 0.1
    gnn: GNNConfig = field(default_factory=GNNConfig)

    def __post_init__(self):
        for name in ("hidden_dim", "out_dim"):
            if getattr(self, name) < 1:
                raise ValueError(f"model.{name} must be >= 1, got {getattr(self, name)}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"model.dropout must be in [0, 1), got {self.dropout}")
        if not self.modalities or set(self.modalities) - {"image", "text"}:
            raise ValueError(f"model.modalities must be a non-empty subset of [image, text], got {self.modalities}")


@dataclass
class RelevanceHeadConfig:
    """The relevance head serving text and image queries (``models/relevance.py``) and its hybrid with BM25."""

    enabled: bool = True  # false: text and image queries search the graph space too
    hidden_dim: int = 512
    out_dim: int = 256
    dropout: float = 0.1
    depth: int = 100  # candidates the head retrieves and BM25 re-scores
    # the fusion weights of text queries' BM25 and image queries' raw image cosine, each chosen on validation queries
    # from its grid (``[0.0]``: off)
    bm25_weights: List[float] = field(default_factory=lambda: [0.25, 0.5, 1.0, 2.0, 4.0])
    image_weights: List[float] = field(default_factory=lambda: [0.5, 1.0, 2.0, 4.0, 8.0])
    category_weights: List[float] = field(default_factory=lambda: [0.0, 0.5, 1.0, 2.0, 4.0, 8.0])  # query classifier
    title_weights: List[float] = field(default_factory=lambda: [0.0, 1.0, 2.0, 4.0])  # BM25's title boost
    expansion_weights: List[float] = field(default_factory=lambda: [0.0, 0.25, 0.5, 1.0])  # BM25's image words
    match_weights: List[float] = field(default_factory=lambda: [0.0, 0.25, 0.5, 1.0, 2.0])  # term match
    title_tolerance: float = 0.005  # validation title recall@10 may trail the best baseline's by this much
    expansion: ExpansionConfig = field(default_factory=ExpansionConfig)  # image words added to BM25's documents
    train: RelevanceTrainConfig = field(default_factory=RelevanceTrainConfig)

    def __post_init__(self):
        for name in ("hidden_dim", "out_dim", "depth"):
            if getattr(self, name) < 1:
                raise ValueError(f"relevance.{name} must be >= 1, got {getattr(self, name)}")
        if self.title_tolerance < 0:
            raise ValueError(f"relevance.title_tolerance must be >= 0, got {self.title_tolerance}")
        for name in ("bm25_weights", "image_weights", "category_weights", "title_weights", "expansion_weights",
                     "match_weights"):
            values = list(getattr(self, name))
            if not values or min(values) < 0:
                raise ValueError(f"relevance.{name} must be a non-empty list of weights >= 0, got {values}")


@dataclass
class CopurchaseConfig:
    """Product queries: graph similarity + common neighbours + popularity (``retrievers/copurchase.py``), the two
    weights chosen on the validation links from these grids (``[0.0]``: the signal is off)."""

    depth: int = 100  # graph-index candidates re-scored, and as many of the most popular products
    adjacency_weights: List[float] = field(default_factory=lambda: [0.0, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0])
    popularity_weights: List[float] = field(default_factory=lambda: [0.0, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4])

    def __post_init__(self):
        if self.depth < 1:
            raise ValueError(f"copurchase.depth must be >= 1, got {self.depth}")
        for name in ("adjacency_weights", "popularity_weights"):
            values = list(getattr(self, name))
            if not values or min(values) < 0:
                raise ValueError(f"copurchase.{name} must be a non-empty list of weights >= 0, got {values}")


@dataclass
class ImageExtractorConfig:
    model_name: str = "tf_efficientnet_lite0"  # any timm model name (hub weights) ...
    checkpoint: Optional[str] = None  # ... or a local checkpoint path
    batch_size: int = 32


@dataclass
class TextExtractorConfig:
    model_name: str = "all-MiniLM-L6-v2"  # any sentence-transformers name or local path
    batch_size: int = 64


@dataclass
class ExtractorConfig:
    image: ImageExtractorConfig = field(default_factory=ImageExtractorConfig)
    text: TextExtractorConfig = field(default_factory=TextExtractorConfig)
    device: str = "auto"  # auto | cpu | cuda | cuda:N (default: the job's device)
    precision: str = "fp32"  # fp32 | fp16 | bf16: autocast of the extractors' forward passes

    def __post_init__(self):  # the device is checked after the job's own (``_check_search``)
        if self.precision not in PRECISIONS:
            raise ValueError(f"encoder.precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")


@dataclass
class RankingConfig:
    candidates: int = 100  # how many the index retrieves for the score / personalize / diversify stages
    mmr_lambda: Optional[float] = None  # diversify stage: MMR on the min-max normalised final score (1 = off)
    ranker: Optional[str] = None  # score stage: a name in ranking.RANKERS (rules | lambdamart | ranksvm)
    ranker_kwargs: Dict[str, Any] = field(default_factory=dict)
    personalize: Optional[str] = None  # mean | recency | attention: blend in the user's affinity
    personal_weight: float = 0.5
    test_users: float = 0.3  # share of users whose queries measure the stage (user_query*/ metrics)

    def __post_init__(self):
        if self.candidates < 1:
            raise ValueError(f"ranking.candidates must be >= 1, got {self.candidates}")
        if self.mmr_lambda is not None and not 0 <= self.mmr_lambda <= 1:
            raise ValueError(f"ranking.mmr_lambda must be in [0, 1], got {self.mmr_lambda}")
        if self.personalize is not None and self.personalize not in PERSONALIZE:
            raise ValueError(f"ranking.personalize must be one of {', '.join(PERSONALIZE)}, got {self.personalize!r}")
        if not 0 < self.test_users < 1:
            raise ValueError(f"ranking.test_users must be in (0, 1), got {self.test_users}")


@dataclass
class SearchEvalConfig:
    ks: List[int] = field(default_factory=lambda: [10, 20, 50])
    crossmodal_ks: List[int] = field(default_factory=lambda: [1, 5, 10])
    examples: Optional[List[str]] = None  # queries printed at the end of a run (None: 3 of the catalog's text queries)
    baselines: Dict[str, Any] = field(default_factory=dict)  # name -> {name: <retriever>, **options}
    max_queries: Optional[int] = None  # large catalogs: at most this many query products per evaluation (seeded)

    def __post_init__(self):
        if not self.ks or min(self.ks + self.crossmodal_ks) < 1:
            raise ValueError(f"eval.ks must be positive, got {self.ks}")
        if self.max_queries is not None and self.max_queries < 1:
            raise ValueError(f"eval.max_queries must be at least 1 (or null: every query), got {self.max_queries}")


@dataclass
class TopNEvalConfig:
    ks: List[int] = field(default_factory=lambda: [5, 10, 20, 50])

    def __post_init__(self):
        if not self.ks or min(self.ks) < 1:
            raise ValueError(f"eval.ks must be positive, got {self.ks}")


@dataclass
class LoggerConfig:
    name: str = "none"  # wandb | none
    mode: str = "offline"
    project: str = "gnn-mmsearch"
    entity: Optional[str] = None
    group: Optional[str] = None
    tags: List[str] = field(default_factory=list)

    def __post_init__(self):
        if self.name not in LOGGERS:
            raise ValueError(f"logger.name must be one of {', '.join(LOGGERS)}, got {self.name!r}")


@dataclass
class _JobConfig:
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N: where training, evaluation and feature extraction run
    imports: List[str] = field(default_factory=list)  # modules imported first: they register extra components
    optimized_metric: Optional[str] = None  # what a sweeper optimises (hparams_search)
    logger: LoggerConfig = field(default_factory=LoggerConfig)

    def __post_init__(self):
        resolve_device(self.device)


@dataclass
class SearchJobConfig(_JobConfig):
    task_name: str = "search"
    cache_dir: str = "~/.cache/gnn_mmsearch"
    data: Dict[str, Any] = field(default_factory=lambda: {"source": "synthetic"})  # a catalog source + options
    split: SplitConfig = field(default_factory=SplitConfig)
    encoder: ExtractorConfig = field(default_factory=ExtractorConfig)
    model: EncoderModelConfig = field(default_factory=EncoderModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    relevance: RelevanceHeadConfig = field(default_factory=RelevanceHeadConfig)
    copurchase: CopurchaseConfig = field(default_factory=CopurchaseConfig)
    index: Dict[str, Any] = field(default_factory=lambda: {"kind": "hnsw"})  # a kind in index.INDEXES + options
    ranking: RankingConfig = field(default_factory=RankingConfig)
    eval: SearchEvalConfig = field(default_factory=SearchEvalConfig)


@dataclass
class RecommendJobConfig(_JobConfig):
    task_name: str = "recommend"
    cache_dir: str = "~/.cache/gnn_mmsearch"  # where data=mmrec_synthetic is made
    data: Dict[str, Any] = field(default_factory=lambda: {"source": "mmrec"})  # an interaction source + options
    recommender: Dict[str, Any] = field(default_factory=lambda: {"name": "lightgcn"})  # a name + options
    train: TopNTrainConfig = field(default_factory=TopNTrainConfig)
    eval: TopNEvalConfig = field(default_factory=TopNEvalConfig)


SCHEMAS = {"search": SearchJobConfig, "recommend": RecommendJobConfig}


def validate(cfg: DictConfig) -> DictConfig:
    """The job config ``cfg`` checked against its schema, with every default filled in, as a plain ``DictConfig``;
    raises :class:`ConfigError` (one line) on the first problem. Modules in ``cfg.imports`` must be imported first."""
    task = cfg.get("task_name")
    if task not in SCHEMAS:
        raise ConfigError(f"task_name must be one of {', '.join(SCHEMAS)}, got {task!r} (choose task=search|recommend)")
    from .data import INTERACTION_SOURCES
    source = (cfg.get("data") or {}).get("source")
    if task == "search" and source in INTERACTION_SOURCES:
        raise ConfigError("this data is user-item interactions for the top-N job: add task=recommend "
                          "(e.g. gnn-mmsearch run task=recommend data=mmrec_baby)")
    if task == "recommend" and source not in INTERACTION_SOURCES:
        raise ConfigError(f"data.source={source!r} is a product catalog for the search job: the recommend task "
                          "reads MMRec interactions (data=mmrec_baby | mmrec_sports | mmrec_synthetic | data.path=...)")
    try:
        merged = OmegaConf.merge(OmegaConf.structured(SCHEMAS[task]), cfg)
        OmegaConf.to_object(merged)  # runs the dataclasses' value checks
        plain = OmegaConf.create(OmegaConf.to_container(merged, resolve=True))
    except OmegaConfBaseException as err:
        raise ConfigError(_one_line(err)) from None
    except (ValueError, TypeError) as err:
        raise ConfigError(str(err)) from None
    try:
        (_check_search if task == "search" else _check_recommend)(plain)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    return plain


def _check_search(cfg: DictConfig) -> None:
    from .data import CATALOG_SOURCES
    from .layers import CONVS, FUSIONS
    from .ranking import RANKERS
    from .retrievers import RETRIEVERS

    resolve_device(cfg.encoder.device, "encoder.device")
    data = dict(cfg.data)
    if "source" not in data:
        raise ValueError("data.source is missing (synthetic | directory | amazon | a registered source)")
    _prefixed("data", lambda: CATALOG_SOURCES.create(data.pop("source"), **data))  # runs the source's own checks
    index = dict(cfg.index)
    dims = {"model.out_dim": cfg.model.out_dim, **({"relevance.out_dim": cfg.relevance.out_dim}
                                                   if cfg.relevance.enabled else {})}
    _prefixed("index", lambda: _check_index(index.pop("kind", None), index, dims))
    _prefixed("model", lambda: FUSIONS.check_kwargs(cfg.model.fusion, cfg.model.fusion_kwargs))
    _prefixed("model.gnn", lambda: CONVS.check_kwargs(cfg.model.gnn.conv, cfg.model.gnn.conv_kwargs))
    check_fan_out(TrainConfig(**cfg.train), cfg.model.gnn.layers)
    if cfg.ranking.ranker is not None:
        _prefixed("ranking", lambda: RANKERS.check_kwargs(cfg.ranking.ranker, cfg.ranking.ranker_kwargs))
    for name, spec in cfg.eval.baselines.items():
        options = dict(spec)
        _prefixed(f"eval.baselines.{name}", lambda: RETRIEVERS.create(options.pop("name", None), **options))


def _check_index(kind: str | None, options: dict, dims: dict[str, int]) -> None:
    """Build an empty index of each vector size it will serve, which runs the index's own value checks (a message
    naming ``dim=N`` names the config key instead)."""
    from .index import INDEXES

    for name, dim in dims.items():
        try:
            INDEXES.create(kind, dim=dim, **options)
        except ValueError as err:
            raise ValueError(str(err).replace(f"dim={dim}", f"{name}={dim}")) from None


def _check_recommend(cfg: DictConfig) -> None:
    """The data source's and the recommender's own value checks: the recommender is built on a one-user, one-item
    matrix with one-row features (so models that need features build too)."""
    import numpy as np
    import scipy.sparse as sp

    from .data import interaction_source
    from .models import create_recommender

    _prefixed("data", lambda: interaction_source(cfg.data))
    options = dict(cfg.recommender)
    features = {m: np.ones((1, 4), np.float32) for m in ("image", "text")}
    _prefixed("recommender", lambda: create_recommender(options.pop("name", None), sp.csr_matrix(np.ones((1, 1))),
                                                        features, **options))


def _prefixed(key: str, check) -> None:
    """Run ``check``; its ``ValueError`` / ``TypeError`` comes back as a ``ValueError`` that names ``key``."""
    try:
        check()
    except (ValueError, TypeError) as err:
        message = str(err)
        raise ValueError(message if message.startswith(f"{key}.") else f"{key}: {message}") from None


def _one_line(err: OmegaConfBaseException) -> str:
    """OmegaConf's multi-line error as ``<full key>: <first line>``."""
    message = str(err).splitlines()[0] if str(err) else type(err).__name__
    key = getattr(err, "full_key", None)
    return f"{key}: {message}" if key else message
