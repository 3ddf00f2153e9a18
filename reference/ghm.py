"""The GHM-C and GHM-R entry points of the reference, built from ``equations``.

Each step names the equation (or the section of spec.md) it implements. The two dialects
differ only in ``harmonize``: how beta is formed from the region counts (spec.md section 4).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np

from . import diagnostics as diag
from . import equations as eq

DIALECTS = ("paper", "mmdet")
REDUCTIONS = ("mean", "sum", "none")


@dataclass(frozen=True)
class GHMResult:
    """What one call of ``ghm_c`` / ``ghm_r`` computes.

    loss: float, or a per-entry array for ``reduction="none"``.
    grad: d loss / d pred, shaped like ``pred``, beta held constant (for "none": of the sum).
    weights: beta_i per entry, 0 where masked.
    state: the EMA region state after the call (float64, length ``bins``); None when
        ``momentum == 0``, and in the "paper" dialect while no valid entry has been seen.
    target_grad: d loss / d target, shaped like ``pred``, beta held constant (spec.md 5); None
        for class-index targets, which have no gradient.
    diagnostics: what the call did, per region (spec.md 13): counts, density, beta, gradient masses.
    """

    loss: float | np.ndarray
    grad: np.ndarray
    weights: np.ndarray
    state: np.ndarray | None
    target_grad: np.ndarray | None = None
    diagnostics: diag.Diagnostics | None = None


# ---------------------------------------------------------------- argument checks


def _check_bins(bins) -> int:
    if isinstance(bins, bool) or not isinstance(bins, numbers.Integral) or bins < 1:
        raise ValueError(f"bins must be an integer >= 1, got {bins!r}")
    return int(bins)


# The type: ignore[operator] below: typeshed's numbers.Real declares only < and <=, while every
# concrete real (int, float, Fraction, NumPy scalars) compares both ways.
def _check_momentum(momentum) -> float:
    if isinstance(momentum, bool) or not isinstance(momentum, numbers.Real) or not 0.0 <= momentum < 1.0:  # type: ignore[operator]
        raise ValueError(f"momentum must be a real number in [0, 1), got {momentum!r}")
    return float(momentum)


def _check_mu(mu) -> float:
    if isinstance(mu, bool) or not isinstance(mu, numbers.Real) or not (math.isfinite(mu) and mu > 0):  # type: ignore[operator]
        raise ValueError(f"mu must be a finite real number > 0, got {mu!r}")
    return float(mu)


def _check_choice(name: str, value, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
    return value


def _check_loss_weight(loss_weight) -> float:
    if isinstance(loss_weight, bool) or not isinstance(loss_weight, numbers.Real) or not math.isfinite(loss_weight):
        raise ValueError(f"loss_weight must be a finite real number, got {loss_weight!r}")
    return float(loss_weight)


def _as_real_array(name: str, a, *, allow_int: bool) -> np.ndarray:
    a = np.asarray(a)
    ok = np.issubdtype(a.dtype, np.floating) or a.dtype == np.bool_
    if allow_int:
        ok = ok or np.issubdtype(a.dtype, np.integer)
    if not ok:
        raise ValueError(f"{name} must be a real {'or integer ' if allow_int else ''}array, got dtype {a.dtype}")
    return a


def _check_state(state, *, bins: int, momentum: float) -> np.ndarray | None:
    if state is None:
        return None
    if momentum == 0.0:
        raise ValueError("state was given but momentum == 0: the EMA state only exists with momentum > 0")
    s = np.asarray(state, dtype=np.float64)
    if s.shape != (bins,):
        raise ValueError(f"state must have shape ({bins},) (one value per region), got {s.shape}")
    if not np.all(np.isfinite(s)) or np.any(s < 0):
        raise ValueError(f"state must be finite and non-negative, got {s!r}")
    return s.copy()


def _positive(w: np.ndarray) -> np.ndarray:
    """w > 0 for the number as stored, subnormals included (spec.md 1): a float by its bits, the
    integer view of sign and magnitude in (0, bits(+inf)], so that no flush-to-zero mode (FTZ/DAZ,
    which a library loaded into the process may set) can read 1e-40 as 0."""
    if not np.issubdtype(w.dtype, np.floating):
        return w > 0
    as_int = np.dtype(f"int{8 * w.dtype.itemsize}")
    return (w.view(as_int) > 0) & (w.view(as_int) <= np.array(np.inf, w.dtype).view(as_int))


def _valid_mask(label_weight, shape: tuple[int, ...]) -> np.ndarray:
    """spec.md sections 1 and 6: an entry is valid iff its label weight is > 0 (a mask; a subnormal
    positive weight is valid); the weights are shaped like pred, or like pred.shape[:-1] (per
    anchor, broadcast)."""
    if label_weight is None:
        return np.ones(shape, dtype=bool)
    w = np.ascontiguousarray(_as_real_array("label_weight", label_weight, allow_int=True))
    anchor_shape = shape[:-1] if shape else None
    if w.shape != shape and w.shape != anchor_shape:
        raise ValueError(f"label_weight must have shape {shape} or {anchor_shape} (per anchor), got {w.shape}")
    if np.any(np.isnan(w)) or np.any(w < 0):
        raise ValueError("label_weight must be non-negative and not NaN (entries with weight 0 are masked)")
    valid = _positive(w)
    return valid if w.shape == shape else np.broadcast_to(valid[..., None], shape)


def _is_class_index_target(t: np.ndarray, shape: tuple[int, ...]) -> bool:
    """spec.md section 6: a target is read by its shape. Shaped like pred: per-entry targets
    (an integer one holds 0/1 labels). Integer and shaped like pred.shape[:-1]: class indices,
    which need C >= 2 (with C = 1 they could as well be binary labels)."""
    if t.shape == shape:
        return False
    if not np.issubdtype(t.dtype, np.integer):
        raise ValueError(f"target must have the shape of pred {shape}, got {t.shape}")
    if len(shape) == 0 or t.shape != shape[:-1]:
        raise ValueError(
            f"an integer target must have the shape of pred {shape} (0/1 labels) or "
            f"pred.shape[:-1] = {shape[:-1]} (class indices), got {t.shape}"
        )
    if shape[-1] == 1:
        raise ValueError(
            f"an integer target of shape {t.shape} with a single logit per anchor (C = 1) "
            f"is ambiguous: class indices (label 1 = background) or binary labels? Pass "
            f"the labels shaped like pred {shape}, e.g. target[..., None], to mean binary "
            f"labels"
        )
    return True


# ---------------------------------------------------------------- the harmonizing weight


def region_weights(
    r: np.ndarray, *, bins: int, momentum: float, state: np.ndarray | None, dialect: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """beta_j per region from the counts R_j of a call with at least one valid entry (spec.md
    section 4): (beta, density, new_state), beta 0 where R_j = 0, density the S_j (paper) or A_j
    (mmdet) it is formed from.

    "paper":  beta_j = N / (S_j * M), S = R (Eq. 9-10) or the EMA of Eq. (12)-(13),
              with S^(0) := R^(1) and every region updated.
    "mmdet":  beta_j = N / (A_j * n), n = #non-empty regions, A = R, or an accumulator
              starting at zeros and updated by Eq. (12) only where R_j > 0.
    """
    n_examples = int(r.sum())
    occupied = r > 0
    beta = np.zeros(bins)
    if dialect == "paper":
        if momentum == 0.0:
            s, new_state = r.astype(np.float64), None
        else:
            s = r.astype(np.float64) if state is None else eq.ema(state, r, momentum)
            new_state = s
        beta[occupied] = eq.beta(eq.approx_gradient_density(s[occupied], bins), n_examples)
        return beta, s, new_state
    n_nonempty = int(np.count_nonzero(r))
    if momentum == 0.0:
        a, new_state = r.astype(np.float64), None
    else:
        acc = np.zeros(bins) if state is None else state
        a = np.where(occupied, eq.ema(acc, r, momentum), acc)
        new_state = a
    beta[occupied] = n_examples / (a[occupied] * n_nonempty)
    return beta, a, new_state


def harmonize(
    ind: np.ndarray, *, bins: int, momentum: float, state: np.ndarray | None, dialect: str
) -> tuple[np.ndarray, np.ndarray | None]:
    """beta for the N valid examples whose region indices are ``ind`` (spec.md section 4).

    Returns (beta, new_state). ``ind`` must hold at least one entry. beta depends on an example
    only through its region: ``region_weights`` of the counts R_j, read at ind(g_i).
    """
    beta, _, new_state = region_weights(
        eq.region_counts(ind, bins), bins=bins, momentum=momentum, state=state, dialect=dialect
    )
    return beta[ind], new_state


def _unchanged_state(state: np.ndarray | None, *, bins: int, momentum: float, dialect: str) -> np.ndarray | None:
    if momentum == 0.0:
        return None
    if state is None and dialect == "mmdet":
        return np.zeros(bins)
    return state


def _reduce(per_entry_loss, per_entry_grads, beta, valid, *, reduction, loss_weight):
    """spec.md section 5. Masked entries contribute exactly 0, whatever their values.
    ``per_entry_grads``: dL_i/dx_i and dL_i/dt_i (or None); returns (loss, [their gradients])."""
    n_examples = int(np.count_nonzero(valid))
    weighted = np.where(valid, beta * per_entry_loss, 0.0) * loss_weight
    grads = [None if d is None else np.where(valid, beta * d, 0.0) * loss_weight for d in per_entry_grads]
    if reduction == "none":
        return weighted, grads
    total = float(np.sum(weighted))
    if reduction == "sum":
        return total, grads
    scale = 1.0 / max(n_examples, 1)
    return total * scale, [None if g is None else g * scale for g in grads]


def _ghm(
    per_entry_loss,
    per_entry_grad,
    per_entry_target_grad,
    gnorm,
    valid,
    finite,
    *,
    bins,
    momentum,
    state,
    dialect,
    reduction,
    loss_weight,
    positive=None,
) -> GHMResult:
    """Everything after the per-entry loss, gradients and gradient norm: shared by C and R.
    ``positive``: whether each entry's target is 1 (GHM-C, for the diagnostics), or None (GHM-R)."""
    beta = np.zeros(valid.shape)
    ind = None
    if not np.all(finite[valid]):
        # spec.md section 7: a non-finite valid entry makes the histogram, hence every beta, undefined.
        beta[valid] = np.nan
        new_state = _unchanged_state(state, bins=bins, momentum=momentum, dialect=dialect)
        diagnostics = diag.poisoned(bins)
    elif not np.any(valid):
        new_state = _unchanged_state(state, bins=bins, momentum=momentum, dialect=dialect)
        diagnostics = diag.empty(bins, new_state, classification=positive is not None)
    else:
        ind = eq.region_index(gnorm[valid], bins)
        beta_region, density, new_state = region_weights(
            eq.region_counts(ind, bins), bins=bins, momentum=momentum, state=state, dialect=dialect
        )
        beta[valid] = beta_region[ind]
    loss, (grad, target_grad) = _reduce(
        per_entry_loss,
        (per_entry_grad, per_entry_target_grad),
        beta,
        valid,
        reduction=reduction,
        loss_weight=loss_weight,
    )
    if ind is not None:
        diagnostics = diag.diagnose(
            ind,
            bins=bins,
            density=density,
            beta_region=beta_region,
            grad=grad[valid],
            per_entry_grad=per_entry_grad[valid],
            reduction=reduction,
            positive=None if positive is None else positive[valid],
        )
    return GHMResult(
        loss=loss, grad=grad, weights=beta, state=new_state, target_grad=target_grad, diagnostics=diagnostics
    )


def _common_args(bins, momentum, state, dialect, reduction, loss_weight):
    bins = _check_bins(bins)
    momentum = _check_momentum(momentum)
    dialect = _check_choice("dialect", dialect, DIALECTS)
    reduction = _check_choice("reduction", reduction, REDUCTIONS)
    loss_weight = _check_loss_weight(loss_weight)
    state = _check_state(state, bins=bins, momentum=momentum)
    return bins, momentum, state, dialect, reduction, loss_weight


# ---------------------------------------------------------------- entry points


def ghm_c(
    pred,
    target,
    label_weight=None,
    *,
    bins: int = 30,
    momentum: float = 0.0,
    state=None,
    dialect: str = "paper",
    reduction: str = "mean",
    loss_weight: float = 1.0,
) -> GHMResult:
    """GHM-C, Eq. (11) (with the EMA of Eqs. (12)-(13) when momentum > 0).

    loss = loss_weight * (1/N) * sum_{i valid} beta_i * L_CE(x_i, t_i), beta_i from ``harmonize``.

    pred: logits, any shape. target: same shape, in [0, 1] (binary or soft; integer 0/1 labels
    too); or integer class indices of shape ``pred.shape[:-1]`` where label C = pred.shape[-1]
    (C >= 2) is background (all-zero row). label_weight: shaped like pred, or like
    pred.shape[:-1] (per anchor); > 0 means valid.
    Raises ValueError for bad arguments (spec.md section 7).
    """
    bins, momentum, state, dialect, reduction, loss_weight = _common_args(
        bins, momentum, state, dialect, reduction, loss_weight
    )
    x = _as_real_array("pred", pred, allow_int=False).astype(np.float64)
    t = _as_real_array("target", target, allow_int=True)
    classes = _is_class_index_target(t, x.shape)
    valid = _valid_mask(label_weight, x.shape)

    if classes:
        n_classes = x.shape[-1]
        anchor_valid = valid.any(axis=-1) if valid.ndim else valid
        bad = anchor_valid & ((t < 0) | (t > n_classes))
        if np.any(bad):
            raise ValueError(
                f"class labels must lie in [0, {n_classes}] (label {n_classes} = background), "
                f"got {np.unique(t[bad]).tolist()}"
            )
        t = (t[..., None] == np.arange(n_classes)).astype(np.float64)
    else:
        if np.issubdtype(t.dtype, np.integer):
            bad = valid & (t != 0) & (t != 1)
            if np.any(bad):
                raise ValueError(
                    f"an integer target shaped like pred holds 0/1 labels, got {np.unique(t[bad]).tolist()[:5]}"
                )
        t = t.astype(np.float64)
        out = valid & np.isfinite(t) & ((t < 0) | (t > 1))
        if np.any(out):
            raise ValueError(f"target must lie in [0, 1], got {np.unique(t[out]).tolist()[:5]}")

    with np.errstate(invalid="ignore", over="ignore"):
        finite = np.isfinite(x) & np.isfinite(t)
        x_safe, t_safe = np.where(finite, x, 0.0), np.where(finite, t, 0.0)
        per_entry_loss = np.where(finite, eq.cross_entropy(x_safe, t_safe), np.nan)
        per_entry_grad = np.where(finite, eq.cross_entropy_grad(x_safe, t_safe), np.nan)
        per_entry_target_grad = (
            None if classes else np.where(finite, eq.cross_entropy_target_grad(x_safe, t_safe), np.nan)
        )
        g = eq.gradient_norm(x_safe, t_safe)
    return _ghm(
        per_entry_loss,
        per_entry_grad,
        per_entry_target_grad,
        g,
        valid,
        finite,
        bins=bins,
        momentum=momentum,
        state=state,
        dialect=dialect,
        reduction=reduction,
        loss_weight=loss_weight,
        positive=t == 1.0,
    )


def ghm_r(
    pred,
    target,
    label_weight=None,
    *,
    mu: float = 0.02,
    bins: int = 10,
    momentum: float = 0.0,
    state=None,
    dialect: str = "paper",
    reduction: str = "mean",
    loss_weight: float = 1.0,
) -> GHMResult:
    """GHM-R, Eq. (19): loss = loss_weight * (1/N) * sum_{i valid} beta_i * ASL1(x_i - t_i).

    ASL1 is Eq. (17) and the regions are taken on gr of Eq. (18). pred, target and label_weight
    share one shape; targets are any finite reals. Raises ValueError for bad arguments.
    """
    mu = _check_mu(mu)
    bins, momentum, state, dialect, reduction, loss_weight = _common_args(
        bins, momentum, state, dialect, reduction, loss_weight
    )
    x = _as_real_array("pred", pred, allow_int=False).astype(np.float64)
    t = _as_real_array("target", target, allow_int=False).astype(np.float64)
    if t.shape != x.shape:
        raise ValueError(f"target must have the shape of pred {x.shape}, got {t.shape}")
    valid = _valid_mask(label_weight, x.shape)
    with np.errstate(invalid="ignore", over="ignore"):
        d = x - t
        finite = np.isfinite(d)
        d_safe = np.where(finite, d, 0.0)
        per_entry_loss = np.where(finite, eq.asl1(d_safe, mu), np.nan)
        per_entry_grad = np.where(finite, eq.asl1_grad(d_safe, mu), np.nan)
        gr = eq.asl1_gradient_norm(d_safe, mu)
    # d ASL1(x - t) / dt = -d ASL1 / dd
    return _ghm(
        per_entry_loss,
        per_entry_grad,
        -per_entry_grad,
        gr,
        valid,
        finite,
        bins=bins,
        momentum=momentum,
        state=state,
        dialect=dialect,
        reduction=reduction,
        loss_weight=loss_weight,
    )
