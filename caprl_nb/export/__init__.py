"""Export reviewed captions (or extractions) as training sets that trainers load.

``export(df, "out/", format="imagefolder" | "parquet" | "webdataset")`` writes the accepted and
edited rows of a frame from ``gallery.apply(df)``, each image beside its reviewed caption and
provenance, streaming and atomically; ``to_hf_dataset(df)`` returns them as a
``datasets.Dataset`` in memory. ``df.caprl.export`` and ``caprl-nb export`` delegate here.

Modules, by what they own: :mod:`~caprl_nb.export.selection` (rows and their columns),
:mod:`~caprl_nb.export.provenance` (the result store's record of each answer),
:mod:`~caprl_nb.export.media` (image bytes), :mod:`~caprl_nb.export.stream` (the chunked pass),
:mod:`~caprl_nb.export.atomic` (staging and publishing), one module per format, and
:mod:`~caprl_nb.export.run` (one export, end to end).
"""

from caprl_nb.export.atomic import MANIFEST
from caprl_nb.export.failures import ExportError, ExportImageError, ExportTargetError
from caprl_nb.export.hf import to_hf_dataset
from caprl_nb.export.run import FORMATS, export, read_manifest

__all__ = [
    "FORMATS", "MANIFEST", "ExportError", "ExportImageError", "ExportTargetError", "export", "read_manifest",
    "to_hf_dataset",
]
