"""Move weight layout changes out of the library, computed once per distinct weight.

The importer turns every nn.Linear into matmul(x, permute_dims(W)). With weights as function
inputs that transpose would run on every call, and once per *position* of a shared block.
EliminateCommonSubexpr first merges the identical transposes of a shared block's positions, then
LiftTransformParams moves what depends on weights alone into `<function>_transform_params`,
which the pipeline runs once at compile time: the library takes the transformed weights, each
distinct weight once.
"""

from __future__ import annotations

import tvm
from tvm import relax

TRANSFORM_SUFFIX = "_transform_params"


def LiftWeightTransforms() -> tvm.transform.Pass:  # noqa: N802 (TVM pass naming)
    return tvm.transform.Sequential(
        [relax.transform.EliminateCommonSubexpr(), relax.transform.LiftTransformParams()],
        name="LiftWeightTransforms")
