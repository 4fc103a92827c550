"""Group window embeddings into speakers: agglomerative clustering with an automatic count.

Average-linkage clustering on cosine distance (scipy) is cut where clusters are further apart
than `threshold`; clusters holding only a sliver of the speech are folded into the nearest
large one (a window across a cough or two voices should not become a speaker of its own); the
`min_speakers`/`max_speakers` hints then bound the count by cutting the tree at that many.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy.cluster.hierarchy import fcluster, linkage

from worker.diarize.types import FloatArray, Hints

THRESHOLD = 0.35
"""Cosine distance between clusters above which they are different voices (docs/diarization.md)."""
MIN_SHARE = 0.05
"""A cluster with less of the windows than this is folded into its nearest neighbour."""
MAX_TREE = 4000
"""Above this many windows (about 53 min of speech) the tree is built on an evenly spaced
sample of this size and every window then joins its nearest sample centroid: the tree's
memory grows with the square of its size (4,000 windows: 64 MB of distances)."""

Labels = npt.NDArray[np.int_]


def _first_seen(labels: Labels) -> Labels:
    """Renumber labels 0, 1, … in order of first appearance."""
    order: dict[int, int] = {}
    for label in labels.tolist():
        order.setdefault(label, len(order))
    return np.array([order[x] for x in labels.tolist()], dtype=np.int_)


def centroids(vectors: FloatArray, labels: Labels) -> FloatArray:
    """One L2-normalised mean embedding per label (row k for label k)."""
    count = int(labels.max()) + 1 if labels.size else 0
    out = np.zeros((count, vectors.shape[1]), np.float32)
    for k in range(count):
        mean = vectors[labels == k].mean(axis=0)
        out[k] = mean / max(float(np.linalg.norm(mean)), 1e-12)
    return out


def _fold_small(vectors: FloatArray, labels: Labels, min_share: float) -> Labels:
    sizes = np.bincount(labels)
    big = np.flatnonzero(sizes >= max(2.0, min_share * len(labels)))
    if big.size == 0 or big.size == sizes.size:
        return labels
    cents = centroids(vectors, labels)[big]
    out = labels.copy()
    for i in np.flatnonzero(~np.isin(labels, big)):
        out[i] = big[int(np.argmax(cents @ vectors[i]))]
    return out


def cluster(
    vectors: FloatArray,
    hints: Hints,
    threshold: float = THRESHOLD,
    min_share: float = MIN_SHARE,
    max_tree: int = MAX_TREE,
) -> Labels:
    """A speaker label per row of `vectors` (L2-normalised embeddings), 0 for the first voice."""
    if len(vectors) > max_tree:
        sample = np.linspace(0, len(vectors) - 1, max_tree).round().astype(np.int_)
        sample_labels = _cluster_tree(vectors[sample], hints, threshold, min_share)
        cents = centroids(vectors[sample], sample_labels)
        return _first_seen(np.argmax(vectors @ cents.T, axis=1).astype(np.int_))
    return _cluster_tree(vectors, hints, threshold, min_share)


def _cluster_tree(vectors: FloatArray, hints: Hints, threshold: float, min_share: float) -> Labels:
    n = len(vectors)
    if n == 0:
        return np.zeros(0, dtype=np.int_)
    lo = hints.min_speakers or 1
    hi = min(hints.max_speakers or n, n)
    if n == 1 or hi == 1:
        return np.zeros(n, dtype=np.int_)
    tree = linkage(vectors.astype(np.float64), method="average", metric="cosine")
    if lo == hi:
        return _first_seen(fcluster(tree, lo, criterion="maxclust") - 1)
    labels = _first_seen(fcluster(tree, threshold, criterion="distance") - 1)
    labels = _first_seen(_fold_small(vectors, labels, min_share))
    count = int(labels.max()) + 1
    if count > hi or count < lo:
        labels = _first_seen(fcluster(tree, min(max(count, lo), hi), criterion="maxclust") - 1)
    return labels
