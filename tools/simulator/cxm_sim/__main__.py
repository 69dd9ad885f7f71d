"""``python -m cxm_sim``: drive simulated customer journeys into a running platform."""

from cxm_sim.cli import main

if __name__ == "__main__":
    main()
