"""ials: implicit alternating least squares (Hu, Koren & Volinsky, ICDM 2008), with the tuning
knobs that Rendle et al. found to matter ("Revisiting the performance of iALS on item
recommendation benchmarks", RecSys 2022): a weight for the unobserved entries, a regularisation
scaled by each row's weight, and the scale of the initial factors.

The objective, over users u and items i with factors x_u and y_i:

    Σ_(u,i) observed c_ui (1 - x_u·y_i)²  +  w0 Σ_(u,i) unobserved (x_u·y_i)²
        +  Σ_u λ_u |x_u|²  +  Σ_i λ_i |y_i|²

where c_ui = 1 + alpha · weight (the summed weight of the user's interactions with the item),
w0 the `unobserved` weight, and a row's L2 λ_r = λ · (its total weight)^e: the sum of its
entries' c plus w0 for each of the other side's rows it has no interaction with (Rendle et
al.'s |I_u| + w0 |I| with their observed weight), e the `frequency_scaling` (0: Hu et al.'s
plain λ; 1: Rendle et al.'s). Training alternates the two closed forms, users given items and
items given users, each by Hu et al.'s identity (content-mf's `solve_rows`: a row costs its own
entries, rows of similar length are solved together), from item factors drawn with standard
deviation `init_scale` / √factors.

Each half-step is solved exactly (a k x k system per row: O(entries·k² + k³)) or, by default,
approximately by `cg_steps` steps of conjugate gradient started from the previous sweep's
factors (Takács, Pilászy & Tikk, RecSys 2011; what the `implicit` package does): O(entries·k +
k²) a step, and as accurate after a few sweeps, since each sweep starts near the last one's
answer.

- Users are folded in at each request from their history (the ALS user step against the item
  factors), so a new interaction counts at once and a new user needs no retraining.
- Items to item: the cosine of the item factors. An item without interactions has a zero factor
  and scores 0 (no evidence); items added after training are scored from the next training on.
- Saved as one array, the item factors.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from plugins.algorithm import Algorithm, Parameter, UserHistory
from plugins.builtin.content_mf import history_rows, padded_rows, positive, solve_rows
from plugins.embedders import normalise
from plugins.hookspecs import hookimpl
from plugins.training import TrainingData

Array = np.ndarray[Any, Any]


class IALS(Algorithm):
    """Implicit ALS, users folded in from their history at request time."""

    name = "ials"
    description = (
        "implicit alternating least squares (Hu et al. 2008) with Rendle et al.'s unobserved "
        "weight and frequency-scaled regularisation; users folded in from their history"
    )
    parameters = (
        Parameter("factors", int, 64, "dimensions of the user and item factors", 1, 4096),
        Parameter("epochs", int, 10, "alternating least-squares sweeps", 1, 500),
        Parameter("alpha", float, 2.0, "confidence of an interaction: 1 + alpha x its weight", 0.0),
        Parameter(
            "regularisation",
            float,
            0.02,
            "L2 of the factors (λ), times each row's total weight ^ frequency_scaling",
            0.0,
        ),
        Parameter(
            "unobserved",
            float,
            1.0,
            "weight of a user-item pair without interactions (w0; Hu et al.: 1)",
            1e-6,
        ),
        Parameter(
            "frequency_scaling",
            float,
            1.0,
            "exponent e of a row's total weight in its L2 (0: plain λ, as Hu et al.)",
            0.0,
            2.0,
        ),
        Parameter(
            "init_scale", float, 0.1, "standard deviation x √factors of the initial factors", 0.0
        ),
        Parameter(
            "solver",
            str,
            "cg",
            "how each half-step is solved in training: cg (conjugate gradient from the last "
            "sweep's factors) or exact (a k x k solve per row)",
            choices=("cg", "exact"),
        ),
        Parameter("cg_steps", int, 3, "conjugate-gradient steps per half-step", 1, 100),
        Parameter("seed", int, 0, "seed of the initial item factors"),
    )

    def __init__(self, **settings: Any) -> None:
        super().__init__(**settings)
        self.item_factors = np.zeros((0, int(self.settings["factors"])), dtype=np.float32)
        self.record_loss = False
        """Whether a fit computes the objective after each epoch (a tenth of its time)."""
        self.training_loss: list[float] = []
        """The objective after each epoch of the last fit, where `record_loss` (not saved)."""
        self._gram: Array | None = None

    # -- fitting --------------------------------------------------------------------------------

    def fit(self, data: TrainingData) -> None:
        # One BLAS thread, as content-mf: many small k x k products, which a threaded BLAS
        # slows down on a few shared cores. The trainer fits in its own process.
        with threadpool_limits(limits=1, user_api="blas"):
            self._fit(data)

    def _fit(self, data: TrainingData) -> None:
        s = self.settings
        self.n_items = data.n_items
        k = int(s["factors"])
        by_user = positive(data.matrix)
        by_item = by_user.T.tocsr()
        users_l2 = self.row_l2(by_user, data.n_items)
        items_l2 = self.row_l2(by_item, data.n_users)
        rng = np.random.default_rng(int(s["seed"]))
        items = rng.standard_normal((data.n_items, k)) * (float(s["init_scale"]) / np.sqrt(k))
        users = np.zeros((data.n_users, k))
        self.training_loss = []
        for _ in range(int(s["epochs"])):
            users = self._sweep(by_user, items, users_l2, users)
            items = self._sweep(by_item, users, items_l2, items)
            if self.record_loss:
                loss = self.objective(by_user, users, items, users_l2, items_l2)
                self.training_loss.append(loss)
        self.item_factors = items.astype(np.float32)
        self._gram = None

    def _sweep(self, rows: sp.csr_matrix, other: Array, l2: Array, current: Array) -> Array:
        """A training half-step for `rows` (their `current` factors) against the other side's
        factors, by the configured solver."""
        if self.settings["solver"] == "exact":
            return self._solve(rows, other, l2)
        return conjugate_gradient_rows(
            rows,
            other,
            float(self.settings["alpha"]),
            current,
            l2,
            unobserved=float(self.settings["unobserved"]),
            steps=int(self.settings["cg_steps"]),
        )

    def _solve(
        self, rows: sp.csr_matrix, other: Array, l2: Array, gram: Array | None = None
    ) -> Array:
        """The exact ALS half-step for `rows` against the other side's factors."""
        return solve_rows(
            rows,
            other,
            float(self.settings["alpha"]),
            float(self.settings["regularisation"]),
            gram=gram,
            unobserved=float(self.settings["unobserved"]),
            row_l2=l2,
        )

    def row_l2(self, rows: sp.csr_matrix, n_other: int) -> Array:
        """Each row's L2 weight: λ · (Σ_j c_rj + w0 · (n_other - its entries))^e."""
        s = self.settings
        alpha, unobserved = float(s["alpha"]), float(s["unobserved"])
        entries = np.diff(rows.indptr).astype(np.float64)
        summed = np.asarray(rows.sum(axis=1), dtype=np.float64).ravel()
        total = entries + alpha * summed + unobserved * (n_other - entries)
        scaled: Array = float(s["regularisation"]) * total ** float(s["frequency_scaling"])
        return scaled

    def objective(
        self, by_user: sp.csr_matrix, users: Array, items: Array, users_l2: Array, items_l2: Array
    ) -> float:
        """The training objective: w0 Σ_all ŷ² + Σ_observed (c (1 - ŷ)² - w0 ŷ²) + the L2s."""
        s = self.settings
        alpha, unobserved = float(s["alpha"]), float(s["unobserved"])
        every = float(np.sum((users.T @ users) * (items.T @ items)))
        rows = np.repeat(np.arange(by_user.shape[0]), np.diff(by_user.indptr))
        predicted = np.einsum("ij,ij->i", users[rows], items[by_user.indices])
        confidence = 1.0 + alpha * by_user.data
        observed = float(np.sum(confidence * (1.0 - predicted) ** 2 - unobserved * predicted**2))
        l2 = float(users_l2 @ np.sum(users**2, axis=1) + items_l2 @ np.sum(items**2, axis=1))
        return unobserved * every + observed + l2

    # -- scoring --------------------------------------------------------------------------------

    def user_factors(self, histories: Sequence[UserHistory]) -> Array:
        """Each history folded in against the item factors (the ALS user step): float64,
        (len(histories), factors); zeros for a history without known items."""
        if self._gram is None:
            factors = self.item_factors.astype(np.float64)
            self._gram = factors.T @ factors
        rows = history_rows(histories, self.n_items)
        # float32 factors are gathered as they are: the products upcast to float64.
        return self._solve(rows, self.item_factors, self.row_l2(rows, self.n_items), self._gram)

    def user_scores(self, histories: Sequence[UserHistory]) -> Array:
        """u·v for every item, u folded in from each history."""
        users = self.user_factors(histories).astype(np.float32)
        return np.asarray(users @ self.item_factors.T, dtype=np.float32)

    def item_scores(self, items: Sequence[int]) -> Array:
        """The cosine of every item's factor to the context item's (zeros for an unknown item,
        or one without interactions)."""
        unit = normalise(self.item_factors)
        scores = np.zeros((len(items), self.n_items), dtype=np.float32)
        known = [row for row, item in enumerate(items) if 0 <= item < self.n_items]
        if known:
            scores[known] = unit[[int(items[row]) for row in known]] @ unit.T
        return scores

    # -- persistence ----------------------------------------------------------------------------

    def state(self) -> dict[str, Array]:
        return {"item_factors": self.item_factors}

    def restore(self, arrays: Mapping[str, Array]) -> None:
        self.item_factors = np.asarray(arrays["item_factors"], dtype=np.float32)
        self._gram = None


def conjugate_gradient_rows(
    rows: sp.csr_matrix,
    other: Array,
    alpha: float,
    initial: Array,
    row_l2: Array,
    *,
    unobserved: float = 1.0,
    steps: int = 3,
) -> Array:
    """The ALS half-step of `solve_rows` (with `row_l2`), each row's system
    (w0 YᵀY + Yᵀ(C_r - w0 I)Y + λ_r I) x = YᵀC_r p_r solved approximately: `steps` steps of
    conjugate gradient from the row's `initial` factor. The matrix is never formed: a step
    multiplies by YᵀY once and by the row's own entries' factors twice."""
    base = unobserved * (other.T @ other)
    out = np.array(initial, dtype=np.float64)
    l2 = np.maximum(np.asarray(row_l2, dtype=np.float64), 1e-6)
    for chunk, factors, confidence, beyond in padded_rows(rows, other, alpha, unobserved):
        shrink = l2[chunk][:, None]
        times_matrix = functools.partial(_row_systems, base, shrink, factors, beyond)
        x = out[chunk]
        residual = np.matmul(confidence[:, None, :], factors)[:, 0, :] - times_matrix(x)
        direction = residual.copy()
        squared = np.einsum("rk,rk->r", residual, residual)
        for _ in range(steps):
            moved = times_matrix(direction)
            curvature = np.einsum("rk,rk->r", direction, moved)
            length = np.divide(
                squared, curvature, out=np.zeros_like(squared), where=curvature > 1e-20
            )
            x = x + length[:, None] * direction
            residual = residual - length[:, None] * moved
            new_squared = np.einsum("rk,rk->r", residual, residual)
            ratio = np.divide(
                new_squared, squared, out=np.zeros_like(squared), where=squared > 1e-20
            )
            direction = residual + ratio[:, None] * direction
            squared = new_squared
        out[chunk] = x
    return out


def _row_systems(base: Array, shrink: Array, factors: Array, beyond: Array, v: Array) -> Array:
    """Each row's system matrix times its row of `v`: (w0 YᵀY + λ_r I) v_r + Yᵣᵀ((C_r - w0)
    (Y_r v_r)), from the padded entries' factors (rows, longest, k)."""
    along = np.matmul(factors, v[..., None])[..., 0] * beyond
    return np.asarray(v @ base + shrink * v + np.matmul(along[:, None, :], factors)[:, 0, :])


@hookimpl
def register_algorithms() -> list[type[Algorithm]]:
    return [IALS]
