"""SimGCL (Yu et al., SIGIR 2022) and XSimGCL (Yu et al., TKDE 2023): LightGCN with contrastive learning between
noise-perturbed embeddings instead of graph augmentations.

A perturbed propagation adds ``eps * sign(x) * unit(uniform noise)`` to every layer's output ``x`` (a random
vector of length ``eps`` in the hyper-octant of ``x``). The final embedding averages the outputs of layers 1..L
(layer 0 skipped, as in both papers). Contrastive term: InfoNCE (L2-normalised, at ``temperature``) between two
views of the batch's unique users, plus the same for its unique positive items, each view's other rows as
negatives. SimGCL ranks with a clean propagation (BPR) and contrasts two perturbed ones (three propagations a
batch); XSimGCL runs one perturbed propagation, ranks with its final embedding and contrasts it with the output of
its layer ``contrast_layer``. Loss: BPR + ``cl_weight`` * contrastive + ``reg_weight`` * MMRec's ``EmbLoss`` of
the layer-0 embeddings (as our LightGCN). Scores use a clean propagation.
"""
from __future__ import annotations

import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn

from ..layers import CONVS
from ..losses import BPRLoss, InfoNCELoss, embedding_norm
from ._recommender import RECOMMENDERS, Recommender, check_option, user_item_adjacency


@RECOMMENDERS.register("simgcl")
class SimGCL(Recommender):
    def __init__(self, train: sp.csr_matrix, item_features=None, embedding_dim: int = 64, layers: int = 2,
                 eps: float = 0.1, cl_weight: float = 0.5, temperature: float = 0.2, reg_weight: float = 1e-4):
        super().__init__(train)
        check_option("embedding_dim", embedding_dim, 1)
        check_option("layers", layers, 1)
        check_option("eps", eps, 0)
        check_option("cl_weight", cl_weight, 0)
        check_option("temperature", temperature, 0, strict=True)
        check_option("reg_weight", reg_weight, 0)
        self.user_emb = nn.Parameter(nn.init.xavier_uniform_(torch.empty(self.num_users, embedding_dim)))
        self.item_emb = nn.Parameter(nn.init.xavier_uniform_(torch.empty(self.num_items, embedding_dim)))
        self.conv = CONVS.create("lightgcn", embedding_dim, normalize=False)
        self.register_buffer("adjacency", user_item_adjacency(train), persistent=False)
        self.layers, self.eps, self.cl_weight, self.reg_weight = layers, eps, cl_weight, reg_weight
        self.bpr = BPRLoss()
        self.infonce = InfoNCELoss(temperature, symmetric=False, in_batch=True)

    def layer_outputs(self, perturbed: bool) -> list[torch.Tensor]:
        """The layer-0 embeddings of all nodes (users then items), then each layer's output."""
        x = torch.cat([self.user_emb, self.item_emb])
        outputs = [x]
        for _ in range(self.layers):
            x = self.conv(x, self.adjacency)
            if perturbed:
                x = x + self.eps * torch.sign(x) * F.normalize(torch.rand_like(x), dim=1)
            outputs.append(x)
        return outputs

    @staticmethod
    def readout(outputs: list[torch.Tensor]) -> torch.Tensor:
        return torch.stack(outputs[1:]).mean(0)

    def views(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """All nodes' embeddings for the BPR term, and the two views the contrastive term compares."""
        return (self.readout(self.layer_outputs(False)), self.readout(self.layer_outputs(True)),
                self.readout(self.layer_outputs(True)))

    def forward(self) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.readout(self.layer_outputs(False))
        return x[: self.num_users], x[self.num_users:]

    def loss(self, users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
        ranked, view1, view2 = self.views()
        u, p, n = ranked[users], ranked[self.num_users + pos], ranked[self.num_users + neg]
        cl = sum(self.infonce(F.normalize(view1[idx], dim=1), F.normalize(view2[idx], dim=1))
                 for idx in (users.unique(), self.num_users + pos.unique()))
        reg = embedding_norm(self.user_emb[users], self.item_emb[pos], self.item_emb[neg])
        return self.bpr((u * p).sum(1), (u * n).sum(1)) + self.cl_weight * cl + self.reg_weight * reg


@RECOMMENDERS.register("xsimgcl")
class XSimGCL(SimGCL):
    def __init__(self, train: sp.csr_matrix, item_features=None, embedding_dim: int = 64, layers: int = 2,
                 eps: float = 0.2, cl_weight: float = 0.2, temperature: float = 0.15, reg_weight: float = 1e-4,
                 contrast_layer: int = 1):
        super().__init__(train, embedding_dim=embedding_dim, layers=layers, eps=eps, cl_weight=cl_weight,
                         temperature=temperature, reg_weight=reg_weight)
        if not 1 <= contrast_layer <= layers:
            raise ValueError(f"recommender.contrast_layer must be in 1..layers ({layers}), got {contrast_layer}")
        self.contrast_layer = contrast_layer

    def views(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        outputs = self.layer_outputs(True)
        final = self.readout(outputs)
        return final, final, outputs[self.contrast_layer]
