"""content-mf: implicit matrix factorisation whose item factors are tied to a learned projection
of the items' content, so that an item without interactions still has a usable factor.

In the spirit of collaborative deep learning (Wang et al., KDD 2015) and CB2CF (Barkan et al.,
RecSys 2019), with the deep part taken by embedders the host already runs (MiniLM for text, a
CNN for pictures) and a linear map learned on top of them. The objective is implicit ALS's
(Hu et al., ICDM 2008) with the items' factors pulled towards their content projection:

    Σ_ui c_ui (p_ui - u·v_i)²  +  λ_u Σ_u |u|²  +  λ_c Σ_i |v_i - f(x_i)|²  +  g |W|²

where p_ui is 1 for an interaction and 0 otherwise, c_ui = 1 + a · weight, x_i the item's
content vector (text embedding, image embedding, categorical properties as multi-hot, numeric
properties standardised) and f(x) = mean + (x - x̄) W a ridge-regularised linear map. Training
alternates three closed forms: users given items, items given users and their priors f(x_i), and
W given the warm items' factors (a ridge regression from content to collaborative factor).

- A warm item's factor is f(x_i) plus an offset that its interactions pay for: with few of them
  it stays near its content projection, with many the collaborative signal decides.
- An item with no interactions gets f(x_i): what warm items with that content look like. One
  with neither interactions nor content gets a zero factor (no evidence: it scores 0).
- Users are folded in at each request from their history (the ALS user step against the item
  factors), so a new interaction counts at once and a new user needs no retraining.
- Items to item: the cosine of the item factors (a cold item's through its content factor).

Why closed forms rather than a network trained by gradient: on MovieLens-100K a fit is a few
seconds on two cores, it is deterministic for a seed, and a linear map over pre-trained
embeddings (384-d MiniLM) is what CB2CF found enough to carry content into factor space. Items
added to the catalog after training are scored at the next training (-inf until then), as for
every model that learns per-item parameters.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from plugins.algorithm import Algorithm, Parameter, UserHistory
from plugins.builtin.content_features import item_content
from plugins.builtin.image_embedders import DEFAULT_EMBEDDER
from plugins.embedders import normalise
from plugins.hookspecs import hookimpl
from plugins.training import TrainingData

Array = np.ndarray[Any, Any]
ROWS_PER_SOLVE = 256
"""Rows (users or items) whose k x k systems are stacked and solved at once: bounds memory."""
ENTRIES_PER_SOLVE = 1 << 14
"""Padded entries gathered for one batch of rows (x factors x 8 bytes: 8 MiB at 64)."""


class ContentMF(Algorithm):
    """Implicit ALS with item factors regularised towards a linear projection of content."""

    name = "content-mf"
    description = (
        "implicit matrix factorisation with item factors tied to a projection of the items' "
        "text, image and property vectors: new items are scored from their content"
    )
    parameters = (
        Parameter("factors", int, 64, "dimensions of the user and item factors", 1, 1024),
        Parameter("epochs", int, 10, "alternating least-squares sweeps", 1, 500),
        Parameter("alpha", float, 4.0, "confidence of an interaction: 1 + alpha x its weight", 0.0),
        Parameter("regularisation", float, 50.0, "L2 of the user factors (λ_u)", 0.0),
        Parameter(
            "content_weight",
            float,
            20.0,
            "how strongly an item's factor is pulled to its content projection (λ_c)",
            0.0,
        ),
        Parameter("projection_l2", float, 1.0, "ridge penalty of the content projection (g)", 0.0),
        Parameter(
            "content_prior",
            float,
            0.0,
            "interactions at which an item's served factor is half its content projection "
            "(0: the fitted factor; an item without interactions always gets its projection)",
            0.0,
        ),
        Parameter(
            "text_embedder", str, "minilm", "the items' text embedder, '' for no text vectors"
        ),
        Parameter(
            "image_property",
            str,
            "image",
            "the image (or imageList) property embedded where items have it, '' for none",
        ),
        Parameter("image_embedder", str, DEFAULT_EMBEDDER, "the image embedder"),
        Parameter("image_embedder_settings", dict, {}, "the image embedder's parameters"),
        Parameter(
            "properties", bool, True, "use categorical (multi-hot) and numeric item properties"
        ),
        Parameter(
            "max_categories",
            int,
            500,
            "a string property with more distinct values than this is not categorical",
            1,
        ),
        Parameter("seed", int, 0, "seed of the initial item factors"),
    )

    def __init__(self, **settings: Any) -> None:
        super().__init__(**settings)
        self.item_factors = np.zeros((0, int(self.settings["factors"])), dtype=np.float32)
        self._gram: Array | None = None

    # -- fitting --------------------------------------------------------------------------------

    def fit(self, data: TrainingData) -> None:
        # One BLAS thread: the products are small (k x k per row), and a threaded BLAS spends
        # more time waking its threads than multiplying (4 s against 12-40 s on two shared
        # cores for ML-100K). The trainer fits in its own process, so the limit is not felt
        # by a server's requests.
        with threadpool_limits(limits=1, user_api="blas"):
            self._fit(data)

    def _fit(self, data: TrainingData) -> None:
        s = self.settings
        self.n_items = data.n_items
        k = int(s["factors"])
        content, has_content = item_content(data, s)
        interactions = positive(data.matrix)
        by_item = interactions.T.tocsr()
        warm = np.diff(by_item.indptr) > 0
        rng = np.random.default_rng(int(s["seed"]))
        items = rng.standard_normal((data.n_items, k)) * (0.1 / np.sqrt(k))
        prior = np.zeros_like(items)
        alpha, users_l2 = float(s["alpha"]), float(s["regularisation"])
        content_l2 = float(s["content_weight"])
        projection = Projection.zero(content.shape[1], k)
        for _ in range(int(s["epochs"])):
            users = solve_rows(interactions, items, alpha, users_l2)
            # An item's prior is its content projection: with λ_c the offset from it is what
            # its interactions must pay for, so a rarely seen item stays near its content.
            items = solve_rows(by_item, users, alpha, 0.0, prior, content_l2)
            projection = Projection.fit(content[warm], items[warm], float(s["projection_l2"]))
            prior = projection.apply(content)
        # An item nobody interacted with (in training) takes the content projection itself:
        # what warm items with its content look like, not the ALS answer "nobody wants it";
        # one with a few interactions is between the two, by its count.
        counts = np.diff(by_item.indptr).astype(np.float64)
        kappa = float(s["content_prior"])
        share = np.divide(kappa, counts + kappa, out=(counts == 0) * 1.0, where=counts + kappa > 0)
        share = np.where(has_content, share, 0.0)[:, None]
        items = share * prior + (1.0 - share) * items
        items[~warm & ~has_content] = 0.0
        self.item_factors = items.astype(np.float32)
        self._gram = None

    # -- scoring --------------------------------------------------------------------------------

    def user_factors(self, histories: Sequence[UserHistory]) -> Array:
        """Each history folded in against the item factors (the ALS user step): float64,
        (len(histories), factors); zeros for a history without known items."""
        if self._gram is None:
            factors = self.item_factors.astype(np.float64)
            self._gram = factors.T @ factors
        rows = history_rows(histories, self.n_items)
        return solve_rows(
            rows,
            self.item_factors.astype(np.float64),
            float(self.settings["alpha"]),
            float(self.settings["regularisation"]),
            gram=self._gram,
        )

    def user_scores(self, histories: Sequence[UserHistory]) -> Array:
        """u·v for every item, u folded in from each history."""
        users = self.user_factors(histories).astype(np.float32)
        return np.asarray(users @ self.item_factors.T, dtype=np.float32)

    def item_scores(self, items: Sequence[int]) -> Array:
        """The cosine of every item's factor to the context item's (zeros for an unknown item,
        or one without interactions and content)."""
        unit = normalise(self.item_factors)
        scores = np.zeros((len(items), self.n_items), dtype=np.float32)
        known = [row for row, item in enumerate(items) if 0 <= item < self.n_items]
        if known:
            context = unit[[int(items[row]) for row in known]]
            scores[known] = context @ unit.T
        return scores

    # -- persistence ----------------------------------------------------------------------------

    def state(self) -> dict[str, Array]:
        return {"item_factors": self.item_factors}

    def restore(self, arrays: Mapping[str, Array]) -> None:
        self.item_factors = np.asarray(arrays["item_factors"], dtype=np.float32)
        self._gram = None


class Projection:
    """f(x) = mean + (x - x̄) W: the ridge map from content vectors to item factors."""

    def __init__(self, x_mean: Array, y_mean: Array, weights: Array) -> None:
        self.x_mean, self.y_mean, self.weights = x_mean, y_mean, weights

    @classmethod
    def zero(cls, dimensions: int, factors: int) -> Projection:
        """The map before any fit: every item's prior is 0."""
        return cls(np.zeros(dimensions), np.zeros(factors), np.zeros((dimensions, factors)))

    @classmethod
    def fit(cls, x: Array, y: Array, l2: float) -> Projection:
        """Ridge regression of y on x (centred: the intercept is not penalised)."""
        if not len(x):
            return cls.zero(x.shape[1], y.shape[1])
        x_mean, y_mean = x.mean(axis=0), y.mean(axis=0)
        xc = x - x_mean
        gram = xc.T @ xc
        gram[np.diag_indices_from(gram)] += max(l2, 1e-6)
        weights = np.linalg.solve(gram, xc.T @ (y - y_mean))
        return cls(x_mean, y_mean, weights)

    def apply(self, x: Array) -> Array:
        """f(x) for every row of x."""
        result: Array = self.y_mean + (x - self.x_mean) @ self.weights
        return result


def positive(matrix: sp.csr_matrix) -> sp.csr_matrix:
    """The interactions with a positive summed weight, as float64 weights."""
    out = sp.csr_matrix(matrix, dtype=np.float64, copy=True)
    out.data[out.data < 0] = 0.0
    out.eliminate_zeros()
    out.sort_indices()
    return out


def solve_rows(
    rows: sp.csr_matrix,
    other: Array,
    alpha: float,
    l2: float,
    prior: Array | None = None,
    prior_weight: float = 0.0,
    gram: Array | None = None,
    *,
    unobserved: float = 1.0,
    row_l2: Array | None = None,
) -> Array:
    """One ALS half-step: for each row r (a user, or an item) the factor x minimising
    Σ_j c_rj (p_rj - x·y_j)² + l2 |x|² (or + prior_weight |x - prior_r|² with a prior), with
    c = 1 + alpha·weight on the row's entries and c = 1, p = 0 elsewhere. By Hu et al.'s
    identity, YᵀC_rY = YᵀY + Yᵀ(C_r - I)Y, so each row costs its own entries only.

    `unobserved`: the c of the entries without an interaction, w0 (1 by default, as Hu et al.;
    Rendle et al. 2022's alpha0): then YᵀC_rY = w0 YᵀY + Yᵀ(C_r - w0 I)Y. `row_l2`: each row's
    own L2 weight, in place of `l2` (a frequency-scaled regularisation); not with a prior."""
    n, k = rows.shape[0], other.shape[1]
    if gram is None:
        gram = other.T @ other
    weight = prior_weight if prior is not None else l2
    if unobserved != 1.0:
        gram = unobserved * gram
    if row_l2 is None:
        base = gram + np.eye(k) * max(weight, 1e-6)  # a row with no entries still has a solution
    elif prior is not None:
        raise ValueError("row_l2 is the L2 weight of rows without a prior")
    else:
        base = gram
        row_l2 = np.maximum(np.asarray(row_l2, dtype=np.float64), 1e-6)
    out = np.zeros((n, k))
    for chunk, factors, confidence, beyond in padded_rows(rows, other, alpha, unobserved):
        # Contiguous: numpy's stacked matmul calls BLAS only for contiguous operands.
        weighted = np.ascontiguousarray((factors * beyond[..., None]).transpose(0, 2, 1))
        lhs = base + np.matmul(weighted, factors)
        if row_l2 is not None:
            lhs += row_l2[chunk][:, None, None] * np.eye(k)
        rhs = np.matmul(confidence[:, None, :], factors)[:, 0, :]
        if prior is not None:
            rhs += prior_weight * prior[chunk]
        out[chunk] = np.linalg.solve(lhs, rhs[..., None])[..., 0]
    return out


def padded_rows(
    rows: sp.csr_matrix, other: Array, alpha: float, unobserved: float = 1.0
) -> Iterator[tuple[Array, Array, Array, Array]]:
    """The rows in batches of similar lengths, each as (row indices, the factors of its entries
    padded into one (rows, longest, k) block, each entry's confidence c = 1 + alpha x weight,
    and its weight in YᵀC_rY beyond the unobserved w0, c - w0; both 0 in the padding): a few
    batched products instead of one small product per row."""
    n, k = rows.shape[0], other.shape[1]
    lengths = np.diff(rows.indptr)
    order = np.argsort(lengths, kind="stable")
    start = 0
    while start < n:
        stop = start + 1
        while (
            stop < n
            and stop - start < ROWS_PER_SOLVE
            and (stop + 1 - start) * lengths[order[stop]] <= ENTRIES_PER_SOLVE
        ):
            stop += 1
        chunk = order[start:stop]
        longest = max(int(lengths[chunk].max()), 1)
        offsets = np.arange(longest)
        held = offsets[None, :] < lengths[chunk][:, None]
        at = np.where(held, rows.indptr[chunk][:, None] + offsets[None, :], 0)
        factors = other[rows.indices[at]] if rows.nnz else np.zeros((len(chunk), longest, k))
        extra = np.where(held, alpha * rows.data[at], 0.0) if rows.nnz else held * 0.0
        beyond = extra if unobserved == 1.0 else np.where(held, extra + (1.0 - unobserved), 0.0)
        yield chunk, factors, (1.0 + extra) * held, beyond
        start = stop


def history_rows(histories: Sequence[UserHistory], n_items: int) -> sp.csr_matrix:
    """len(histories) x n_items: each history's summed weight per known item (weight 1 per
    interaction where a history carries none), the positive ones only."""
    users, items = [np.zeros(0, dtype=np.int64)], [np.zeros(0, dtype=np.int64)]
    weights = [np.zeros(0)]
    for row, history in enumerate(histories):
        known = (history.items >= 0) & (history.items < n_items)
        weight = history.weights if len(history.weights) else np.ones(len(history.items))
        items.append(np.asarray(history.items, dtype=np.int64)[known])
        weights.append(np.asarray(weight, dtype=np.float64)[known])
        users.append(np.full(int(known.sum()), row, dtype=np.int64))
    summed = sp.csr_matrix(
        (np.concatenate(weights), (np.concatenate(users), np.concatenate(items))),
        shape=(len(histories), n_items),
    )
    summed.sum_duplicates()
    return positive(summed)


@hookimpl
def register_algorithms() -> list[type[Algorithm]]:
    return [ContentMF]
