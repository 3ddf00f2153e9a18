"""Print the reference's values on the worked examples of spec.md section 4.3."""

import numpy as np

from . import ghm_c, ghm_r


def main() -> None:
    z = np.zeros((2, 3))
    x, t = np.array([5.0, -5.0]), np.array([1.0, 0.0])
    rows = [
        ("GHM-C zeros((2,3)), bins=30", ghm_c(z, z), ghm_c(z, z, dialect="mmdet")),
        ("GHM-C pred=[5,-5], target=[1,0], bins=2", ghm_c(x, t, bins=2), ghm_c(x, t, bins=2, dialect="mmdet")),
        ("GHM-R pred=[5,-5], target=[1,0], bins=10", ghm_r(x, t), ghm_r(x, t, dialect="mmdet")),
    ]
    print(f"{'example':44} {'paper':>12} {'mmdet':>12}")
    for name, paper, mmdet in rows:
        print(f"{name:44} {paper.loss:12.7f} {mmdet.loss:12.7f}")


if __name__ == "__main__":
    main()
