#!/usr/bin/env bash
# The GPU check on an offline GPU machine, in one command (see benchmarks/gpu_check.py):
#
#   bash benchmarks/gpu_check.sh            # on the GPU machine, from a copy of this repository
#   bash benchmarks/gpu_check.sh --quick    # options go to gpu_check.py (--device cpu checks it here)
#
# Its python3 (PYTHON=...) has torch, transformers, accelerate, pytest, pytest-xdist, hypothesis,
# pandas, jinja2, jaxtyping and safetensors; what circuitcheck needs besides comes from
# benchmarks/wheels, built on a connected machine by `make gpu-wheels` and carried along.
# Nothing is installed into that python: the wheels and circuitcheck (built from this tree) go
# into a folder (GPU_CHECK_SITE, default .gpu-check-site) put first on PYTHONPATH.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
WHEELS=benchmarks/wheels
SITE=${GPU_CHECK_SITE:-$PWD/.gpu-check-site}

if [ ! -f "$WHEELS/requirements.txt" ]; then
    echo "gpu_check.sh: no $WHEELS/requirements.txt; run 'make gpu-wheels' on a connected machine" \
         "and bring $WHEELS along" >&2
    exit 2
fi
rm -rf "$SITE"
install() {
    "$PYTHON" -m pip install --quiet --disable-pip-version-check --no-index --find-links "$WHEELS" \
        --no-deps --target "$SITE" "$@"
}
install -r "$WHEELS/requirements.txt"
install .  # circuitcheck itself (setuptools for the build comes from the wheels too)

# TransformerLens imports Hugging Face `datasets` (and through it pyarrow, 40 MB per Python
# version) for dataset helpers circuitcheck never calls; where it is missing, a stand-in
# with the three names TransformerLens imports.
if ! "$PYTHON" -c "import datasets" 2>/dev/null; then
    mkdir -p "$SITE/datasets"
    cat > "$SITE/datasets/__init__.py" <<'EOF'
"""Stand-in for Hugging Face datasets (benchmarks/gpu_check.sh): imported, never used."""
from .arrow_dataset import Dataset
from .iterable_dataset import IterableDataset
from .load import load_dataset
EOF
    printf 'class Dataset:\n    pass\n' > "$SITE/datasets/arrow_dataset.py"
    printf 'class IterableDataset:\n    pass\n' > "$SITE/datasets/iterable_dataset.py"
    printf 'def load_dataset(*args, **kwargs):\n    raise ImportError("datasets is not installed")\n' \
        > "$SITE/datasets/load.py"
fi

export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
"$PYTHON" -c "import transformer_lens, gguf, plotly, circuitcheck.plugin" \
    || { echo "gpu_check.sh: circuitcheck does not import with $PYTHON (above: what is missing)" >&2; exit 2; }
exec "$PYTHON" benchmarks/gpu_check.py "$@"
