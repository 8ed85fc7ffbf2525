"""Raw MegaMedical builders: the module of every builder (imported on demand through the registry).

Every builder is made by ``layout.define`` from a table row: one module per builder for the first datasets (a
builder's module is recorded in its dataset_info.json), the later ones grouped by the reader family they need.
"""

MSD_TASKS = ("brain_tumour", "heart", "liver", "hippocampus", "prostate", "lung", "pancreas", "hepatic_vessel",
             "spleen", "colon")  # fmt: skip
# module (inside universeg_datasets.raw) -> the builders it defines
MODULES = {
    "acdc": ("acdc",),
    "busi": ("busi",),
    "drive": ("drive",),
    "isic2018": ("isic2018",),
    "kits19": ("kits19",),
    "oasis_neurite": ("oasis_neurite",),
    "pan_dental": ("pan_dental",),
    "stare": ("stare",),
    "wbc": ("wbc",),
    "msd": tuple(f"msd_{task}" for task in MSD_TASKS),
    "volumes": ("amos", "brats2021", "btcv", "brain_development", "cdemris", "feta", "isles2017", "lits", "luna16",
                "mm_whs", "mnms", "promise12", "segthor", "smir", "spineweb", "verse", "wmh", "word", "lgg_flair",
                "brain_met_share"),
    "items": ("isbi_em", "pannuke", "tucc", "chexplanation", "echonet", "hmc_qu"),
    "dicom_sets": ("chaos", "i2cvb", "nci_isbi", "scd"),
    "images2d": ("bbbc003", "bbbc038", "bus", "camus", "consep", "eophtha", "feto_plac", "idrid", "kvasir_seg",
                 "octa500", "rose"),
}  # fmt: skip
