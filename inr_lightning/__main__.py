"""``python -m inr_lightning fit --config configs/cohort/siren.yaml``"""

from inr_lightning.cli import main

if __name__ == "__main__":
    main()
