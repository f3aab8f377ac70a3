"""User side features in the input layer: a user's categorical features (e.g. MovieLens age bucket, gender,
occupation) embedded, one table per feature, and summed into one user vector.

    u = Σ_f U_f[c_f(user)]        c_f(user) ∈ {0, 1, …}: the user's code of feature f, 0 = unknown (a learned row)

The backbone (``model.user_features``) uses u in one of two ways, before its input LayerNorm and dropout:
    add:    x_t = e_{i_t}·√D + p_t + u     at every real (non-padding) position t
    token:  x_u = u  prepended as one extra position without a position embedding (positions count back from the
            newest item, and the token is no item of the history); every position may attend to it, under the
            causal mask too, and its output is dropped, so the backbone still returns (B, L, D)
u is not scaled by √D, like the position embeddings: a user vector on the items' scale, the same at every
position, would at initialisation outweigh the item signal (one 2-epoch smoke run of SASRec on ml-100k with `add`:
val NDCG@10 0.036 with u·√D, 0.067 with u; 0.075 without user features).

User codes travel as internal user indices (``names.USER_INDEX`` in every batch); this module holds the (n_users, F)
code matrix as a buffer and looks them up. Feature codes are dataset-specific: a warm start leaves it fresh.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from divrec.errors import UserError

USER_FEATURE_MODES = ("add", "token")


class UserFeatureError(UserError):
    """``model.user_features`` / ``model.user_feature_names`` that the dataset cannot serve."""


def select_features(
    codes: Mapping[str, Any], vocab: Mapping[str, Sequence[str]], wanted: Sequence[str] | None, mode: str
) -> list[str]:
    """The feature names to use (``wanted``, None = all the dataset has, in its order); a ``UserFeatureError``
    if the dataset has none or ``wanted`` names one it lacks."""
    available = [name for name in codes if name in vocab]
    if not available:
        raise UserFeatureError(
            f"model.user_features={mode} is set but the dataset has no user features; set model.user_features=null "
            "or choose a dataset with user features (e.g. data=ml-100k, or data.source.n_user_groups>0 for synthetic)"
        )
    if wanted is None:
        return available
    unknown = [name for name in wanted if name not in available]
    if unknown:
        raise UserFeatureError(
            f"model.user_feature_names: unknown user feature(s) {unknown}; this dataset has {available} "
            "(or set model.user_feature_names=null for all of them)"
        )
    return list(dict.fromkeys(wanted))


class UserFeatureEmbedding(nn.Module):
    """(B,) internal user indices → (B, D) summed feature embeddings u (see the module docstring).

    ``codes``: (n_users, F) int codes, column f for feature ``names[f]``; ``vocab_sizes[f]`` counts feature f's
    values including code 0 (unknown).
    """

    def __init__(self, codes: Tensor, vocab_sizes: Sequence[int], hidden_size: int, names: Sequence[str]) -> None:
        super().__init__()
        if codes.dim() != 2 or codes.shape[1] != len(vocab_sizes) or len(names) != len(vocab_sizes):
            raise ValueError(f"codes of shape {tuple(codes.shape)} for {len(vocab_sizes)} features {list(names)}")
        self.names = tuple(names)
        self.tables = nn.ModuleList(nn.Embedding(max(int(v), 1), hidden_size) for v in vocab_sizes)
        for table in self.tables:
            nn.init.normal_(table.weight, std=0.02)
        self.register_buffer("codes", codes.long().clone(), persistent=False)  # (n_users, F), dataset-specific

    @classmethod
    def from_data(
        cls, codes: Mapping[str, Any], vocab: Mapping[str, Sequence[str]], names: Sequence[str], hidden_size: int
    ) -> UserFeatureEmbedding:
        """From ``ProcessedData.user_features`` (name → (n_users,) codes) and ``user_feature_vocab``."""
        matrix = torch.stack([torch.as_tensor(codes[name]).long() for name in names], dim=1)  # (n_users, F)
        return cls(matrix, [len(vocab[name]) for name in names], hidden_size, names)

    def forward(self, users: Tensor) -> Tensor:
        codes = self.codes[users]  # (B, F)
        out = self.tables[0](codes[:, 0])  # (B, D)
        for f in range(1, len(self.tables)):
            out = out + self.tables[f](codes[:, f])
        return out  # (B, D)
