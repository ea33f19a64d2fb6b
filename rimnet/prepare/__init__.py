"""From scanner images to the data contract: BIDS inputs, phase post-processing, registration of
FLAIR to the 3D-EPI space and FreeSurfer anatomy (§2.2); ``python -m rimnet.prepare``."""
