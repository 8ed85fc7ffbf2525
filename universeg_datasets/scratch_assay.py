"""Nuclei and cytoplasm in a time-lapse scratch assay, two image channels (shipped in the ndev-sampledata wheel)."""

from __future__ import annotations

import tensorflow_datasets as tfds

from universeg_datasets import base, standardize, tiling, wheels

DATASET = "scratch_assay"
WHEEL = "ndev-sampledata"
MEMBER = "ndev_sampledata/samples/scratch-assay-labeled-10T-2Ch.tiff"
SHAPE = (4, 10, 210, 576)  # channels, frames, height, width
CHANNELS = {"fluorescence": 0, "oblique": 1}  # Hoechst nuclear stain; oblique illumination (transmitted light)
LABELS = {"nuclei": 2, "cytoplasm": 3}  # channels holding instance labels


class ScratchAssay(base.TaskBuilder):
    """Nuclei and cytoplasm of cells in a scratch (wound-healing) assay: ndev-sampledata 0.0.3's
    ``scratch-assay-labeled-10T-2Ch.tiff``. It holds one field of view of 210x576 px over 10 frames, as
    (channel, frame, y, x) = (4, 10, 210, 576). Channel 0 is the Hoechst fluorescence image and channel 1 the
    oblique-illumination image. Channels 2 and 3 are instance labels of nuclei and cytoplasm, made by a
    segmentation pipeline. The cytoplasm label covers the whole cell body, most of the nucleus included. Four
    tasks: each image channel x each label.

    Subjects: the 10 frames of one field are correlated, so all frames of one place share a subject. The field is
    cut into ``TILE`` px windows on a grid with ``GAP`` px between neighbours. A subject is one window over all
    its frames (``scratch@y<top>x<left>``; the ``slice`` field holds the frame). ``GAP`` is larger than the
    median distance a nucleus moves between two frames (11-14 px, measured by matching each nucleus to the
    nearest one in the next frame). So no cell is cut by one window in one frame and by its neighbour in the next.
    Windows without labels in a frame (the open scratch) give no example."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "First release."}
    HOMEPAGE = "https://github.com/ndev-kit/ndev-sampledata"
    TILE = 96
    GAP = 16

    def _generate_examples(self, dl_manager):
        with wheels.open_wheel(WHEEL) as files:
            stack = files.read_tiff(MEMBER)
        if stack.shape != SHAPE:
            raise ValueError(
                f"{MEMBER} in wheel {WHEEL} has shape {stack.shape}, expected {SHAPE} (channel, frame, y, x)"
            )
        for modality, channel in CHANNELS.items():
            for window in windows():
                subject = window.subject("scratch")
                for frame in range(SHAPE[1]):
                    image = window.crop(stack[channel, frame])
                    for label_name, label_channel in LABELS.items():
                        view = standardize.View(image, window.crop(stack[label_channel, frame]), slice_index=frame)
                        yield from standardize.view_examples(
                            view,
                            {label_name: None},
                            dataset=DATASET,
                            modality=modality,
                            subject=subject,
                            size=self.builder_config.size,
                        )


def windows() -> list[tiling.Window]:
    return tiling.grid(SHAPE[2:], ScratchAssay.TILE, ScratchAssay.GAP)
