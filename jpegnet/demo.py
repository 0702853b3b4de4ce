"""`make demo`: `jpegnet bench` on the built-in samples.

Forty CC0 photos go from JPEG bytes to logits through RGB ResNet-50 (full decode, resize, crop) and through
the DCT ResNets of Gueguen et al. (coefficients only, no pixels), with decode time and model time shown
apart, on this machine. Random weights: this measures speed, not accuracy.
"""
import sys

from .cli import main

if __name__ == "__main__":
    # 16 of the 40 samples, best of 2 passes: about 40 s on an idle 2-core CPU (ResNet-50 costs ~0.1 s per
    # image there), within two minutes on a busy one; `jpegnet bench` alone times all 40 once.
    sys.exit(main(["bench", "--max-images", "16", "--repeat", "2", *sys.argv[1:]]))
