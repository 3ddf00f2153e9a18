"""What the census looked at but could not run, and where it looked: data the census prints in
docs/ports.md (its own sections), kept beside the adapters so that one command regenerates the
whole page."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Looked:
    repo: str
    path: str
    framework: str
    what: str  # what the file holds, in a few words
    reason: str  # why it was not run


NOT_RUN = (
    Looked(
        "xialuxi/GHMLoss-caffe",
        "(C++ / CUDA layer)",
        "Caffe",
        "a GHM-C loss layer for Caffe",
        "Caffe cannot be built here (no Caffe package for this Python; a C++ build of the framework)",
    ),
    Looked(
        "mgtyouzi/pnp",
        "ghm_loss.py",
        "torch",
        "mmdetection 1.x's GHMC with the sigmoid replaced by a softmax and a per-row cross entropy",
        "no snapshot of the repository could be downloaded here (the search index holds the file); it also "
        "needs a GPU to be constructed (`.cuda()` in __init__)",
    ),
    Looked(
        "holdfire/pytorch_projects",
        "loss/GHMLoss.py",
        "torch",
        "a header docstring only",
        "no code: the file holds only its docstring",
    ),
    Looked(
        "zsl199002/nlp_research",
        "losses/ghm.py",
        "TensorFlow 1",
        "an unfinished GHMC class",
        "unfinished: `__call__` loops over the regions with `pass` and returns None",
    ),
    Looked(
        "(not named by the index)",
        "graph_layers.py",
        "TensorFlow 1",
        "a GHMC_Loss with tf.histogram_fixed_width_bins and EMA bias correction (author chenye@antfin.com)",
        "the code index holds the file without its repository, so it cannot be cited or downloaded",
    ),
    Looked(
        "iimlearning/no_blinding_KSS_GHM",
        "GHMC_Loss.py",
        "torch",
        "DHPO's skeleton (regions by floor, mixed EMA) around a softmax cross entropy over K classes, one label "
        "per row, the loss divided by the sum of the weights (`.cuda()` in the loss)",
        "the kit has no protocol for a softmax loss without a background class: its class-index cases include "
        "rows with no class (label C), which this loss cannot take (IndexError), so no verdict would be about "
        "the loss",
    ),
    Looked(
        "yaopengUSTC/mbit-skin-cancer",
        "lib/loss/loss.py",
        "torch",
        "mmdetection 1.x's GHM-C loop on the one-hot of the class labels (tot = every entry, EMA from zeros), "
        "then a per-class re-weighting divided by the sum of the class weights (a skin-lesion classifier)",
        "one class per row, no background: the class re-weighting gives a row without a class weight 0 (NaN when "
        "no row has one), and the kit's class-index cases include such rows; the kit has no protocol for "
        "one-label-per-row targets",
    ),
    Looked(
        "jiangtaoo2333/StaticGestureRecognition",
        "src/loss/ghm_loss.py",
        "torch",
        "mmdetection 1.x's GHMC with the labels (N,) scattered to a one-hot inside forward (`.to('cuda')` in "
        "__init__); rikichou/face_align_jt holds the same file",
        "one class per row, no background (scattering the kit's label C raises), so no verdict would be about "
        "the loss; it also needs a GPU to be constructed",
    ),
    Looked(
        "JohannesLiu/Deep-Learning-Loss-Function-Collection-for-Imbalanced-Data",
        "losses/GHMLoss.py",
        "torch",
        "a loss collection: mmdetection 1.x's GHMC (a copy, counted under mmdetection) and DHPO's GHMC_Loss "
        "with the labels (N,) scattered to a one-hot in forward (`.cuda()` there)",
        "the DHPO variant takes one class per row, no background (scattering the kit's label C raises)",
    ),
    Looked(
        "(not named by the index)",
        "a Jittor `ghmc_loss` / `ghmr_loss` (functional)",
        "Jittor",
        "huanglianghua's tracker losses ported to Jittor: weights divided by their mean, an EMA list rebuilt "
        "on every call (no state)",
        "the index holds the file without its repository; Jittor is not installed here",
    ),
    Looked(
        "(not named by the index)",
        "a MindSpore `GHMCLoss(nn.Cell)`",
        "MindSpore",
        "a broadcast [bins, ...] GHM-C cell (edges_left / edges_right)",
        "the index holds the file without its repository; MindSpore is not installed here",
    ),
    Looked(
        "(not named by the index)",
        "`GradientHarmonization(loss_N_grad_fn)`",
        "torch",
        "a generic wrapper (softmax CE or ASL1 with mu = 0.5 as a module global): EMA of bincounts from the "
        "first batch, density = bins (EMA + 1), loss / density summed; `.cuda()` in forward",
        "the index holds the file without its repository, so it cannot be cited or downloaded",
    ),
    Looked(
        "(not named by the index)",
        "a TensorFlow 1 `GHMC_loss(object)` / `GHMR_loss(object)`",
        "TensorFlow 1",
        "mmdetection 1.x's loop with `tf.cond` per region, but the weights start at zero and are only ever "
        "multiplied (`weights + weights * ...`): every weight stays 0",
        "the index holds the file without its repository, so it cannot be cited or downloaded",
    ),
    Looked(
        "(not named by the index)",
        "an XGBoost `ghm_loss(y_true, y_pred, bins=7, beta=0.65)` objective",
        "NumPy (XGBoost)",
        "weights N / (density bins) blended with 1 by beta, on grad and hess",
        "the index holds the file without its repository (a credit-scoring service's module)",
    ),
    Looked(
        "(not named by the index)",
        "softmax `GHMC_Loss` / `GHMC_LossV2` (eps=1e-8)",
        "torch",
        "g = 1 - softmax of the target class, weights 1 / (count n), the loss summed (not divided by N)",
        "the index holds the file without its repository; a softmax loss without a background class, too",
    ),
)

WHERE = (
    'code search (meaning): "GHMC_Loss gradient harmonized classification loss pytorch", "GHM loss tensorflow '
    'keras gradient harmonizing mechanism", "class GHM_Loss valid_bins edges_left edges_right tensorflow", '
    '"GHMR regression loss ASL1 mu bins momentum", "ghm loss num_in_bin weights tot / acc_sum n += 1", "GHM loss '
    'text classification BERT gradient harmonizing imbalance pytorch", "keras ghm loss function y_true y_pred bins '
    'momentum", "paddle GHM loss gradient harmonized paddle.nn", "lightgbm xgboost custom objective GHM gradient '
    'harmonized grad hess", "GHM loss semantic segmentation pixel gradient density bins weights", "tensorflow 2 '
    'keras Loss subclass GHMC", "jax flax optax GHM loss gradient harmonized", "tf.histogram_fixed_width_bins '
    'gradient norm GHM weights", "GHMCLoss nn.Module forward bins momentum edges acc_sum register_buffer", '
    '"torch.histc gradient harmonizing loss"',
    'more code search: "README implementation of GHM-C GHM-R loss gradient harmonized single-stage detector" '
    '(READMEs of ports already found, and a Paddle reproduction), "mxnet gluon GHM loss gradient harmonized" '
    "(no MXNet port)",
    'issue search: "GHMC loss implementation github repository" (nothing relevant), "GHMC loss nan" and '
    '"gradient harmonizing mechanism loss added GHM" (threads of GXYM/GHM_Loss, libuyu/GHM_Detection, '
    "open-mmlab/mmdetection, ultralytics/yolov5, ArrowLuo/GRACE: no further port; GRACE holds a weighted cross "
    "entropy, not GHM)",
    "exact strings: `acc_sum` (a common identifier: no GHM hit in the first 10), `chenye@antfin.com`, "
    "`__author__ = '古溪'` (GXYM's other files), `is_gradient_harmonized` (a Keras multi-label loss with a GHM "
    "option; its repository is not named by the index)",
    "exact paths: ghm_loss.py, GHM_loss.py, GHM_Loss.py, GHMLoss.py, GHM.py, ghm.py, ghmc.py, GHMC.py, tf_ghm_loss.py, "
    "loss/ghm_loss.py, losses/ghm_loss.py, losses/ghm.py, loss/ghm.py, utils/ghm_loss.py, models/ghm_loss.py, "
    "model/ghm_loss.py, models/losses/ghm_loss.py, lib/losses/ghm_loss.py, src/losses/ghm_loss.py, "
    "ghm_loss/ghm_loss.py, model/GHM_Loss.py, loss/GHM_Loss.py, mmdet/models/losses/ghm_loss.py (28 repositories), "
    "mmdet/core/loss/ghm_loss.py, mmrotate/models/losses/ghm_loss.py, det3d/models/losses/ghm_loss.py, "
    "visdet/models/losses/ghm_loss.py, unbalanced_loss/GHM_loss.py, multi_label/losses/ghm_loss.py",
    "repository names containing: ghm, GHM_, GHM-, ghm_loss, ghmloss, ghm-loss, nncore, ChangShuo, NLP-Loss, "
    "ZhengYuwei, CamilleLeo",
    "files of the repositories found (nncore's losses, ChangShuoRadioRecognition's losses, GHM_paddle, "
    "ForrestPi/GHM_Loss, Leo-xxx/GHM_Detection: notes only)",
    'second search, code search (meaning): "GHMC_Loss Gradient Harmonizing Mechanism for Classification '
    'valid_bins", "class GHMCLoss bins=30 momentum=0.75 num_class=2 softmax one_hot", "keras GHM loss y_true '
    'y_pred tf.histogram bins momentum weights", "ghm loss for multi-label text classification torch", '
    '"yolov5 GHM loss class GHMC compute_loss", "mindspore GHMCLoss nn.Cell edges_left edges_right", '
    '"GHMC_LossV2 softmax 1 - softmax target", "OhemSSRCrossEntropy spatial_pyramid_pool" (the file holding '
    'SrSeg\'s GHMC_loss), "bank account fraud imbalanced GradientHarmonized SelfPaced", "authentic_smooth_l1 '
    "GradientHarmonization loss_N_grad_fn\", the TF1 port's docstring",
    "second search, exact strings: `edges[-1] += 1e-6`, `class GHMC` (mmdetection copies, SrSeg's `GHMC_loss`, "
    "a softmax `GHMC_Loss`), `GradientHarmonized` (a LightGBM objective), `num_in_bin`, `GHM_Loss`, `GHMCLoss` "
    "(huanglianghua's tracker loss and its copies, xuyouze's per-attribute loss, yaopengUSTC's), `class GHMcLoss`, "
    "`class GradientHarmonization`, `LOSS.GHMC.BINS`, `use_sigmiod` (the Zhihu-blog GHMC_loss in several "
    "repositories), `bins=10, momentum=0, eps=1e-8`, `def ghm_c`, `def ghm_loss(` (an XGBoost objective, a "
    "seq2seq loss), `def ghmc_loss(input, target, bins=30`, `class SoftmaxGHMc`, `histogram_fixed_width(g` "
    "(nothing GHM), `[1] https://github.com/libuyu/GHM_Detection/blob`",
    "second search, exact paths: losses.py, model/losses.py, lib/loss/loss.py (yaopengUSTC/mbit-skin-cancer), "
    "lib/core/criterion.py (Aaromxj/SrSeg among 65 HRNet trees), loss/ghmc_loss.py (xuyouze's two repositories, "
    "JasonZuu/MMFNet-2022), loss/GHMLoss.py, loss/GHM_loss.py (lei1993/CCKS_Task1), losses/GHM_loss.py, "
    "utils/GHM_loss.py, GHMC_Loss.py (iimlearning), models/GHMC_Loss.py, losses/ghmc.py, loss/ghm.py, utils/ghm.py, "
    "ghmc_loss.py, losses/ghmc_loss.py, losses/GradientHarmonizedLoss.py (Duarte-Almeida), GradientHarmonizedLoss.py, "
    "siamfc/losses.py (14 trackers), yolox/models/ghm_loss.py (lz06787/CCH-YOLOX), lgdet/loss/loss_base/ghm_loss.py "
    "(nuogel/lg_pro_sets: mmdetection 2.x's), network_files/losses_/ghm_loss.py, neuron/ops/losses.py, ops/losses.py, "
    "unimol_tools/models/loss.py and unimol_tools/unimol_tools/models/loss.py (Uni-Mol: DHPO's), src/ghm_loss.py "
    "(miaoshuyu/object-detection-usages), src/loss/ghm_loss.py (two of Jiangtao's repositories), losses/GHMLoss.py "
    "(JohannesLiu's loss collection), deeptables/models/layers.py (DataCanvasIO/DeepTables: xyfZzz's GHMCLoss), "
    "models/loss/ghm_loss.py, core/loss/ghm_loss.py, lib/loss/ghm_loss.py, criterion/ghm_loss.py, nets/ghm_loss.py, "
    "model/loss/ghm_loss.py, code/ghm_loss.py, ghm_loss_tf.py, loss/GHMC.py, utils/ghmc.py, model/ghm.py, "
    "losses/ghm_c.py, GHMC_Loss.py, GHM.py (54 repositories, one GHM: GXYM's)",
    "second search, repository names containing: xuyouze, neuron, srseg, harmoniz, imbalance-loss, loss-function, "
    "wanzo (the XGBoost objective's service: not found)",
)
