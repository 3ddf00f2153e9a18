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
    Looked("xialuxi/GHMLoss-caffe", "(C++ / CUDA layer)", "Caffe", "a GHM-C loss layer for Caffe",
           "Caffe cannot be built here (no Caffe package for this Python; a C++ build of the framework)"),
    Looked("mgtyouzi/pnp", "ghm_loss.py", "torch",
           "mmdetection 1.x's GHMC with the sigmoid replaced by a softmax and a per-row cross entropy",
           "no snapshot of the repository could be downloaded here (the search index holds the file); it also "
           "needs a GPU to be constructed (`.cuda()` in __init__)"),
    Looked("holdfire/pytorch_projects", "loss/GHMLoss.py", "torch", "a header docstring only",
           "no code: the file holds only its docstring"),
    Looked("zsl199002/nlp_research", "losses/ghm.py", "TensorFlow 1", "an unfinished GHMC class",
           "unfinished: `__call__` loops over the regions with `pass` and returns None"),
    Looked("(not named by the index)", "graph_layers.py", "TensorFlow 1",
           "a GHMC_Loss with tf.histogram_fixed_width_bins and EMA bias correction (author chenye@antfin.com)",
           "the code index holds the file without its repository, so it cannot be cited or downloaded"),
)

WHERE = (
    "code search (meaning): \"GHMC_Loss gradient harmonized classification loss pytorch\", \"GHM loss tensorflow "
    "keras gradient harmonizing mechanism\", \"class GHM_Loss valid_bins edges_left edges_right tensorflow\", "
    "\"GHMR regression loss ASL1 mu bins momentum\", \"ghm loss num_in_bin weights tot / acc_sum n += 1\", \"GHM loss "
    "text classification BERT gradient harmonizing imbalance pytorch\", \"keras ghm loss function y_true y_pred bins "
    "momentum\", \"paddle GHM loss gradient harmonized paddle.nn\", \"lightgbm xgboost custom objective GHM gradient "
    "harmonized grad hess\", \"GHM loss semantic segmentation pixel gradient density bins weights\", \"tensorflow 2 "
    "keras Loss subclass GHMC\", \"jax flax optax GHM loss gradient harmonized\", \"tf.histogram_fixed_width_bins "
    "gradient norm GHM weights\", \"GHMCLoss nn.Module forward bins momentum edges acc_sum register_buffer\", "
    "\"torch.histc gradient harmonizing loss\"",
    "more code search: \"README implementation of GHM-C GHM-R loss gradient harmonized single-stage detector\" "
    "(READMEs of ports already found, and a Paddle reproduction), \"mxnet gluon GHM loss gradient harmonized\" "
    "(no MXNet port)",
    "issue search: \"GHMC loss implementation github repository\" (nothing relevant), \"GHMC loss nan\" and "
    "\"gradient harmonizing mechanism loss added GHM\" (threads of GXYM/GHM_Loss, libuyu/GHM_Detection, "
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
)
