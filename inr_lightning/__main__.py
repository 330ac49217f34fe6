"""``python -m inr_lightning fit --config configs/cohort/siren.yaml``"""

from inr_lightning.main import main

if __name__ == "__main__":
    main()
