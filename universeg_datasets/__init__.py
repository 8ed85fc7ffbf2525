"""TFDS builders that turn medical image datasets into standardised 2D binary segmentation tasks.

Installed under the import name ``universeg_datasets`` (never put this folder itself on ``sys.path``:
a top-level ``datasets`` package would shadow Hugging Face ``datasets``). Modules are imported lazily
through ``universeg_datasets.registry`` so that importing the package stays cheap.
"""
