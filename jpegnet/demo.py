"""`make demo`: `jpegnet bench` on the built-in samples.

Forty CC0 photos go from JPEG bytes to logits through RGB ResNet-50 (full decode, resize, crop) and through
the DCT ResNets of Gueguen et al. (coefficients only, no pixels), with decode time and model time shown
apart, on this machine. Random weights: this measures speed, not accuracy.
"""
import sys

from .cli import main

if __name__ == "__main__":
    # 16 of the 40 samples keep the demo within two minutes on a 2-core CPU (ResNet-50 costs ~0.3 s per image
    # there); `jpegnet bench` without --max-images times all of them.
    sys.exit(main(["bench", "--max-images", "16", *sys.argv[1:]]))
