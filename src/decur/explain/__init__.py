"""``decur explain``: what the common and the unique embedding dimensions look at — the paper's Algorithm 2.

For a pretrained run of M >= 2 modalities, every step as the paper's appendix (Algorithm 2) by default, each
deviation a documented switch (``ExplainConfig``):

1. cross-modal alignment (Fig. 4a / 8): on ``alignment_batches`` training-style batches (the run's batch size, the
   training augmentations' first views), the per-dimension loss ``(1 − C_ii)^2`` of the standardised embeddings
   of every pair of modalities; one histogram per batch on ``range=(0, 1)``, overlaid; dimensions above 1
   (anti-correlated, ``C_ii < 0``) are counted and reported, not clipped silently. ``--compare`` overlays another
   run's first batch;
2. t-SNE where each embedding *dimension* is a point (its values over the un-augmented samples);
3. GradCAM (captum ``LayerGradCam``, no ReLU on the attributions unless ``cam_relu``) of the scalar outputs
   "mean of the common dims" and "mean of the unique dims" of ``BN(f(x))`` — the embedding standardised over the
   batch, as the paper (``standardize=False``: the raw projector output) — at each encoder's deepest stage at
   least 7 px wide, upsampled to the input;
4. spatial saliency statistics (Fig. 5a): for every image of the evaluation set (all ``samples``, in batches, on
   the accelerator), each modality's GradCAM map normalised to [0, 1], the product over the modalities, its log,
   normalised per patch to [0, 1], and its mean: one common and one unique score per image pair, two histograms;
5. spectral saliency (Fig. 5b): Integrated Gradients of the same outputs per input band, the signed attribution
   averaged over height and width for each sample, normalised per sample (divided by the sum of its absolute band
   values), box plots per band over the whole set for common and unique, with the dataset's band names;
6. ``explain.json`` with every number behind the plots (``saliency_pairs``: image pairs covered by the
   statistics; ``spectral_bands``: the band names in order) and ``report.md`` showing every plot.

The pieces: ``compute`` (every number), ``figures`` (the plots), ``run`` (``explain``: the steps in order, the
report).
"""

from __future__ import annotations

from decur.evaluate.metrics import alignment
from decur.explain.compute import (
    S2_BAND_NAMES,
    ExplainConfig,
    Parts,
    Saliency,
    _Slice,
    alignment_per_batch,
    alignment_summary,
    band_names,
    cam_layer,
    dimension_tsne,
    embeddings,
    evaluating,
    gradcam_maps,
    ground_truth_check,
    resolve_device,
    saliency_numbers,
    saliency_over_set,
    saliency_scores,
    spectral_saliency,
    token_gradcam,
)
from decur.explain.figures import render
from decur.explain.run import explain

__all__ = [
    "S2_BAND_NAMES",
    "ExplainConfig",
    "Parts",
    "Saliency",
    "_Slice",
    "alignment",
    "alignment_per_batch",
    "alignment_summary",
    "band_names",
    "cam_layer",
    "dimension_tsne",
    "embeddings",
    "evaluating",
    "explain",
    "gradcam_maps",
    "ground_truth_check",
    "render",
    "resolve_device",
    "saliency_numbers",
    "saliency_over_set",
    "saliency_scores",
    "spectral_saliency",
    "token_gradcam",
]
